#pragma once
// The check every quantized matrix passes before its metrics count (matrix points and each quantized layer
// of a model).
#include <algorithm>
#include <cstddef>
#include <string>

#include "common/matrix.hpp"

namespace tqb {

// Throws RunError "<what>: the quantized weights are not finite ..." when w is finite but its quantized
// copy w_hat is not (fp16 norms or scales past 65504, any format), so that a point fails with the reason
// instead of reporting NaN metrics as ok.
void require_finite_weights(const Matrix& w, const Matrix& w_hat, const std::string& what);

// ‖w − ŵ‖² and ‖w‖² in double, in one parallel pass whose sums are per row and then added in row order (the same
// bits on any number of threads), and the finiteness check above on the way (an 8B model's layers passed three
// serial passes before: about 20 s of its quantization).
struct WeightError {
  double squared_error = 0, squared_norm = 0;
  std::size_t weights = 0;
  double mse() const { return squared_error / static_cast<double>(weights); }
  double nmse() const { return squared_error / std::max(1e-300, squared_norm); }
};
WeightError checked_weight_error(const Matrix& w, const Matrix& w_hat, const std::string& what);

}  // namespace tqb
