#include "quantizers/ggml_formats.hpp"

#include <fmt/format.h>

#include "quantizers/calibrated_modifier.hpp"
#include "quantizers/ggml_block_grid.hpp"
#include "quantizers/ggml_blocks.hpp"

namespace tqb {
namespace {

constexpr const char* kNoFallback = "none";

ParamSchema schema_of(const GgmlBlockFormat& f) {
  if (!f.fallback) return ParamSchema();
  ParamSpec fallback{"fallback", ParamSpec::Kind::choice, std::string(f.fallback),
                     fmt::format("format for rows that are not a multiple of {} weights ({}: llama-quantize's choice; "
                                 "none: refuse such matrices)", f.block, f.fallback)};
  fallback.choices.push_back(kNoFallback);
  for (const auto& g : ggml_block_formats())
    if (!g.fallback) fallback.choices.push_back(g.name);
  return ParamSchema({fallback});
}

class GgmlQuantizer final : public Quantizer {
 public:
  GgmlQuantizer(const GgmlBlockFormat& f, const Params& p)
      : Quantizer(f.name, schema_of(f), p), f_(f), fallback_(f.fallback ? find_ggml_block_format(get_str(p, "fallback")) : nullptr) {}

  ShapeProblem check_shape(std::size_t rows, std::size_t cols) const override {
    if (rows == 0 || cols == 0) return {"", "the matrix is empty"};
    const GgmlBlockFormat& f = format_for(cols);
    if (cols % f.block != 0) {
      if (&f == &f_ && f_.fallback)
        return {"fallback", fmt::format("{} stores super-blocks of {} weights along a row, {} columns are not a multiple "
                                        "of {}, and fallback=none (llama-quantize would use {})",
                                        f_.name, f_.block, cols, f_.block, f_.fallback)};
      return {"", fmt::format("{} stores blocks of {} weights along a row, and {} columns are not a multiple of {}", f.name,
                              f.block, cols, f.block)};
    }
    return {};
  }

  bool uses_seed() const override { return false; }  // deterministic: same bytes for every seed

  double nominal_bits(std::size_t cols) const override { return format_for(cols).code_bits; }

  std::uint64_t storage_bytes(std::size_t rows, std::size_t cols) const override {
    const GgmlBlockFormat& f = format_for(cols);
    return std::uint64_t{rows} * (cols / f.block) * f.block_bytes;
  }

  // Rows in parallel: each row is a whole number of blocks.
  QuantizedMatrix quantize(const float* w, std::size_t rows, std::size_t cols, std::uint64_t seed) const override {
    const GgmlBlockFormat& f = format_for(cols);
    QuantizedMatrix q = new_matrix(rows, cols, seed, 8);  // codes hold bytes: ggml's blocks
    const std::size_t row_bytes = cols / f.block * f.block_bytes;
    q.codes.resize(rows * row_bytes);
#pragma omp parallel for schedule(static)
    for (std::ptrdiff_t r = 0; r < static_cast<std::ptrdiff_t>(rows); ++r)
      f.quantize(w + r * cols, q.codes.data() + r * row_bytes, cols);
    return q;
  }

  void dequantize(const QuantizedMatrix& q, float* out) const override {
    const GgmlBlockFormat& f = format_for(q.cols);
    const std::size_t row_bytes = q.cols / f.block * f.block_bytes;
#pragma omp parallel for schedule(static)
    for (std::ptrdiff_t r = 0; r < static_cast<std::ptrdiff_t>(q.rows); ++r)
      f.dequantize(q.codes.data() + r * row_bytes, out + r * q.cols, q.cols);
  }

  // The 32-weight formats and q4_K/q5_K/q6_K are grids gptq can search (ggml_block_grid.hpp): a·lut[code] + b per group.
  std::vector<PassForm> search_form() const override {
    const GgmlBlockGrid g = ggml_block_grid(f_);
    if (g.lut.empty()) return {};
    return {PassForm{.bits = f_.code_bits, .group = static_cast<std::int64_t>(g.group), .has_offset = g.offset}};
  }
  DecodePass search_grid(const QuantizedMatrix& q) const override {
    const GgmlBlockFormat& f = format_for(q.cols);
    const GgmlBlockGrid grid = ggml_block_grid(f);
    if (grid.lut.empty()) throw std::invalid_argument(std::string(f.name) + " is not a grid tqbench can search (ggml_block_grid.hpp)");
    DecodePass s;
    s.rows = q.rows;
    s.cols = q.cols;
    s.g = s.m = grid.group;
    s.groups = q.cols / grid.group;
    s.grid_span = grid.span;
    s.bits = f.code_bits;
    s.lut = grid.lut;
    ggml_block_scales(f, q.codes.data(), q.rows, q.cols, s.a, s.b);
    return s;
  }
  void set_grid_codes(QuantizedMatrix& q, const std::uint8_t* codes) const override {
    ggml_block_set_codes(format_for(q.cols), q.codes.data(), q.rows, q.cols, codes);
  }

  // The format of a row of `cols` weights: the family's own, or its fallback when rows do not divide
  // into super-blocks (as llama-quantize does, so that a sweep's q4_K is the q4_K people ship).
  const GgmlBlockFormat& format_for(std::size_t cols) const {
    return cols % f_.block != 0 && fallback_ ? *fallback_ : f_;
  }

 private:
  const GgmlBlockFormat& f_;
  const GgmlBlockFormat* fallback_;
};

}  // namespace

std::vector<QuantizerFamily> ggml_families() {
  std::vector<QuantizerFamily> out;
  for (const auto& f : ggml_block_formats()) {
    const double bpw = 8.0 * static_cast<double>(f.block_bytes) / static_cast<double>(f.block);
    out.push_back({f.name,
                   fmt::format("llama.cpp's {} ({} bits per weight: {}), as llama-quantize writes it without an "
                               "importance matrix", f.name, bpw, f.layout),
                   schema_of(f), [&f](const Params& p) { return std::make_unique<GgmlQuantizer>(f, p); }});
  }
  return out;
}

const GgmlBlockFormat* ggml_format_of(const Quantizer& q, std::size_t cols) {
  // gptq(Q) stores Q's bytes (other codes on Q's grid): a GGUF tensor of Q's type. awq's per-channel scales are not.
  if (const auto* m = dynamic_cast<const CalibratedModifier*>(&q); m && m->family() == "gptq") return ggml_format_of(m->inner(), cols);
  const auto* g = dynamic_cast<const GgmlQuantizer*>(&q);
  return g ? &g->format_for(cols) : nullptr;
}

}  // namespace tqb
