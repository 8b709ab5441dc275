#pragma once
// Lloyd-Max scalar codebooks (optimal 1-D quantizers for a known density), TurboQuant paper §3.1.
//
// beta:     the density of one coordinate of a uniformly random unit vector in d dimensions,
//           f(t) = Γ(d/2) / (√π Γ((d−1)/2)) · (1 − t²)^((d−3)/2) on [−1, 1] (REFERENCE.md, Algorithm 1).
// gaussian: the standard normal N(0, 1), the d → ∞ limit of √d·t.
//
// Both are symmetric, so the codebook is computed on the positive half-line and mirrored: centroids
// are exactly symmetric and 0 is a cell boundary. Partial moments over a cell are closed-form
// (Boost.Math's regularized incomplete beta and erfc), so the iteration has no quadrature error.
#include <cstddef>
#include <string>
#include <vector>

namespace tqb {

enum class CodebookDistribution { beta, gaussian };
std::string to_string(CodebookDistribution d);

// When the Lloyd-Max iteration stops: the largest centroid move, in units of the distribution's
// standard deviation, is below `centroid_tolerance`, or `max_iterations` is reached.
struct LloydMaxTolerance {
  double centroid_tolerance = 1e-12;
  int max_iterations = 200000;
};

struct LloydMaxCodebook {
  CodebookDistribution distribution;
  int dim = 0;  // d for beta; 0 for gaussian
  int bits = 0;
  std::vector<double> centroids;   // 2^bits values, ascending
  std::vector<double> boundaries;  // 2^bits − 1 midpoints between consecutive centroids
  double distortion = 0;           // E[(X − Q(X))²] per coordinate for the distribution
  int iterations = 0;
  bool converged = false;
};

// Computes the codebook (bits 1..8; dim >= 2 for beta). Throws std::invalid_argument otherwise.
LloydMaxCodebook compute_lloyd_max(CodebookDistribution dist, int dim, int bits, const LloydMaxTolerance& tol = {});

// Cached per (distribution, dim, bits); thread-safe; the reference stays valid for the process.
const LloydMaxCodebook& lloyd_max_codebook(CodebookDistribution dist, int dim, int bits);

// Conditional moments of X over the cell [a, b] (a may be −inf, b +inf): mass, ∫t f, ∫t² f.
struct CellMoments {
  double mass, first, second;
};
CellMoments cell_moments(CodebookDistribution dist, int dim, double a, double b);

}  // namespace tqb
