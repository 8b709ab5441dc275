#include "quantizers/none.hpp"

#include <cstring>

namespace tqb {
namespace {

class NoQuantization final : public Quantizer {
 public:
  explicit NoQuantization(const Params& p) : Quantizer("none", ParamSchema(), p) {}
  ShapeProblem check_shape(std::size_t rows, std::size_t cols) const override {
    if (rows == 0 || cols == 0) return {"", "the matrix is empty"};
    return {};
  }
  bool uses_seed() const override { return false; }  // deterministic: same bytes for every seed

  double nominal_bits(std::size_t) const override { return 32; }
  std::uint64_t storage_bytes(std::size_t rows, std::size_t cols) const override { return std::uint64_t{rows} * cols * sizeof(float); }
  QuantizedMatrix quantize(const float* w, std::size_t rows, std::size_t cols, std::uint64_t seed) const override {
    QuantizedMatrix q = new_matrix(rows, cols, seed, 8);
    q.codes.resize(rows * cols * sizeof(float));  // the fp32 weights, byte for byte
    std::memcpy(q.codes.data(), w, q.codes.size());
    return q;
  }
  void dequantize(const QuantizedMatrix& q, float* out) const override { std::memcpy(out, q.codes.data(), q.codes.size()); }
};

}  // namespace

QuantizerFamily none_family() {
  return {"none", "no quantization: the fp32 weights (the baseline row of a sweep)", ParamSchema(),
          [](const Params& p) { return std::make_unique<NoQuantization>(p); }};
}

}  // namespace tqb
