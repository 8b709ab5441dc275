#include "quantizers/quantized_matrix.hpp"

namespace tqb {

std::size_t QuantizedMatrix::storage_bytes() const {
  std::size_t total = codes.size() + scales.size() + zeros.size() + codebook.size() * sizeof(float);
  for (const auto& p : passes) total += p.storage_bytes();
  return total;
}

double QuantizedMatrix::bits_per_weight() const {
  const double n = static_cast<double>(rows) * static_cast<double>(cols);
  return n > 0 ? 8.0 * static_cast<double>(storage_bytes()) / n : 0.0;
}

}  // namespace tqb
