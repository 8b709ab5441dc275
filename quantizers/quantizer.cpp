#include "quantizers/quantizer.hpp"

#include "quantizers/bitpack.hpp"

#include <stdexcept>

namespace tqb {

Quantizer::Quantizer(std::string family, const ParamSchema& schema, Params params)
    : family_(std::move(family)), params_(std::move(params)), name_(family_ + "(" + schema.format(params_) + ")") {}

std::vector<PassForm> Quantizer::decode_form() const {
  const auto composite = passes();
  std::vector<PassForm> out;
  for (const Quantizer* p : composite) {
    const auto f = p->decode_form();
    if (f.empty()) return {};
    out.insert(out.end(), f.begin(), f.end());
  }
  return out;
}

void Quantizer::describe_decode(const QuantizedMatrix& q, std::vector<DecodePass>& out) const {
  const auto composite = passes();
  if (composite.empty() || decode_form().empty())
    throw std::invalid_argument(name() + " has no decode description (only dequantize-then-dense reads it)");
  for (std::size_t k = 0; k < composite.size(); ++k) composite[k]->describe_decode(q.passes.at(k), out);
}

std::vector<PassForm> Quantizer::search_form() const {
  auto form = decode_form();
  if (form.size() != 1) form.clear();
  return form;
}

// The single pass, and only where set_grid_codes can write codes back into it: its code stream q's own, one code a weight.
DecodePass Quantizer::search_grid(const QuantizedMatrix& q) const {
  std::vector<DecodePass> passes;
  describe_decode(q, passes);
  if (passes.size() != 1) throw std::invalid_argument(name() + " decodes in several passes, not one grid");
  if (passes.front().codes != q.codes.data() || passes.front().rows != q.rows || passes.front().cols != q.cols)
    throw std::invalid_argument("its code stream is not the weights' own");
  return std::move(passes.front());
}

void Quantizer::set_grid_codes(QuantizedMatrix& q, const std::uint8_t* codes) const {
  pack_codes(codes, q.rows * q.cols, search_grid(q).bits, q.codes.data());
}

std::uint64_t Quantizer::working_bytes(std::size_t rows, std::size_t cols) const {
  const double weights = static_cast<double>(rows) * static_cast<double>(cols);
  return static_cast<std::uint64_t>(weights * (nominal_bits(cols) / 8.0 + 1.0)) + 4 * rows * 2;
}

QuantizedMatrix Quantizer::new_matrix(std::size_t rows, std::size_t cols, std::uint64_t seed, int code_bits) const {
  QuantizedMatrix q;
  q.rows = rows;
  q.cols = cols;
  q.format = name();
  q.seed = seed;
  q.code_bits = code_bits;
  return q;
}

QuantizedMatrix Quantizer::zero_layout(std::size_t rows, std::size_t cols, std::uint64_t seed) const {
  const std::vector<float> zeros(rows * cols, 0.0f);
  return quantize(zeros.data(), rows, cols, seed);
}

}  // namespace tqb
