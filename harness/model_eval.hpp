#pragma once
// Evaluates sweep points whose data is a real model (data source `model`): quantize the selected
// linear layers with the point's quantizer, run the model on the corpus, and measure perplexity, KLD
// against the unquantized model, sizes and per-layer weight error. The checkpoint, the tokenized
// corpus and the baseline's log-probabilities are computed once per data point and reused.
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "harness/layer_quantization.hpp"
#include "harness/perplexity.hpp"
#include "harness/sweep.hpp"

namespace tqb {

struct ModelPointResult {
  std::map<std::string, double> metrics;
  std::string layer_stats;  // JSON: tensor name -> {quantizer, kernel, mse, nmse, bits_per_weight}
  std::string kernel;       // the distinct kernels of the quantized layers, comma-separated
  std::string kv_cache;     // JSON: the KV-cache quantizers, bits and outlier channels (empty: fp32 cache)
};

class ModelEvaluator {
 public:
  using Progress = std::function<void(const std::string&)>;
  ModelEvaluator();
  ~ModelEvaluator();
  // Throws InputError (bad model or corpus) or RunError.
  ModelPointResult evaluate(const SweepPoint& p, const Progress& progress);

 private:
  struct Loaded;
  std::unique_ptr<Loaded> loaded_;
};

// The corpus path a `corpus` parameter names (wikitext-2-test → ../shared/data/...).
std::string resolve_corpus_path(const std::string& corpus);
std::string read_corpus(const std::string& corpus);  // throws InputError naming the file

// Quantizes the linear layers of `ck` that match include and not exclude; the LlamaModel uses
// "dequantize, then dense" for them. Per-layer statistics go to stats (when given).
struct QuantizedModelStats {
  double quantized_bytes = 0, quantized_weights = 0, other_weights = 0, nmse_sum = 0;
  int layers = 0;
  std::string layer_json;
  std::vector<std::string> kernels;  // distinct, in order of first use
};

// kernel: one of linear_kernel_names() (kernels/registry.hpp); "auto" = the fastest that reads the format.
std::unique_ptr<LlamaModel> quantize_model(const Checkpoint& ck, const Quantizer& quantizer, std::uint64_t seed,
                                           const std::string& include, const std::string& exclude,
                                           QuantizedModelStats* stats, const std::string& kernel = "auto");

}  // namespace tqb
