#pragma once
// The Llama-family forward pass (Llama, Qwen2 with QKV bias, Qwen3 with q/k RMSNorm, Mistral's window, Gemma): RMSNorm,
// RoPE (interleaved pairs or rotate-half), grouped-query attention, SwiGLU, tied or separate head.
// Batched over the sequence (one GEMM per layer and projection) with a KV cache for generation.
// Every projection goes through a kernels/ Linear, so quantized weights plug in unchanged; every other step
// through a backend's ops (models/forward_ops.hpp), so the block is written once for every backend.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kernels/linear.hpp"
#include "models/checkpoint.hpp"
#include "models/forward_ops.hpp"
#include "models/kv_quant.hpp"

namespace tqb {

// The tensors LlamaModel builds through its LinearFactory, in the order it asks for them: the output head
// (token_embd.weight when tied, else output.weight), then each block's q, k, v, output, gate, up, down.
std::vector<std::string> linear_layer_names(const ModelConfig& c);

class LlamaModel {
 public:
  // Builds the layers from a checkpoint; `linear` makes each projection from its tensor name and fp32
  // weights (default: dense fp32). The checkpoint's norms and embeddings are copied.
  using LinearFactory = std::function<std::unique_ptr<Linear>(const std::string& name, const Matrix& w)>;
  // ops: the backend the block runs on (models/forward_ops.hpp; default the CPU's); the factory's Linears
  // must take pointers in that backend's memory.
  explicit LlamaModel(const Checkpoint& ck, const LinearFactory& linear = {}, std::unique_ptr<ForwardOps> ops = {});
  ~LlamaModel();

  const ModelConfig& config() const { return c_; }
  const char* device() const { return ops_->device(); }  // the backend's: "cpu", "cuda"
  // A cache for `sequences` independent sequences of `capacity` positions each, forwarded together.
  KvCache new_cache(std::size_t capacity, std::size_t sequences = 1) const;
  // Logits (n × vocab) of tokens at positions cache.len … cache.len + n − 1; appends them to the cache.
  // Throws InputError for token ids outside the vocabulary or a full cache.
  // logits_rows: how many of the last positions get logits (0 = all n). Prefill that only needs the next
  // token's logits (generation, llama-bench's pp) skips the output head for the others.
  // A cache of several sequences takes their tokens one sequence after the other (sequences × n) and gives
  // sequences × logits_rows rows, sequence after sequence: one GEMM per projection for the whole batch.
  Matrix forward(const std::vector<int>& tokens, KvCache& cache, std::size_t logits_rows = 0) const;
  // As forward, then the negative log-likelihood of targets[i] under the logits of position n − logits_rows + i,
  // computed where the logits are (a GPU keeps its logits; ForwardOps::row_nll). targets.size() ≤ logits_rows.
  // Several sequences: targets holds each sequence's (the same count for each), sequence after sequence.
  std::vector<double> forward_nll(const std::vector<int>& tokens, KvCache& cache, std::size_t logits_rows,
                                  const std::vector<int>& targets) const;
  // Greedy continuation of `prompt` into an empty cache (capacity ≥ prompt + max_new − 1): one prefill, whose last
  // position's argmax is the first new token, then up to max_new − 1 decode steps on the backend (ForwardOps::
  // greedy_decode: a CUDA graph per step on a GPU). Ends after the first `stop` token (≥ 0; included). The cache
  // holds the prompt and every generated token but the last.
  struct Greedy {
    std::vector<int> tokens;      // the new tokens
    double prefill_s = 0;         // the prompt's forward and the first token's choice
    std::vector<double> step_s;   // seconds of each timed decode step (ForwardOps::greedy_decode says which)
  };
  Greedy generate_greedy(const std::vector<int>& prompt, std::size_t max_new, KvCache& cache, int stop = -1) const;
  // The residual stream block by block, in the backend's memory: the embedded tokens (tokens.size() × dim), and
  // blocks [first, last) run on x in place, x holding `sequences` sequences of equal length one after the other, each
  // from position 0. The sequential calibration (eval/calibration.cpp) carries each chunk's stream through the blocks
  // once instead of forwarding from the tokens for every block.
  Acts embed_tokens(const std::vector<int>& tokens) const;
  void run_blocks(const Acts& x, std::size_t sequences, int first, int last) const;
  // Bytes of weights held by the linear layers and by everything else.
  std::size_t linear_weight_bytes() const;
  std::size_t other_weight_bytes() const;
  // Quantizes the KV cache as it is written (models/kv_quant.hpp); nullptr: fp32 cache.
  void set_kv_quantizer(std::shared_ptr<KvQuantizer> kv) { kv_ = std::move(kv); }
  const KvQuantizer* kv_quantizer() const { return kv_.get(); }
  // Measures quantized against exact attention on the next forward that starts at position 0.
  void set_kv_probe(KvAttentionError* probe) { probe_ = probe; }

 private:
  struct Layer {
    Matrix attn_norm, ffn_norm, q_norm, k_norm, q_bias, k_bias, v_bias;
    std::unique_ptr<Linear> q, k, v, o, gate, up, down;
  };
  Acts logits(const std::vector<int>& tokens, KvCache& cache, std::size_t logits_rows) const;  // in the backend's memory
  void check_tokens(const std::vector<int>& tokens) const;  // InputError for an id outside the vocabulary
  // Blocks [first, last) on x (seqs × n rows in the backend's memory; h: scratch of x's shape), their keys at pos0 …
  // in the cache.
  void run_blocks(const Acts& x, const Acts& h, std::size_t seqs, std::size_t n, int first, int last, KvCache& cache,
                  std::size_t pos0) const;
  ModelConfig c_;
  std::unique_ptr<ForwardOps> ops_;
  Matrix embed_, out_norm_;
  std::unique_ptr<Linear> head_;
  std::vector<Layer> layers_;
  std::vector<float> inv_freq_;
  std::shared_ptr<KvQuantizer> kv_;
  KvAttentionError* probe_ = nullptr;
};

}  // namespace tqb
