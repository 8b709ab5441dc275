#include <doctest/doctest.h>

#include <cmath>
#include <stdexcept>

#include "quantizers/codebook.hpp"

using namespace tqb;

TEST_CASE("Gaussian Lloyd-Max distortions match the known values to four digits") {
  // Lloyd-Max distortion of a unit Gaussian for b = 1..5 (Max 1960), to four significant digits; REFERENCE.md
  // quotes 0.009497 and 0.002499 for b = 4 and 5, but the values are 0.009501 and 0.002505 (issue 13).
  const double known[] = {0.3634, 0.1175, 0.03454, 0.009501, 0.002505};
  for (int b = 1; b <= 5; ++b) {
    CAPTURE(b);
    const auto& cb = lloyd_max_codebook(CodebookDistribution::gaussian, 0, b);
    CHECK(cb.converged);
    CHECK(cb.distortion == doctest::Approx(known[b - 1]).epsilon(0.0005));
  }
  // Centroids: b = 1 ±sqrt(2/pi); b = 2 ±0.4528, ±1.5104.
  CHECK(lloyd_max_codebook(CodebookDistribution::gaussian, 0, 1).centroids[1] == doctest::Approx(std::sqrt(2 / M_PI)));
  const auto& c2 = lloyd_max_codebook(CodebookDistribution::gaussian, 0, 2).centroids;
  CHECK(c2[2] == doctest::Approx(0.4528).epsilon(1e-4));
  CHECK(c2[3] == doctest::Approx(1.5104).epsilon(1e-4));
}

TEST_CASE("Lloyd-Max codebooks are symmetric, sorted and satisfy the centroid condition") {
  for (auto dist : {CodebookDistribution::gaussian, CodebookDistribution::beta})
    for (int d : {3, 64, 1536})
      for (int b = 1; b <= 8; ++b) {
        CAPTURE(to_string(dist));
        CAPTURE(d);
        CAPTURE(b);
        const LloydMaxCodebook cb = compute_lloyd_max(dist, d, b);
        REQUIRE(cb.converged);
        REQUIRE(cb.centroids.size() == (1u << b));
        REQUIRE(cb.boundaries.size() == (1u << b) - 1);
        const double sd = dist == CodebookDistribution::gaussian ? 1.0 : 1.0 / std::sqrt(double(d));
        for (std::size_t i = 0; i < cb.centroids.size(); ++i) {
          CHECK(cb.centroids[i] == -cb.centroids[cb.centroids.size() - 1 - i]);
          if (i) CHECK(cb.centroids[i] > cb.centroids[i - 1]);
        }
        // Each centroid is the conditional mean of its cell (to 1e-9 of the standard deviation).
        for (std::size_t i = 0; i < cb.centroids.size(); ++i) {
          const double lo = i == 0 ? -INFINITY : cb.boundaries[i - 1];
          const double hi = i + 1 == cb.centroids.size() ? INFINITY : cb.boundaries[i];
          const CellMoments m = cell_moments(dist, d, std::max(lo, dist == CodebookDistribution::beta ? -1.0 : lo),
                                             std::min(hi, dist == CodebookDistribution::beta ? 1.0 : hi));
          CHECK(std::fabs(m.first / m.mass - cb.centroids[i]) < 1e-9 * sd);
        }
        if (dist == CodebookDistribution::gaussian) break;  // d does not matter
      }
}

TEST_CASE("the beta codebook tends to the scaled Gaussian one as d grows") {
  for (int b = 1; b <= 4; ++b) {
    const auto& g = lloyd_max_codebook(CodebookDistribution::gaussian, 0, b);
    const auto& small = lloyd_max_codebook(CodebookDistribution::beta, 64, b);
    const auto& large = lloyd_max_codebook(CodebookDistribution::beta, 4096, b);
    CHECK(std::fabs(large.distortion * 4096 - g.distortion) < std::fabs(small.distortion * 64 - g.distortion));
    CHECK(large.distortion * 4096 == doctest::Approx(g.distortion).epsilon(0.002));
    CHECK(large.centroids.back() * std::sqrt(4096.0) == doctest::Approx(g.centroids.back()).epsilon(0.002));
  }
}

TEST_CASE("Lloyd-Max rejects bits and dimensions it cannot serve") {
  CHECK_THROWS_AS(compute_lloyd_max(CodebookDistribution::gaussian, 0, 0), std::invalid_argument);
  CHECK_THROWS_AS(compute_lloyd_max(CodebookDistribution::gaussian, 0, 9), std::invalid_argument);
  CHECK_THROWS_AS(compute_lloyd_max(CodebookDistribution::beta, 1, 2), std::invalid_argument);
}
