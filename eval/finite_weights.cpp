#include "eval/finite_weights.hpp"

#include <fmt/format.h>

#include <cmath>
#include <vector>

#include "common/error.hpp"

namespace tqb {

namespace {
[[noreturn]] void not_finite(const std::string& what) {
  throw RunError(fmt::format("{}: the quantized weights are not finite (a norm or scale overflows its storage format; try fp32 side data)",
                             what));
}
}  // namespace

void require_finite_weights(const Matrix& w, const Matrix& w_hat, const std::string& what) {
  if (w.allFinite() && !w_hat.allFinite()) not_finite(what);
}

WeightError checked_weight_error(const Matrix& w, const Matrix& w_hat, const std::string& what) {
  const Eigen::Index rows = w.rows(), cols = w.cols();
  std::vector<double> err(static_cast<std::size_t>(rows)), norm(static_cast<std::size_t>(rows));
  std::vector<char> w_finite(static_cast<std::size_t>(rows)), hat_finite(static_cast<std::size_t>(rows));
#pragma omp parallel for schedule(static)
  for (Eigen::Index r = 0; r < rows; ++r) {
    double e = 0, n = 0;
    bool wf = true, hf = true;
    const float *a = w.row(r).data(), *b = w_hat.row(r).data();
    for (Eigen::Index c = 0; c < cols; ++c) {
      wf = wf && std::isfinite(a[c]);
      hf = hf && std::isfinite(b[c]);
      const double d = static_cast<double>(a[c]) - b[c];
      e += d * d;
      n += static_cast<double>(a[c]) * a[c];
    }
    err[r] = e;
    norm[r] = n;
    w_finite[r] = wf;
    hat_finite[r] = hf;
  }
  WeightError out;
  out.weights = static_cast<std::size_t>(w.size());
  bool wf = true, hf = true;
  for (Eigen::Index r = 0; r < rows; ++r) {
    out.squared_error += err[r];
    out.squared_norm += norm[r];
    wf = wf && w_finite[r];
    hf = hf && hat_finite[r];
  }
  if (wf && !hf) not_finite(what);
  return out;
}

}  // namespace tqb
