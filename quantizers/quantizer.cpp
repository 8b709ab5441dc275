#include "quantizers/quantizer.hpp"

#include "quantizers/registry.hpp"

namespace tqb {

std::string Quantizer::name() const {
  const QuantizerFamily* f = find_quantizer_family(family_);
  return family_ + "(" + (f ? f->schema.format(params_) : std::string()) + ")";
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

}  // namespace tqb
