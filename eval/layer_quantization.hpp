#pragma once
// How a model's layer is quantized, in one place, so that evaluation (model_eval) and export give the same
// bytes: which tensors are selected (a spec's include/exclude patterns), the quantizer adapted to the
// layer's shape, and the seed derived from the point's seed and the tensor's name.
#include <cstdint>
#include <memory>
#include <string>

#include "common/matrix.hpp"
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

// The quantizer a rows x cols layer gets: `q`, or, when its group does not divide the columns (SmolLM2's
// 576 with g = 128), the same quantizer with the largest power-of-two group below it that does. RunError
// when neither fits.
std::unique_ptr<Quantizer> quantizer_for_layer(const Quantizer& q, std::size_t rows, std::size_t cols);

// w: rows x cols (out x in). The quantizer is `q`, or, when its group does not divide the columns
// (SmolLM2's 576 with g = 128), the same quantizer with the largest power-of-two group below it that does;
// RunError when neither fits. The seed is derive_seed(seed, name) >> 1.
QuantizedLayer quantize_layer(const Quantizer& q, const std::string& name, const Matrix& w, std::uint64_t seed);

}  // namespace tqb
