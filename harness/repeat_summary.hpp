#pragma once
// Error bars for repeated sweeps (spec `repeats: N`): each point runs under N seeds, and the result file
// gets, per point, a summary row (status "summary", key "DATA | QUANTIZER | summary") whose metric
// columns hold the mean over the finished repeats, with
//   METRIC_std   the sample standard deviation (n − 1),
//   METRIC_ci95  the half-width of the 95% Student-t interval of the mean: t(0.975, n − 1) · std / √n,
//   n_repeats    the number of finished repeats summarized.
// A deterministic quantizer (llama.cpp's formats, RTN) on a model, whose weights and corpus are fixed,
// runs once, and its summary is exact (std 0): its noise is the corpus's, which ppl_stderr reports.
#include <string>
#include <vector>

#include "harness/store.hpp"

namespace tqb {

// The columns a repeated sweep adds after the metrics: repeat, n_repeats, then METRIC_std and METRIC_ci95
// for each metric (role "interval").
std::vector<Column> repeat_columns(const std::vector<std::string>& metrics);

// Replaces the summary rows of `t` by ones computed from its rows with status "ok", grouped by the data and
// quantizer columns; groups with fewer than two finished repeats get none. Summary rows are numbered from
// `first_point` (after the sweep's points) in order of their groups' first rows.
// Requires the repeat columns (repeat_columns).
void update_repeat_summaries(ResultTable& t, const std::vector<std::string>& metrics, std::int64_t first_point);

// Half-width factor of a two-sided 95% interval of a mean from n samples: t(0.975, n − 1) / √n.
double ci95_factor(std::size_t n);

}  // namespace tqb
