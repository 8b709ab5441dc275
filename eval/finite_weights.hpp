#pragma once
// The check every quantized matrix passes before its metrics count (matrix points and each quantized layer
// of a model).
#include <string>

#include "common/matrix.hpp"

namespace tqb {

// Throws RunError "<what>: the quantized weights are not finite ..." when w is finite but its quantized
// copy w_hat is not (fp16 norms or scales past 65504, any format), so that a point fails with the reason
// instead of reporting NaN metrics as ok.
void require_finite_weights(const Matrix& w, const Matrix& w_hat, const std::string& what);

}  // namespace tqb
