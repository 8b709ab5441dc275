#pragma once
// How a model's layer is quantized, in one place, so that evaluation (model_eval) and export give the same
// bytes: which tensors are selected (a spec's include/exclude patterns), the quantizer adapted to the
// layer's shape, and the seed derived from the point's seed and the tensor's name.
#include <cstdint>
#include <memory>
#include <string>

#include "common/matrix.hpp"
#include "models/checkpoint.hpp"
#include "models/name_pattern.hpp"
#include "quantizers/quantizer.hpp"

namespace tqb {

// Every linear layer in the blocks (the default `include`).
inline constexpr const char* kBlockLinearLayers = R"(blk\.\d+\.(attn_(q|k|v|output)|ffn_(gate|up|down))\.weight)";

// Tensors whose names fully match `include` and not `exclude` (InputError naming the pattern when one does
// not compile).
class LayerSelection {
 public:
  LayerSelection(const std::string& include, const std::string& exclude);
  bool selected(const std::string& name) const;

 private:
  std::unique_ptr<NamePattern> include_, exclude_;
};

struct QuantizedLayer {
  std::unique_ptr<Quantizer> quantizer;  // the one used: `q`, or `q` with a smaller group that divides cols
  QuantizedMatrix matrix;
};

// What to do with a layer whose width the quantizer's group does not divide (stories260K's 172, SmolLM2's
// 576 with g = 128). none: an error naming the layer and its width, because a silent smaller group changes
// the bits per weight being compared (issue 26); halve: the largest power-of-two group below that divides
// it, recorded in the row (layer_quantizers) and in the exact bits per weight.
enum class GroupFallback { none, halve };
inline constexpr const char* kGroupFallbackChoices[] = {"none", "halve"};
GroupFallback parse_group_fallback(const std::string& name);  // InputError naming the valid choices

// The quantizer the rows x cols layer `layer` gets: `q` when it fits; otherwise, with `fallback` halve, `q`
// with the largest power-of-two group (at least 4) that divides cols (inside a modifier too: rotated(rtn)).
// InputError naming the layer, its width and the remedies when nothing fits or `fallback` is none.
std::unique_ptr<Quantizer> quantizer_for_layer(const Quantizer& q, const std::string& layer, std::size_t rows, std::size_t cols,
                                               GroupFallback fallback);

// The seed a layer's quantization gets from the point's seed: derive_seed(seed, name) >> 1.
std::uint64_t layer_seed(std::uint64_t seed, const std::string& name);

// w: rows x cols (out x in), quantized with quantizer_for_layer(q, name, ...) and layer_seed(seed, name).
// inputs: the layer's calibration statistics (eval/calibration.hpp), which a calibrated quantizer (gptq) needs and
// the others ignore; InputError naming the layer when a calibrated quantizer gets none.
QuantizedLayer quantize_layer(const Quantizer& q, const std::string& name, const Matrix& w, std::uint64_t seed,
                              GroupFallback fallback, const InputStatistics* inputs = nullptr);

// How a model's layers will be quantized, known from the tensors' shapes alone (read_checkpoint_shapes):
// the quantizer each selected layer gets and the bytes it will store (Quantizer::storage_bytes). The same
// accounting as a run's rows: quantized layers as stored, every other tensor at 16 bits.
struct QuantizationPlan {
  struct Layer {
    std::string name, quantizer;  // the effective quantizer's canonical name
    std::size_t rows = 0, cols = 0;
    std::uint64_t bytes = 0;
  };
  std::vector<Layer> layers;  // in the checkpoint's name order
  double quantized_weights = 0, quantized_bytes = 0, other_weights = 0;

  double quantized_bits_per_weight() const { return quantized_weights > 0 ? 8 * quantized_bytes / quantized_weights : 0.0; }
  double model_bits_per_weight() const;
  // The effective quantizers with their layer counts and widths, most used first.
  struct Group {
    std::string quantizer;
    int layers = 0;
    std::vector<std::size_t> widths;  // ascending
  };
  std::vector<Group> summary() const;
  // summary() as JSON, the rows' layer_quantizers: [{"quantizer": "...", "layers": 21, "widths": [512]}, ...].
  std::string summary_json() const;
};

// Throws InputError (quantizer_for_layer's) for the first layer that cannot be quantized under `fallback`.
QuantizationPlan plan_quantization(const Checkpoint& shapes, const Quantizer& q, const LayerSelection& selection,
                                   GroupFallback fallback);

}  // namespace tqb
