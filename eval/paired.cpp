#include "eval/paired.hpp"

#include <boost/math/distributions/students_t.hpp>
#include <fmt/format.h>

#include <cmath>
#include <limits>

#include "common/error.hpp"

namespace tqb {
namespace {

double mean_of(const std::vector<double>& x) {
  double s = 0;
  for (double v : x) s += v;
  return s / static_cast<double>(x.size());
}

double variance_of(const std::vector<double>& x) {  // sample variance (n − 1)
  const double m = mean_of(x);
  double s = 0;
  for (double v : x) s += (v - m) * (v - m);
  return s / static_cast<double>(x.size() - 1);
}

double t_quantile(double dof) { return boost::math::quantile(boost::math::students_t(dof), 0.975); }

// One term of a variance of a mean: its value and degrees of freedom.
struct Term {
  double v = 0, dof = 1;
};

// Σ v with Satterthwaite's degrees of freedom (Σ v)² / Σ (v² / dof); terms of 0 drop out.
Term combine(const std::vector<Term>& terms) {
  Term t;
  double denom = 0;
  t.v = 0;
  for (const auto& x : terms) {
    t.v += x.v;
    if (x.v > 0) denom += x.v * x.v / x.dof;
  }
  t.dof = denom > 0 ? t.v * t.v / denom : std::numeric_limits<double>::infinity();
  return t;
}

void check(const LossMatrix& x, const char* what) {
  if (x.empty() || x.front().size() < 2)
    throw InputError(fmt::format("{}: an interval over chunks needs at least one row of at least 2 chunks", what));
  for (const auto& r : x)
    if (r.size() != x.front().size()) throw InputError(fmt::format("{}: repeats scored different numbers of chunks", what));
}

std::vector<double> chunk_means(const LossMatrix& x) {
  std::vector<double> c(x.front().size(), 0.0);
  for (const auto& r : x)
    for (std::size_t j = 0; j < c.size(); ++j) c[j] += r[j];
  for (auto& v : c) v /= static_cast<double>(x.size());
  return c;
}

// The seed term σ_b²/R = max(0, MS_seed − MS_resid)/(CR), with the Satterthwaite degrees of freedom of that
// difference of mean squares; 0 with one seed.
Term seed_term(const LossMatrix& x) {
  const std::size_t R = x.size(), C = x.front().size();
  if (R < 2) return {0, 1};
  const std::vector<double> c = chunk_means(x);
  std::vector<double> s(R);
  for (std::size_t r = 0; r < R; ++r) s[r] = mean_of(x[r]);
  const double m = mean_of(s);
  double ss_e = 0;
  for (std::size_t r = 0; r < R; ++r)
    for (std::size_t j = 0; j < C; ++j) {
      const double e = x[r][j] - s[r] - c[j] + m;
      ss_e += e * e;
    }
  const double df_s = static_cast<double>(R - 1), df_e = static_cast<double>((R - 1) * (C - 1));
  const double ms_s = static_cast<double>(C) * variance_of(s), ms_e = ss_e / df_e;
  const double diff = ms_s - ms_e;
  if (diff <= 0) return {0, 1};
  return {diff / static_cast<double>(C * R), diff * diff / (ms_s * ms_s / df_s + ms_e * ms_e / df_e)};
}

Term chunk_term(const std::vector<double>& chunk_mean) {
  return {variance_of(chunk_mean) / static_cast<double>(chunk_mean.size()), static_cast<double>(chunk_mean.size() - 1)};
}

double half_width(const Term& t) { return t.v > 0 ? t_quantile(t.dof) * std::sqrt(t.v) : 0.0; }

}  // namespace

MeanInterval crossed_mean_interval(const LossMatrix& x) {
  check(x, "crossed_mean_interval");
  const std::vector<double> c = chunk_means(x);
  const Term t = combine({chunk_term(c), seed_term(x)});
  return {mean_of(c), half_width(t), t.dof};
}

PairedDifference paired_difference(const LossMatrix& a, const LossMatrix& b, bool seeds_paired) {
  check(a, "paired difference");
  check(b, "paired difference");
  if (a.front().size() != b.front().size())
    throw InputError(fmt::format("a paired difference needs the same chunks on both sides (got {} and {})", a.front().size(),
                                 b.front().size()));
  if (seeds_paired && a.size() != b.size())
    throw InputError(fmt::format("seeds paired over {} and {} repeats", a.size(), b.size()));
  PairedDifference r;
  r.n = a.front().size();
  r.repeats_a = a.size();
  r.repeats_b = b.size();
  r.seeds_paired = seeds_paired;
  const std::vector<double> ca = chunk_means(a), cb = chunk_means(b);
  std::vector<double> d(r.n);
  for (std::size_t j = 0; j < r.n; ++j) d[j] = cb[j] - ca[j];
  r.mean = mean_of(d);
  Term t;
  if (seeds_paired) {
    LossMatrix diff = b;
    for (std::size_t s = 0; s < diff.size(); ++s)
      for (std::size_t j = 0; j < r.n; ++j) diff[s][j] -= a[s][j];
    t = combine({chunk_term(d), seed_term(diff)});
  } else {
    t = combine({chunk_term(d), seed_term(a), seed_term(b)});
  }
  r.ci95 = half_width(t);
  r.dof = t.dof;
  if (t.v > 0) {
    const double stat = r.mean / std::sqrt(t.v);
    r.p_value = 2 * boost::math::cdf(boost::math::complement(boost::math::students_t(t.dof), std::fabs(stat)));
  } else {
    r.p_value = r.mean == 0 ? 1.0 : 0.0;
  }
  r.unpaired_ci95 = half_width(combine({chunk_term(ca), chunk_term(cb), seed_term(a), seed_term(b)}));
  const double ma = mean_of(ca), mb = mean_of(cb), va = variance_of(ca), vb = variance_of(cb);
  double cov = 0;
  for (std::size_t j = 0; j < r.n; ++j) cov += (ca[j] - ma) * (cb[j] - mb);
  cov /= static_cast<double>(r.n - 1);
  r.correlation = va > 0 && vb > 0 ? cov / std::sqrt(va * vb) : 0.0;
  return r;
}

PairedDifference paired_difference(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size() || a.size() < 2)
    throw InputError(fmt::format("a paired difference needs the same units on both sides, at least 2 (got {} and {})", a.size(), b.size()));
  return paired_difference(LossMatrix{a}, LossMatrix{b}, true);
}

}  // namespace tqb
