#pragma once
// The difference of two evaluations on the same tokens, paired over the units they share (perplexity chunks):
// the mean of the per-unit differences d_c = b_c − a_c with a Student-t 95% interval, sd(d)/√n (a paired t
// test; e.g. Wasserman, All of Statistics, §10.2; the chunk is the unit because tokens in a chunk share a
// context and are not independent). Beside it, the unpaired (Welch) interval of the same two means, which
// ignores that both rows saw the same text: on the same chunks the paired one is narrower by how strongly the
// rows' losses move together (issue 26).
#include <cstddef>
#include <vector>

namespace tqb {

struct PairedDifference {
  std::size_t n = 0;              // paired units
  double mean = 0;                // mean of b − a
  double ci95 = 0;                // half-width of the paired 95% t interval (0 when every difference is equal)
  double p_value = 1;             // two-sided paired t test of mean 0 (1 when every difference is 0; 0 when all equal and not 0)
  double unpaired_ci95 = 0;       // half-width of Welch's 95% interval of mean(b) − mean(a)
  double correlation = 0;         // Pearson correlation of a and b over the units
};

// a, b: one value per unit (the same units in the same order). Throws InputError unless both have the same
// length, at least 2.
PairedDifference paired_difference(const std::vector<double>& a, const std::vector<double>& b);

}  // namespace tqb
