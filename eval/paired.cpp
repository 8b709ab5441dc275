#include "eval/paired.hpp"

#include <boost/math/distributions/students_t.hpp>
#include <fmt/format.h>

#include <cmath>

#include "common/error.hpp"

namespace tqb {
namespace {

double mean_of(const std::vector<double>& x) {
  double s = 0;
  for (double v : x) s += v;
  return s / static_cast<double>(x.size());
}

double variance_of(const std::vector<double>& x, double m) {  // sample variance (n − 1)
  double s = 0;
  for (double v : x) s += (v - m) * (v - m);
  return s / static_cast<double>(x.size() - 1);
}

double t_quantile(double dof) { return boost::math::quantile(boost::math::students_t(dof), 0.975); }

}  // namespace

PairedDifference paired_difference(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size() || a.size() < 2)
    throw InputError(fmt::format("a paired difference needs the same units on both sides, at least 2 (got {} and {})", a.size(), b.size()));
  PairedDifference r;
  r.n = a.size();
  const double n = static_cast<double>(r.n);
  std::vector<double> d(r.n);
  for (std::size_t i = 0; i < r.n; ++i) d[i] = b[i] - a[i];
  r.mean = mean_of(d);
  const double sd = std::sqrt(variance_of(d, r.mean)), se = sd / std::sqrt(n);
  r.ci95 = se > 0 ? t_quantile(n - 1) * se : 0.0;
  if (se > 0) {
    const double t = r.mean / se;
    r.p_value = 2 * boost::math::cdf(boost::math::complement(boost::math::students_t(n - 1), std::fabs(t)));
  } else {
    r.p_value = r.mean == 0 ? 1.0 : 0.0;
  }
  const double ma = mean_of(a), mb = mean_of(b), va = variance_of(a, ma), vb = variance_of(b, mb);
  const double ua = va / n, ub = vb / n, se_u = std::sqrt(ua + ub);
  if (se_u > 0) {
    // Welch–Satterthwaite degrees of freedom.
    const double dof = (ua + ub) * (ua + ub) / (ua * ua / (n - 1) + ub * ub / (n - 1));
    r.unpaired_ci95 = t_quantile(dof) * se_u;
  }
  double cov = 0;
  for (std::size_t i = 0; i < r.n; ++i) cov += (a[i] - ma) * (b[i] - mb);
  cov /= n - 1;
  r.correlation = va > 0 && vb > 0 ? cov / std::sqrt(va * vb) : 0.0;
  return r;
}

}  // namespace tqb
