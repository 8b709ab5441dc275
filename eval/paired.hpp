#pragma once
// Intervals for model rows over the chunks they scored and the seeds their repeats drew (issue 26).
//
// A row's loss on chunk c under seed s is modelled as x_sc = μ + a_c + b_s + e_sc: a chunk effect (which text),
// a seed effect (which rotation) and their interaction, crossed random effects. The mean over R seeds and C
// chunks then has variance σ_a²/C + σ_b²/R + σ_e²/(CR), estimated by the two-way ANOVA mean squares as
// var(chunk means)/C + max(0, MS_seed − MS_resid)/(CR), with Satterthwaite's degrees of freedom for the Student-t
// quantile (Searle, Casella & McCulloch, *Variance Components*, 1992, §4; Satterthwaite 1946). With one seed
// (a deterministic quantizer, or one repeat) this is the plain t interval over chunks, sd/√C; the chunk is the
// unit because tokens in a chunk share a context and are not independent.
//
// Two rows on the same chunks pair over them: d_c = b_c − a_c removes the text's variation, which dominates a
// perplexity (chunk means of two quantizations correlate at 0.98–0.99 on books-14m). A sweep's quantizers on one
// data point draw the same seeds (common random numbers, harness/sweep.hpp), so when both rows' seeds are the
// same list the differences pair over seeds as well; otherwise each row's seed variation adds its own term.
// Beside it, the unpaired (Welch) interval, which ignores that both rows saw the same text.
#include <cstddef>
#include <cstdint>
#include <vector>

namespace tqb {

// [repeat][chunk]: one row per seed, every row over the same chunks in the same order.
using LossMatrix = std::vector<std::vector<double>>;

struct MeanInterval {
  double mean = 0;
  double ci95 = 0;  // half-width of the 95% interval
  double dof = 0;   // Satterthwaite's degrees of freedom (C − 1 with one seed)
};

// Throws InputError unless x has at least one row, every row the same length, at least 2 chunks.
MeanInterval crossed_mean_interval(const LossMatrix& x);

struct PairedDifference {
  std::size_t n = 0;              // paired chunks
  std::size_t repeats_a = 1, repeats_b = 1;
  bool seeds_paired = false;      // the differences paired over seeds too
  double mean = 0;                // mean of b − a
  double ci95 = 0;                // half-width of the paired 95% interval (0 when every difference is equal)
  double dof = 0;
  double p_value = 1;             // two-sided t test of mean 0 (1 when every difference is 0; 0 when all equal and not 0)
  double unpaired_ci95 = 0;       // half-width of Welch's 95% interval of mean(b) − mean(a)
  double correlation = 0;         // Pearson correlation of a's and b's chunk means
};

// a, b: [repeat][chunk] over the same chunks. seeds_paired: row r of a and of b drew the same seed (then both
// need the same number of rows). Throws InputError for shapes that do not pair.
PairedDifference paired_difference(const LossMatrix& a, const LossMatrix& b, bool seeds_paired);
// One row each: the paired t interval over chunks (Wasserman, *All of Statistics*, 2004, §10.2).
PairedDifference paired_difference(const std::vector<double>& a, const std::vector<double>& b);

}  // namespace tqb
