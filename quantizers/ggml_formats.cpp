#include "quantizers/ggml_formats.hpp"

#include <fmt/format.h>

#include "quantizers/ggml_blocks.hpp"

namespace tqb {
namespace {

class GgmlQuantizer final : public Quantizer {
 public:
  GgmlQuantizer(const GgmlBlockFormat& f, const Params& p) : Quantizer(f.name, p), f_(f) {}

  ShapeProblem check_shape(std::size_t rows, std::size_t cols) const override {
    if (rows == 0 || cols == 0) return {"", "the matrix is empty"};
    if (cols % f_.block != 0)
      return {"", fmt::format("{} stores blocks of {} weights along a row, and {} columns are not a multiple of {}",
                              f_.name, f_.block, cols, f_.block)};
    return {};
  }

  double nominal_bits(std::size_t) const override { return f_.code_bits; }

  // Rows in parallel: each row is a whole number of blocks.
  QuantizedMatrix quantize(const float* w, std::size_t rows, std::size_t cols, std::uint64_t seed) const override {
    QuantizedMatrix q = new_matrix(rows, cols, seed, 8);  // codes hold bytes: ggml's blocks
    const std::size_t row_bytes = cols / f_.block * f_.block_bytes;
    q.codes.resize(rows * row_bytes);
#pragma omp parallel for schedule(static)
    for (std::ptrdiff_t r = 0; r < static_cast<std::ptrdiff_t>(rows); ++r)
      f_.quantize(w + r * cols, q.codes.data() + r * row_bytes, cols);
    return q;
  }

  void dequantize(const QuantizedMatrix& q, float* out) const override {
    const std::size_t row_bytes = q.cols / f_.block * f_.block_bytes;
#pragma omp parallel for schedule(static)
    for (std::ptrdiff_t r = 0; r < static_cast<std::ptrdiff_t>(q.rows); ++r)
      f_.dequantize(q.codes.data() + r * row_bytes, out + r * q.cols, q.cols);
  }

 private:
  const GgmlBlockFormat& f_;
};

}  // namespace

std::vector<QuantizerFamily> ggml_families() {
  std::vector<QuantizerFamily> out;
  for (const auto& f : ggml_block_formats()) {
    const double bpw = 8.0 * static_cast<double>(f.block_bytes) / static_cast<double>(f.block);
    out.push_back({f.name,
                   fmt::format("llama.cpp's {} ({} bits per weight: blocks of {}, fp16 scale{}), ggml's reference "
                               "quantization", f.name, bpw, f.block, f.name[3] == '1' ? " and minimum" : ""),
                   ParamSchema(), [&f](const Params& p) { return std::make_unique<GgmlQuantizer>(f, p); }});
  }
  return out;
}

}  // namespace tqb
