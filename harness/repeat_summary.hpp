#pragma once
// Error bars for repeated sweeps (spec `repeats: N`): each point runs under N seeds, and the result file
// gets, per point, a summary row (status "summary", key "DATA | QUANTIZER | summary") whose metric
// columns hold the mean over the finished repeats, with
//   METRIC_std   the sample standard deviation over the repeats (n − 1),
//   METRIC_ci95  the half-width of a 95% interval of the mean: for a model metric that is a mean over the
//                scored chunks (perplexity, delta_ppl, delta_log_ppl, kld_mean, top1_agreement: Metric::chunk_ci95), over the
//                chunks and the seeds together (eval/paired.hpp), so a deterministic point (llama.cpp's formats,
//                RTN), which runs once, gets the chunks' interval, never ± 0; for any other metric the Student-t
//                interval over the repeats, t(0.975, n − 1) · std / √n (0 for a deterministic point),
//   n_repeats    the number of finished repeats summarized.
// Model rows carry METRIC_ci95 over their own chunks whether the spec repeats or not.
#include <cstdint>
#include <string>
#include <vector>

#include "harness/store.hpp"

namespace tqb {

// The interval columns after the metrics (role "interval"): with `repeated`, repeat and n_repeats, then METRIC_std
// and METRIC_ci95 for each metric; without, METRIC_ci95 for the metrics with an interval over chunks.
std::vector<Column> repeat_columns(const std::vector<std::string>& metrics, bool repeated);

// Replaces the summary rows of `t` by ones computed from its rows with status "ok", grouped by the data and
// quantizer columns; groups with fewer than two finished repeats get none. Summary rows are numbered from
// `first_point` (after the sweep's points) in order of their groups' first rows.
// Requires the repeat columns (repeat_columns).
void update_repeat_summaries(ResultTable& t, const std::vector<std::string>& metrics, std::int64_t first_point);

// A warning for a spec whose repeats make the seed interval uninformative (repeats: 2 has one degree of freedom,
// t = 12.7), or "" when there is none. `run` and `run --dry-run` print it.
std::string repeats_warning(int repeats);

// Half-width factor of a two-sided 95% interval of a mean from n samples: t(0.975, n − 1) / √n.
double ci95_factor(std::size_t n);

}  // namespace tqb
