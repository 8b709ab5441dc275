#pragma once
// The log-sum-exp of a row of logits as every perplexity in tqbench scores it (evaluate_perplexity on the host,
// the CPU backend's row_nll; the GPU kernel mirrors it): the maximum in float, Σ exp(z − max) in double in index
// order, so that a row's log-probabilities are the same bits wherever they are computed on the CPU.
#include <algorithm>
#include <cmath>
#include <cstddef>

namespace tqb {

inline double log_sum_exp(const float* z, std::size_t n) {
  const float mx = *std::max_element(z, z + n);
  double se = 0;
  for (std::size_t v = 0; v < n; ++v) se += std::exp(static_cast<double>(z[v] - mx));
  return mx + std::log(se);
}

}  // namespace tqb
