#include "harness/metrics.hpp"

#include <cmath>

namespace tqb {

std::string to_string(Direction d) {
  switch (d) {
    case Direction::lower: return "lower";
    case Direction::higher: return "higher";
    case Direction::zero: return "zero";
  }
  return "?";
}

const InnerProductErrors& EvalContext::inner_product_errors() {
  if (!ip_) {
    const Matrix y = make_queries_();
    // E = (Ŵ - W) Yᵀ in double: rows x n_queries errors of the inner-product estimate.
    const Eigen::MatrixXd diff = (w_hat - w).cast<double>();
    const Eigen::MatrixXd e = diff * y.cast<double>().transpose();
    InnerProductErrors s;
    s.pairs = static_cast<std::size_t>(e.size());
    s.mean = e.mean();
    s.rmse = std::sqrt(e.array().square().mean());
    s.variance = s.pairs > 1 ? (e.array() - s.mean).square().sum() / static_cast<double>(s.pairs - 1) : 0.0;
    ip_ = s;
  }
  return *ip_;
}

static double squared_error(const Matrix& a, const Matrix& b) {
  return (a.cast<double>() - b.cast<double>()).squaredNorm();
}

const std::vector<Metric>& metrics() {
  // To add a metric: one entry here (shared intermediates go into EvalContext).
  static const std::vector<Metric> all{
      {"weight_mse", "mean squared error of the weights, ||W - Ŵ||² / (rows·cols)", Direction::lower,
       [](EvalContext& c) { return squared_error(c.w, c.w_hat) / static_cast<double>(c.w.size()); }},
      {"weight_nmse", "normalized squared error ||W - Ŵ||² / ||W||²", Direction::lower,
       [](EvalContext& c) {
         const double n = c.w.cast<double>().squaredNorm();
         return n > 0 ? squared_error(c.w, c.w_hat) / n : 0.0;
       }},
      {"worst_row_rel_err", "largest relative row error max_i ||w_i - ŵ_i|| / ||w_i||", Direction::lower,
       [](EvalContext& c) {
         double worst = 0;
         for (Eigen::Index i = 0; i < c.w.rows(); ++i) {
           const double n = c.w.row(i).cast<double>().norm();
           const double e = (c.w.row(i).cast<double>() - c.w_hat.row(i).cast<double>()).norm();
           worst = std::max(worst, n > 0 ? e / n : (e > 0 ? INFINITY : 0.0));
         }
         return worst;
       }},
      {"ip_bias", "mean of <y,ŵ> - <y,w> over random unit queries y and rows w (bias)", Direction::zero,
       [](EvalContext& c) { return c.inner_product_errors().mean; }},
      {"ip_var", "variance of <y,ŵ> - <y,w> over random unit queries and rows", Direction::lower,
       [](EvalContext& c) { return c.inner_product_errors().variance; }},
      {"ip_rmse", "root mean square of <y,ŵ> - <y,w> over random unit queries and rows", Direction::lower,
       [](EvalContext& c) { return c.inner_product_errors().rmse; }},
      {"bits_per_weight", "stored bits per weight: codes, scales, zero points, norms and codebooks",
       Direction::lower, [](EvalContext& c) { return c.q.bits_per_weight(); }},
      {"storage_bytes", "bytes stored for the quantized matrix", Direction::lower,
       [](EvalContext& c) { return static_cast<double>(c.q.storage_bytes()); }},
  };
  return all;
}

const Metric* find_metric(const std::string& name) {
  for (const auto& m : metrics())
    if (m.name == name) return &m;
  return nullptr;
}

std::vector<std::string> metric_names() {
  std::vector<std::string> out;
  for (const auto& m : metrics()) out.push_back(m.name);
  return out;
}

}  // namespace tqb
