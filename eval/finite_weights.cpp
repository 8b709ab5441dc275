#include "eval/finite_weights.hpp"

#include <fmt/format.h>

#include "common/error.hpp"

namespace tqb {

void require_finite_weights(const Matrix& w, const Matrix& w_hat, const std::string& what) {
  if (w.allFinite() && !w_hat.allFinite())
    throw RunError(fmt::format("{}: the quantized weights are not finite (a norm or scale overflows its storage format; try fp32 side data)",
                               what));
}

}  // namespace tqb
