#pragma once
// Result tables in the terminal (aligned columns), as Markdown and as CSV.
#include <iosfwd>
#include <string>
#include <vector>

#include "harness/store.hpp"

namespace tqb {

// The columns `tqbench show` prints by default: what identifies a point and its metrics.
std::vector<std::string> default_show_columns(const ResultTable& t);

// What `show` prints: of a repeated sweep (one with summary rows, harness/repeat_summary.hpp) the summary rows
// and any failed ones, otherwise every row; each metric with a METRIC_ci95 column as "value ± half-width of its
// 95% interval" where the interval is known. A table with neither is returned as it is.
ResultTable summary_view(const ResultTable& t, int digits = 6);

// The data and quantizer columns shortened to what varies across the rows of `context` (the whole file, so that a
// --where that keeps one row still names it fully enough) (harness/short_names.hpp), for reading; CSV and --all
// keep the full canonical names.
ResultTable short_name_view(const ResultTable& t, const ResultTable& context);

// Aligned text: numbers right-aligned, text left-aligned; `columns` in the order given.
// digits: significant digits of reals.
void print_table(const ResultTable& t, const std::vector<std::string>& columns, std::ostream& out, int digits = 6);

// A Markdown (GitHub) table of the given columns, for docs: reals as the terminal table shows them,
// '|' in text escaped.
void print_markdown(const ResultTable& t, const std::vector<std::string>& columns, std::ostream& out, int digits = 6);

// RFC 4180 CSV of the given columns with a header row; reals at full precision.
void print_csv(const ResultTable& t, const std::vector<std::string>& columns, std::ostream& out);

}  // namespace tqb
