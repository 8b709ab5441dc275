#pragma once
// Quantization of the attention KV cache, the TurboQuant paper's own application (Zandieh et al. 2025, §4):
// every key and value vector (one head, head_dim coordinates) is quantized when it is written to the cache,
// with any registry quantizer that takes a vector; attention then reads the dequantized cache (the
// reference) or, for keys, computes ⟨q, k̃⟩ from the codes (`scores: estimator`, through kernels/fused_lut:
// TurboQuant_prod's and QJL's unbiased inner-product estimators). Also:
//  - KIVI-style keys (Liu et al. 2024): per channel over blocks of `block` tokens; the tokens of an
//    unfinished block stay in fp32, as KIVI keeps its residual window;
//  - the paper's mixed precision: `outliers` channels per head (those of largest mean |x| on the first
//    chunk the model sees, recorded) through their own quantizer at a higher width, the rest through the
//    main one (TurboQuant §4.2's 2.5- and 3.5-bit configurations).
// Rotations and projections are drawn per layer, head and key/value from the model's seed: every token of a
// head shares them, as a deployed cache would.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/matrix.hpp"
#include "kernels/linear.hpp"
#include "models/checkpoint.hpp"
#include "quantizers/quantizer.hpp"

namespace tqb {

// What the model data source's kv_* parameters say (harness/data_source.cpp documents each).
struct KvQuantSpec {
  std::string key = "none", value = "none";  // one-line quantizer names; none = fp32
  std::string key_axis = "token";            // token | channel (KIVI)
  int block = 32;                            // key_axis channel: tokens per quantization block
  int outliers = 0;                          // channels per head through the outlier quantizers
  std::string outlier_key = "none", outlier_value = "none";
  std::string layers = ".*";                 // regular expression over "blk.N": which layers' caches
  std::string scores = "dequantized";        // dequantized | estimator
  bool active() const { return key != "none" || value != "none"; }
  // `value` (or `outlier_value`) "key" means the keys' quantizer, so that one axis of a sweep moves both;
  // KvQuantizer resolves it.
  KvQuantSpec resolved() const {
    KvQuantSpec r = *this;
    if (r.value == "key") r.value = r.key;
    if (r.outlier_value == "key") r.outlier_value = r.outlier_key;
    return r;
  }
};

// Quantized keys of one head for a run of positions, kept for the estimator path.
struct KeyCodes {
  std::size_t pos0 = 0, n = 0;
  std::shared_ptr<const Linear> scores;  // Q_h (m × head_dim) → m × n inner products with the chunk's keys
};

// Keys and values of every layer for positions [0, len).
struct KvCache {
  // per layer: sequences × capacity rows of (kv_heads · head_dim), sequence after sequence; what attention reads
  // (CPU backend)
  std::vector<Matrix> k, v;
  std::size_t len = 0;        // positions written, the same in every sequence
  std::size_t sequences = 1;  // independent sequences forwarded together (a batch of perplexity chunks)
  // A backend that keeps the cache in its own memory (a GPU's) holds it here, with its capacity.
  std::shared_ptr<void> device;
  std::size_t device_capacity = 0;
  // The backend encodes and reads the quantized cache itself (a GPU's coded layers, models/kv_codec.hpp), so its decode
  // steps may stay on the device; device_bytes_per_token: what a device cache holds per position, every layer, as
  // allocated (0: a host cache).
  bool coded_on_device = false;
  double device_bytes_per_token = 0;
  // Positions per sequence.
  std::size_t capacity() const {
    return device ? device_capacity : k.empty() ? 0 : static_cast<std::size_t>(k[0].rows()) / sequences;
  }
  // Quantized-cache state: per layer, positions whose keys are quantized (the channel axis leaves an
  // unfinished block in fp32), and per layer and kv head the key codes (estimator path).
  std::vector<std::size_t> keys_quantized;
  std::vector<std::vector<std::vector<KeyCodes>>> key_codes;
};

// Accumulated error of attention with the quantized cache against the exact one, on the first chunk
// (positions from 0), over every layer the cache quantizes, head and causal (query, key) pair.
struct KvAttentionError {
  double pairs = 0, ip_err_sum = 0, ip_err2_sum = 0, dprod_sum = 0;  // ⟨q,k̃⟩ − ⟨q,k⟩, normalized by ‖q‖‖k‖
  double rows = 0, weight_tv_sum = 0, out_rel_sum = 0;               // per query row and head
  bool done = false;
  double ip_bias() const { return pairs ? ip_err_sum / pairs : 0; }
  double ip_rmse() const { return pairs ? std::sqrt(ip_err2_sum / pairs) : 0; }
  double dprod() const { return pairs ? dprod_sum / pairs : 0; }
  double weight_tv() const { return rows ? weight_tv_sum / rows : 0; }
  double out_rel() const { return rows ? out_rel_sum / rows : 0; }
};

class KvQuantizer {
 public:
  // InputError naming the kv_* parameter when a quantizer does not parse or cannot take the model's
  // head_dim (or head_dim − outliers), outliers ≥ head_dim, or a combination is not supported.
  KvQuantizer(const KvQuantSpec& spec, const ModelConfig& c, std::uint64_t seed);
  ~KvQuantizer();

  bool quantizes(int layer) const;
  bool estimator() const { return spec_.scores == "estimator"; }
  // After RoPE: k and v (n × kv_heads·head_dim) of positions pos0 … pos0 + n − 1. Writes what attention
  // reads into cache.k/v (dequantized where quantized) and, for the estimator, the key codes.
  void write(int layer, std::size_t pos0, const Matrix& k, const Matrix& v, KvCache& cache);
  // Estimator path: S (n × ld_s, columns 0 … cache.len + n − 1) = scale · Q_h K̃ᵀ from the key codes of
  // kv head `kv_head` (q: n rows of head_dim, row stride ld_q).
  void estimator_scores(int layer, int kv_head, const float* q, std::size_t ld_q, std::size_t n, const KvCache& cache,
                        float* s, std::size_t ld_s, float scale) const;

  // Exact storage: bits per coordinate of the stored keys and values (codes, norms, scales, outlier
  // channels and their indices), and KV-cache bytes per token over the whole model (unquantized layers at 32 bits).
  double key_bits() const { return key_bits_; }
  double value_bits() const { return value_bits_; }
  double bytes_per_token() const;
  // JSON: per layer and kv head, the outlier channels of keys and values (empty without outliers).
  std::string outlier_json() const;
  const KvQuantSpec& spec() const { return spec_; }  // with the `key` aliases resolved
  const ModelConfig& config() const { return c_; }
  // The quantizers of keys and values (nullptr: that stream stays fp32), and the seed of one head's rotation or
  // projection (part "main" or "outliers"): what a backend that encodes the cache itself (models/kv_codec.hpp) reads.
  const Quantizer* key_quantizer() const { return key_.get(); }
  const Quantizer* value_quantizer() const { return value_.get(); }
  std::uint64_t head_seed(int layer, bool is_key, int head, const char* part) const;

 private:
  struct Part;
  void quantize_heads(int layer, bool is_key, std::size_t pos0, const Matrix& x, Matrix& out, KvCache* codes_to);
  void quantize_key_blocks(int layer, std::size_t end, KvCache& cache);
  void choose_outliers(int layer, bool is_key, const Matrix& x);

  KvQuantSpec spec_;
  ModelConfig c_;
  std::uint64_t seed_;
  std::unique_ptr<Quantizer> key_, value_, outlier_key_, outlier_value_;
  std::vector<bool> layers_;
  double key_bits_ = 32, value_bits_ = 32;
  // [layer][kv head]: outlier channels (sorted), for keys and values; filled on the first write.
  std::vector<std::vector<std::vector<int>>> key_outliers_, value_outliers_;
};

// Error of quantized attention against exact attention for one chunk starting at position 0: q (n × heads·hd),
// exact and cached keys and values (n × kv_heads·hd); causal. Adds to `e`.
void accumulate_attention_error(const ModelConfig& c, std::size_t n, const Matrix& q, const Matrix& k, const Matrix& v,
                                const Matrix& k_cached, const Matrix& v_cached, KvAttentionError& e);

}  // namespace tqb
