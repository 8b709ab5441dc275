#pragma once
// The ops the Llama-family forward is written over, once (LlamaModel::forward, models/llama.cpp): where the
// activations live and how each step runs there is a backend's. The CPU backend (cpu_forward_ops.cpp) is the
// reference, on host fp32 arrays; a GPU backend supplies the same ops on device buffers, with Linears
// whose forward takes device pointers (the model's LinearFactory makes them), so the block is not copied.
#include <cstddef>
#include <functional>
#include <memory>
#include <vector>

#include "kernels/linear.hpp"
#include "models/checkpoint.hpp"
#include "models/kv_quant.hpp"
#include "quantizers/quantizer.hpp"

namespace tqb {

// rows × cols fp32, row-major and contiguous, in the backend's memory; the buffer lives while an Acts
// (or a copy) refers to it.
struct Acts {
  float* data = nullptr;
  std::size_t rows = 0, cols = 0;
  std::shared_ptr<void> owner;
};

// What attention may do beyond the exact causal product: the quantized KV cache and its error probe
// (models/kv_quant.hpp; the CPU backend's).
struct AttentionExtras {
  KvQuantizer* kv = nullptr;   // quantizes what is written to the cache (nullptr: exact cache)
  KvAttentionError* probe = nullptr;  // measures quantized against exact attention on a forward from position 0
};

// Σ xᵀx and Σ |x| per column over the rows of a linear layer's inputs, summed in double where the activations are: the
// statistics calibrated quantizers take (quantizers/quantizer.hpp's InputStatistics; eval/calibration.hpp collects
// them). Products of floats are exact in double, so backends differ only in the order of the sums.
class InputStatisticsAccumulator {
 public:
  virtual ~InputStatisticsAccumulator() = default;
  virtual void add(const float* x, std::size_t n) = 0;  // x: n × d, in the backend's memory
  // The sums so far as InputStatistics (the Hessian both triangles, mean_abs divided by the count); the accumulator
  // starts again from zero.
  virtual InputStatistics finish() = 0;
};

class ForwardOps {
 public:
  virtual ~ForwardOps() = default;
  virtual const char* device() const = 0;  // "cpu", "cuda"
  virtual Acts alloc(std::size_t rows, std::size_t cols) = 0;  // uninitialized
  // A parameter of the model (norm weights, biases, the embedding table) in the backend's memory: the CPU's
  // own pointer; a GPU's copy, uploaded at the first call.
  virtual const float* param(const Matrix& host) = 0;
  // A cache of `sequences` independent sequences of `capacity` positions each (a batch of chunks in one forward). kv:
  // the quantizer attention will be given (nullptr: none), for a backend that keeps its codes itself (a GPU:
  // models/kv_codec.hpp; the cache's coded_on_device says so); the CPU writes through the quantizer at each step.
  virtual KvCache new_cache(const ModelConfig& c, std::size_t capacity, std::size_t sequences, const KvQuantizer* kv) = 0;

  // x[t] = scale · table[tokens[t]] (tokens checked by the caller). No tokens: only makes the table ready (a GPU
  // uploads it), so that loading, not the first forward, pays for it.
  virtual void embed(const std::vector<int>& tokens, const Matrix& table, float scale, const Acts& x) = 0;
  // y = x / sqrt(mean(x²) + eps) · w over `vectors` vectors of d floats (x, y: vectors·d floats; may alias).
  virtual void rms_norm(const float* x, std::size_t vectors, std::size_t d, const float* w, float eps, float* y) = 0;
  virtual void linear(const Linear& f, const Acts& x, const Acts& y) = 0;  // y = x Wᵀ
  virtual void add_row(const Acts& x, const float* b) = 0;                 // x[t] += b
  virtual void add(const Acts& x, const Acts& y) = 0;                      // x += y
  // RoPE: x is rows × (heads · head_dim), sequences of seq_rows rows one after the other, row t at position
  // pos0 + t mod seq_rows; inv_freq: head_dim / 2 host frequencies.
  virtual void rope(const Acts& x, int heads, const ModelConfig& c, const std::vector<float>& inv_freq, std::size_t pos0,
                    std::size_t seq_rows) = 0;
  // For each of the cache's sequences (q, k, v, out: cache.sequences blocks of n rows): writes k, v at positions
  // pos0 … of layer l's cache, then out = causal softmax(scale · q Kᵀ) V per head (GQA, the sliding window).
  virtual void attention(const ModelConfig& c, int l, const Acts& q, const Acts& k, const Acts& v, KvCache& cache, std::size_t pos0,
                         const Acts& out,
                         const AttentionExtras& extras) = 0;
  // g ← act(g) ⊙ u: SwiGLU's silu, Gemma's gelu_tanh.
  virtual void glu(ModelConfig::Activation act, const Acts& g, const Acts& u) = 0;

  // Composite steps of the block, each with a default made of the ops above (forward_ops.cpp); a backend overrides
  // one where fusing pays (a GPU: the residual added in the GEMM's epilogue, the FFN's hidden activations kept in
  // bf16 and never written in fp32).
  // y += x Wᵀ (a residual connection); tmp: y's shape, scratch.
  virtual void linear_add(const Linear& f, const Acts& x, const Acts& y, const Acts& tmp);
  // The gated feed-forward (SwiGLU, GeGLU): x += down(act(h gateᵀ) ⊙ (h upᵀ)); g, u: rows × hidden scratch; tmp:
  // x's shape, scratch.
  virtual void gated_ffn(const Linear& gate, const Linear& up, const Linear& down, ModelConfig::Activation act, const Acts& h,
                         const Acts& x, const Acts& g, const Acts& u, const Acts& tmp);
  // RoPE on q (heads) and k (kv heads), then attention: the block's attention step. A GPU's decode step overrides it
  // (one kernel rotates q and k and writes k and v into the cache at the device's position).
  virtual void rope_attention(const ModelConfig& c, int l, const Acts& q, const Acts& k, const Acts& v, const std::vector<float>& inv_freq,
                              KvCache& cache, std::size_t pos0, std::size_t seq_rows, const Acts& out, const AttentionExtras& extras);
  virtual Matrix to_host(const Acts& x) = 0;
  virtual void copy(const Acts& from, const Acts& to) = 0;  // to = from (same shape)
  // An accumulator of the statistics of inputs of width d (calibration).
  virtual std::unique_ptr<InputStatisticsAccumulator> input_statistics(std::size_t d) = 0;
  // −log softmax(logits[i])[targets[i]] for the first targets.size() rows, as evaluate_perplexity scores them (the
  // log-sum-exp in double, the log-probability rounded to float): the logits never leave the backend. A negative
  // target leaves its row unscored (0).
  virtual std::vector<double> row_nll(const Acts& logits, const std::vector<int>& targets) = 0;

  // Greedy decoding, up to n steps: `step(token)` forwards one token at the cache's next position (the block,
  // LlamaModel's) and returns its logits (1 × vocab, in this backend's memory); each step's token is the previous
  // step's argmax (greedy_token's rule), the first step's is `first`, at position pos0. Returns the argmaxes, ending
  // early after the first equal to `stop` (≥ 0) at the latest: every returned token but that one was forwarded. step_s
  // (when given) gets each timed step's seconds. The default loops on the host and times every step. A GPU keeps the
  // token and the position in device memory, runs the first step eagerly (its warm-up, untimed), captures the second
  // as a CUDA graph and replays it: a step is one launch and the host waits only between batches of steps.
  virtual std::vector<int> greedy_decode(int first, std::size_t pos0, std::size_t n, int stop, const std::function<Acts(int token)>& step,
                                         std::vector<double>* step_s);
};

// The greedy choice every backend makes: the first index of the largest logit (NaN and −inf never win; none larger: 0).
int greedy_token(const float* logits, std::size_t vocab);

// The reference backend: host fp32, OpenBLAS products (kernels/cpu/dense_blas.hpp).
std::unique_ptr<ForwardOps> make_cpu_forward_ops();

}  // namespace tqb
