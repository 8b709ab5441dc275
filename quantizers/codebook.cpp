#include "quantizers/codebook.hpp"

#include <boost/math/special_functions/beta.hpp>
#include <boost/math/special_functions/erf.hpp>
#include <boost/math/special_functions/gamma.hpp>
#include <cmath>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <tuple>

namespace tqb {

std::string to_string(CodebookDistribution d) { return d == CodebookDistribution::beta ? "beta" : "gaussian"; }

namespace {

constexpr double kInvSqrt2Pi = 0.39894228040143267794;

// Upper-tail moments over [t, +inf) for t >= 0: P(X > t), E[X; X > t], E[X²; X > t].
struct Tail {
  double mass, first, second;
};

Tail gaussian_tail(double t) {
  if (std::isinf(t)) return {0, 0, 0};
  const double phi = kInvSqrt2Pi * std::exp(-0.5 * t * t);
  const double q = 0.5 * std::erfc(t / std::sqrt(2.0));
  return {q, phi, q + t * phi};
}

Tail beta_tail(int d, double t) {
  if (t >= 1.0) return {0, 0, 0};
  // X² ~ Beta(1/2, (d−1)/2); by symmetry P(X > t) = ½ P(X² > t²).
  const double beta = 0.5 * (d - 1);
  const double s = t * t;
  const double mass = 0.5 * boost::math::ibetac(0.5, beta, s);
  // ∫_t^1 u f(u) du = C/(d−1) · (1 − t²)^((d−1)/2), C = Γ(d/2) / (√π Γ((d−1)/2)).
  const double log_c = std::lgamma(0.5 * d) - 0.5 * std::log(M_PI) - std::lgamma(0.5 * (d - 1));
  const double first = std::exp(log_c + beta * std::log1p(-s)) / (d - 1);
  // E[X²; X > t] = ½ E[T; T > t²] = ½ · (1/d) · P(Beta(3/2, (d−1)/2) > t²).
  const double second = 0.5 / d * boost::math::ibetac(1.5, beta, s);
  return {mass, first, second};
}

Tail tail(CodebookDistribution dist, int dim, double t) {
  return dist == CodebookDistribution::gaussian ? gaussian_tail(t) : beta_tail(dim, t);
}

}  // namespace

CellMoments cell_moments(CodebookDistribution dist, int dim, double a, double b) {
  // For cells on the positive side use upper tails (accurate far out); mirror negative cells.
  if (b <= 0) {
    const CellMoments m = cell_moments(dist, dim, -b, -a);
    return {m.mass, -m.first, m.second};
  }
  if (a < 0) {
    const CellMoments neg = cell_moments(dist, dim, a, 0), pos = cell_moments(dist, dim, 0, b);
    return {neg.mass + pos.mass, neg.first + pos.first, neg.second + pos.second};
  }
  const Tail ta = tail(dist, dim, a), tb = tail(dist, dim, b);
  return {ta.mass - tb.mass, ta.first - tb.first, ta.second - tb.second};
}

LloydMaxCodebook compute_lloyd_max(CodebookDistribution dist, int dim, int bits, const LloydMaxTolerance& tol) {
  if (bits < 1 || bits > 8) throw std::invalid_argument("Lloyd-Max codebook: bits must be 1..8");
  if (dist == CodebookDistribution::beta && dim < 2)
    throw std::invalid_argument("Lloyd-Max codebook: the beta density needs d >= 2");
  const int half = 1 << (bits - 1);  // centroids on the positive side
  const double sd = dist == CodebookDistribution::gaussian ? 1.0 : 1.0 / std::sqrt(static_cast<double>(dim));
  const double top = dist == CodebookDistribution::gaussian ? INFINITY : 1.0;

  // Start from the quantiles of the positive half: centroid i at the median of its equal-mass cell.
  std::vector<double> c(half);
  for (int i = 0; i < half; ++i) {
    const double p = (i + 0.5) / half;  // quantile of |X|
    c[i] = dist == CodebookDistribution::gaussian
               ? std::sqrt(2.0) * boost::math::erf_inv(p)
               : std::sqrt(boost::math::ibeta_inv(0.5, 0.5 * (dim - 1), p));
  }

  LloydMaxCodebook cb{dist, dist == CodebookDistribution::beta ? dim : 0, bits, {}, {}, 0, 0, false};
  // Lloyd's map T: boundaries at midpoints (nearest-neighbour condition), then each centroid moved to
  // its cell's conditional mean (centroid condition). The fixed point c = T(c) is the codebook.
  // Plain Lloyd iteration converges linearly and slowly for many levels (10^5 steps at 8 bits), so
  // each step tries a Newton step on T(c) − c = 0 first; its Jacobian is tridiagonal because a
  // centroid depends only on its two boundaries. A Newton step is kept only if it keeps the
  // centroids ordered and shrinks the residual; otherwise the Lloyd step is taken.
  std::vector<double> edges(half + 1), t(half), a(half), b(half);
  auto density = [&](double x) {
    if (dist == CodebookDistribution::gaussian) return kInvSqrt2Pi * std::exp(-0.5 * x * x);
    if (x >= 1.0) return 0.0;
    const double log_c = std::lgamma(0.5 * dim) - 0.5 * std::log(M_PI) - std::lgamma(0.5 * (dim - 1));
    return std::exp(log_c + 0.5 * (dim - 3) * std::log1p(-x * x));
  };
  // Applies T to c, filling t; with `jacobian`, also a[i] = dT_i/de_i and b[i] = dT_i/de_{i+1}.
  auto lloyd_map = [&](const std::vector<double>& c, bool jacobian) {
    edges[0] = 0;
    edges[half] = top;
    for (int i = 1; i < half; ++i) edges[i] = 0.5 * (c[i - 1] + c[i]);
    double residual = 0;
    for (int i = 0; i < half; ++i) {
      const CellMoments m = cell_moments(dist, dim, edges[i], edges[i + 1]);
      t[i] = m.mass > 1e-300 ? m.first / m.mass : 0.5 * (edges[i] + std::min(edges[i + 1], 1.0));
      residual = std::max(residual, std::fabs(t[i] - c[i]));
      if (jacobian) {
        a[i] = m.mass > 1e-300 ? density(edges[i]) * (t[i] - edges[i]) / m.mass : 0.0;
        b[i] = (i + 1 < half && m.mass > 1e-300) ? density(edges[i + 1]) * (edges[i + 1] - t[i]) / m.mass : 0.0;
      }
    }
    return residual;
  };
  auto ordered = [&](const std::vector<double>& c) {
    if (c[0] <= 0) return false;
    for (int i = 1; i < half; ++i)
      if (!(c[i] > c[i - 1])) return false;
    return c[half - 1] < top;
  };
  std::vector<double> lower(half), diag(half), upper(half), rhs(half), trial(half);
  for (cb.iterations = 1; cb.iterations <= tol.max_iterations; ++cb.iterations) {
    const double residual = lloyd_map(c, true);
    if (residual < tol.centroid_tolerance * sd) {
      cb.converged = true;
      break;
    }
    // (J − I) Δ = c − T(c), J tridiagonal: dT_i/dc_{i−1} = a_i/2, dT_i/dc_i = (a_i [i>0] + b_i)/2,
    // dT_i/dc_{i+1} = b_i/2. Solved by the Thomas algorithm.
    const std::vector<double> lloyd_step = t;
    for (int i = 0; i < half; ++i) {
      lower[i] = i > 0 ? 0.5 * a[i] : 0.0;
      upper[i] = i + 1 < half ? 0.5 * b[i] : 0.0;
      diag[i] = (i > 0 ? 0.5 * a[i] : 0.0) + 0.5 * b[i] - 1.0;
      rhs[i] = c[i] - t[i];
    }
    for (int i = 1; i < half; ++i) {
      const double w = lower[i] / diag[i - 1];
      diag[i] -= w * upper[i - 1];
      rhs[i] -= w * rhs[i - 1];
    }
    trial[half - 1] = rhs[half - 1] / diag[half - 1];
    for (int i = half - 2; i >= 0; --i) trial[i] = (rhs[i] - upper[i] * trial[i + 1]) / diag[i];
    for (int i = 0; i < half; ++i) trial[i] += c[i];
    if (ordered(trial) && lloyd_map(trial, false) < residual) c = trial;
    else c = lloyd_step;
  }
  cb.iterations = std::min(cb.iterations, tol.max_iterations);

  // Mirror to the full codebook and compute the exact distortion Σ ∫ (t − c)² f over the cells.
  cb.centroids.resize(2 * half);
  for (int i = 0; i < half; ++i) {
    cb.centroids[half + i] = c[i];
    cb.centroids[half - 1 - i] = -c[i];
  }
  for (int i = 0; i + 1 < 2 * half; ++i) cb.boundaries.push_back(0.5 * (cb.centroids[i] + cb.centroids[i + 1]));
  lloyd_map(c, false);  // sets the edges of the final centroids
  double d = 0;
  for (int i = 0; i < half; ++i) {
    const CellMoments m = cell_moments(dist, dim, edges[i], edges[i + 1]);
    d += m.second - 2 * c[i] * m.first + c[i] * c[i] * m.mass;
  }
  cb.distortion = 2 * d;
  return cb;
}

const LloydMaxCodebook& lloyd_max_codebook(CodebookDistribution dist, int dim, int bits) {
  static std::mutex mutex;
  static std::map<std::tuple<int, int, int>, std::unique_ptr<LloydMaxCodebook>> cache;
  const auto key = std::make_tuple(static_cast<int>(dist), dist == CodebookDistribution::beta ? dim : 0, bits);
  std::lock_guard<std::mutex> lock(mutex);
  auto& slot = cache[key];
  if (!slot) slot = std::make_unique<LloydMaxCodebook>(compute_lloyd_max(dist, dim, bits));
  return *slot;
}

}  // namespace tqb
