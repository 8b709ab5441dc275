#pragma once
// Model evaluation: quantize the selected linear layers of a real model, run it on a corpus, and measure
// perplexity, KLD against the unquantized model, sizes, per-layer weight error, forward speed and the KV
// cache's error. What is expensive is kept between calls: the checkpoint, the tokenized corpus and the
// baseline's log-probabilities (per model, corpus and scoring), and the quantized layers (per model,
// quantizer, seed and layer selection), so that points differing only in how they are evaluated (kernel,
// KV cache, context) quantize once. The metrics of a row are computed from ModelMeasurements by the
// metric registry (harness/metrics.hpp); this file knows no metric names.
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "eval/calibration.hpp"
#include "eval/layer_quantization.hpp"
#include "eval/perplexity.hpp"
#include "models/kv_quant.hpp"

namespace tqb {

// Quantizes the linear layers of `ck` that match include and not exclude; the LlamaModel computes them
// with `kernel`. Per-layer statistics go to stats (when given).
struct QuantizedModelStats {
  double quantized_bytes = 0, quantized_weights = 0, other_weights = 0, nmse_sum = 0;
  double output_error_sum = 0;  // Σ over layers of the relative output error on held-out inputs (ModelQuantization::held_out)
  int output_error_layers = 0;  // the layers it was measured on
  int layers = 0;
  std::string layer_json;            // tensor name -> {quantizer, kernel, mse, nmse, bits_per_weight}
  std::vector<std::string> kernels;  // distinct, in order of first use
};

// The quantized layers of one (model, quantizer, seed, selection), filled as a model is first built from
// them and reused by later builds with other kernels.
struct QuantizedLayers {
  struct Layer {
    QuantizedLayer q;
    double mse = 0, nmse = 0;
    double output_error = -1;  // on held-out inputs (relative_output_error); -1: not measured
  };
  std::map<std::string, Layer> by_name;
};

// kernel: one of linear_kernel_names() (kernels/registry.hpp); "auto" = the fastest that reads the format.
// layers: where quantized layers are looked up and stored (nullptr: quantize every time).
// device: "cpu", or "cuda": the block on the GPU (models/cuda), dense layers as bf16 ("cuda-fp32": fp32), quantized ones
// dequantized to bf16 (kernel dequantized_dense or auto: the quantizer's quality at cuBLAS speed) or as packed
// codes (cuda_lut_mma).
struct ModelQuantization {
  std::string include = kBlockLinearLayers, exclude = "^$";  // the layers quantized (LayerSelection)
  GroupFallback group_fallback = GroupFallback::none;        // layers the group does not divide (quantizer_for_layer)
  std::string kernel = "auto", device = "cpu";
  // Per layer name, the calibration statistics a calibrated quantizer (gptq) needs (eval/calibration.hpp).
  const std::map<std::string, LayerStatistics>* calibration = nullptr;
  // Per layer name, statistics of held-out inputs: each layer's relative output error is measured on them.
  const std::map<std::string, LayerStatistics>* held_out = nullptr;
  // Layers already quantized exactly as quantize_layer would (the sequential calibration's): taken, not redone.
  std::map<std::string, QuantizedLayer>* prequantized = nullptr;
};
std::unique_ptr<LlamaModel> quantize_model(const Checkpoint& ck, const Quantizer& quantizer, std::uint64_t seed,
                                           const ModelQuantization& how, QuantizedModelStats* stats = nullptr,
                                           QuantizedLayers* layers = nullptr);

// The unquantized model on a device ("cpu", or "cuda": weights as bf16 on the GPU). InputError for another name
// or no usable GPU.
std::unique_ptr<LlamaModel> make_model(const Checkpoint& ck, const std::string& device);
// One layer on a device: dense, or quantized through `kernel` (on "cuda": dequantized_dense or auto, dequantized to
// bf16 once; cuda_lut_mma, the packed codes). InputError for a kernel the device does not run.
std::unique_ptr<Linear> dense_linear_on(const std::string& device, const Matrix& w);
std::unique_ptr<Linear> quantized_linear_on(const std::string& device, const std::string& kernel, const Quantizer& q,
                                            const QuantizedMatrix& qm);
// The device memory a forward of `tokens` positions at once needs on `device`: the weights as the GPU keeps them
// (bf16, or fp32 for cuda-fp32; quantized layers counted as bf16, an upper bound for the packed kernels), the
// embedding table, KV cache, activations and logits (every position's, an upper bound). Throws InputError naming
// the model, the bytes needed and the bytes free when they do not fit, before anything is uploaded. No-op on the CPU.
void check_fits_gpu(const Checkpoint& ck, const std::string& device, std::size_t tokens);
// The backend of a device: nullptr for the CPU's (LlamaModel's default).
std::unique_ptr<ForwardOps> forward_ops_on(const std::string& device);

// How one model point is evaluated: the model source's parameters (harness/data_source.cpp documents them).
struct ModelPointSpec {
  std::string model, corpus, method, include, exclude, kernel, device = "cpu";
  CalibrationSpec calibration;      // a calibrated quantizer's text (corpus empty: the end of `corpus`)
  bool layer_output_error = false;  // measure each layer's output error on held-out calibration chunks
  GroupFallback group_fallback = GroupFallback::none;
  int ctx = 512, chunks = 20;
  KvQuantSpec kv;
};

// Everything one model point measured; harness/metrics.cpp turns it into metric values.
struct ModelMeasurements {
  PerplexityResult result, baseline;
  QuantizedModelStats layers;
  double quantize_s = 0;          // quantizing the layers (0 when they came from the previous point)
  double calibrate_s = 0;         // a calibrated quantizer's statistics (0: none, or reused with the layers)
  std::string calibration;        // where they came from (empty: not calibrated)
  double load_s = 0;              // reading the checkpoint and the corpus (0 when the previous point had them)
  double gpu_peak_bytes = 0;      // tqbench's own device memory at its peak during the point (0 on the CPU)
  std::size_t ctx = 0;
  double prefill_s = 0;
  std::vector<double> decode_s;   // sorted ascending
  double weight_bytes_in_memory = 0;
  double kv_key_bits = 32, kv_value_bits = 32, kv_bytes_per_token = 0;
  KvAttentionError attention_error;
  std::string kv_cache_json;      // empty: fp32 cache
  std::string layer_quantizers;   // QuantizationPlan::summary_json(): the effective quantizers, layer counts, widths
};

class ModelSession {
 public:
  using Progress = std::function<void(const std::string&)>;
  ModelSession();
  ~ModelSession();
  // `what` names the point in errors. Throws InputError (bad model, corpus or KV spec) or RunError.
  ModelMeasurements measure(const ModelPointSpec& spec, const Quantizer& quantizer, std::uint64_t seed,
                            const std::string& what, const Progress& progress);

 private:
  struct Loaded;
  struct Weights;
  std::unique_ptr<Loaded> loaded_;
  // Quantized layers of recent (model, quantizer, seed, selection)s, most recent first, within a byte budget:
  // a sweep is data-major, so the points that share a quantization (other kernels, caches, contexts) come one
  // quantizer list apart.
  std::list<std::unique_ptr<Weights>> weights_;
};

// The corpus path a `corpus` parameter names (wikitext-2-test → ../shared/data/...).
std::string resolve_corpus_path(const std::string& corpus);
std::string read_corpus(const std::string& corpus);  // throws InputError naming the file

}  // namespace tqb
