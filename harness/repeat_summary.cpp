#include "harness/repeat_summary.hpp"

#include "common/error.hpp"
#include "eval/chunk_losses.hpp"
#include "harness/metrics.hpp"
#include "harness/sweep.hpp"

#include <boost/math/distributions/students_t.hpp>
#include <fmt/format.h>
#include <cmath>
#include <map>

namespace tqb {

std::vector<Column> repeat_columns(const std::vector<std::string>& metrics, bool repeated) {
  std::vector<Column> cols;
  if (repeated)
    cols = {
        {"repeat", ColumnType::integer, "point", "repeat index (0 .. repeats - 1; -1 in summary rows)", ""},
        {"n_repeats", ColumnType::integer, "point",
         "repeat rows: repeats this point runs (1 when neither quantizer nor data uses the seed); summary rows: "
         "finished repeats summarized", ""},
    };
  for (const auto& m : metrics) {
    const Metric* metric = find_metric(m);
    const bool chunks = metric && metric->chunk_ci95;
    if (!repeated && !chunks) continue;
    if (repeated)
      cols.push_back({m + "_std", ColumnType::real, "interval", "summary rows: sample standard deviation of " + m + " over the repeats", ""});
    cols.push_back({m + "_ci95", ColumnType::real, "interval",
                    chunks ? "half-width of the 95% interval of " + m + " over the scored chunks (summary rows: over the chunks and "
                             "the repeats' seeds; eval/paired.hpp)"
                           : "summary rows: half-width of the 95% Student-t interval of the mean of " + m + " over the repeats", ""});
  }
  return cols;
}

std::string repeats_warning(int repeats) {
  if (repeats != 2 && repeats != 3) return "";
  const boost::math::students_t dist(repeats - 1.0);
  return fmt::format("warning: repeats: {} gives the seeds' interval {} degree{} of freedom (t = {:.1f} against 1.96 for many): "
                     "intervals over seeds will be wide; 5 or more repeats make them useful (model metrics still get their "
                     "chunks' interval)",
                     repeats, repeats - 1, repeats == 2 ? "" : "s", boost::math::quantile(dist, 0.975));
}

double ci95_factor(std::size_t n) {
  if (n < 2) return std::nan("");
  const boost::math::students_t dist(static_cast<double>(n - 1));
  return boost::math::quantile(dist, 0.975) / std::sqrt(static_cast<double>(n));
}

void update_repeat_summaries(ResultTable& t, const std::vector<std::string>& metrics, std::int64_t first_point) {
  // The columns summaries read, of the types they read them as (a merged file's come from shards that may have been
  // edited): InputError naming the first missing or retyped one.
  auto require = [&](const std::string& name, ColumnType type, bool optional) {
    const int j = t.column_index(name);
    if (j < 0 && optional) return;
    if (j < 0 || t.columns[static_cast<std::size_t>(j)].type != type)
      throw InputError(fmt::format("summarizing the repeats needs a column '{}' of {} values{}", name, column_type_name(type),
                                   j < 0 ? ", and there is none" : fmt::format(", not {}", column_type_name(t.columns[static_cast<std::size_t>(j)].type))));
  };
  for (const char* name : {"status", "data", "quantizer", "key"}) require(name, ColumnType::text, false);
  require("point", ColumnType::integer, false);
  require("n_repeats", ColumnType::integer, false);
  require("elapsed_s", ColumnType::real, true);
  require("chunk_losses", ColumnType::text, true);
  if (t.column_index("timing.kernel") >= 0) require("timing.batch", ColumnType::integer, true);
  for (const auto& m : metrics) require(m, ColumnType::real, true);
  const int status = t.column_index("status"), data = t.column_index("data"), quantizer = t.column_index("quantizer");
  const int timing_kernel = t.column_index("timing.kernel"), timing_batch = t.column_index("timing.batch");
  std::erase_if(t.rows, [&](const auto& r) { return cell_text(r[status], true) == "summary"; });
  std::vector<std::string> order;
  std::map<std::string, std::vector<std::size_t>> groups;
  for (std::size_t i = 0; i < t.rows.size(); ++i) {
    if (cell_text(t.rows[i][status], true) != "ok") continue;
    std::string g = cell_text(t.rows[i][data], true) + " | " + cell_text(t.rows[i][quantizer], true);
    if (timing_kernel >= 0 && timing_batch >= 0)  // timing axes: one summary per kernel and batch (as SweepPoint::group)
      g += timing_label(cell_text(t.rows[i][timing_kernel], true), std::get<std::int64_t>(t.rows[i][timing_batch]));
    if (!groups.count(g)) order.push_back(g);
    groups[g].push_back(i);
  }
  std::vector<std::vector<Cell>> summaries;
  for (std::size_t gi = 0; gi < order.size(); ++gi) {
    const auto& rows = groups[order[gi]];
    // A point that runs once because it is deterministic has an exact summary (std 0); one that runs N
    // times needs two finished repeats for an interval.
    const auto planned = std::get<std::int64_t>(t.rows[rows.front()][t.column_index("n_repeats")]);
    const bool exact = planned == 1;
    if (rows.size() < 2 && !exact) continue;
    std::vector<Cell> s = t.rows[rows.front()];
    for (std::size_t j = 0; j < t.columns.size(); ++j) {
      const Column& c = t.columns[j];
      if (c.name == "point") s[j] = first_point + static_cast<std::int64_t>(gi);
      else if (c.name == "key") s[j] = order[gi] + " | summary";
      else if (c.name == "status") s[j] = std::string("summary");
      else if (c.name == "repeat") s[j] = std::int64_t{-1};
      else if (c.name == "n_repeats") s[j] = static_cast<std::int64_t>(rows.size());
      else if (c.name == "seed" || c.name == "data_seed" || c.name == "peak_rss_bytes" || c.name == "layer_stats" || c.name == "chunk_losses" ||
               c.name == "kv_cache")
        s[j] = missing_cell(c.type);  // per repeat, not per summary
      else if (c.name == "elapsed_s") {
        double total = 0;
        for (auto i : rows) total += std::get<double>(t.rows[i][j]);
        s[j] = total;
      }
    }
    // The repeats' per-chunk losses (model rows), for the metrics whose interval is over chunks and seeds.
    std::vector<ChunkLosses> losses;
    if (const int jl = t.column_index("chunk_losses"); jl >= 0)
      for (auto i : rows)
        losses.push_back(chunk_losses_from_json(std::get<std::string>(t.rows[i][jl]), "point " + cell_text(t.rows[i][t.column_index("point")], true)));
    for (const auto& m : metrics) {
      const int j = t.column_index(m), js = t.column_index(m + "_std"), jc = t.column_index(m + "_ci95");
      if (j < 0) continue;
      // Finite values only: a metric a repeat could not compute (NaN) does not poison the mean.
      std::vector<double> v;
      for (auto i : rows)
        if (const double x = std::get<double>(t.rows[i][j]); std::isfinite(x)) v.push_back(x);
      double mean = std::nan(""), sd = std::nan("");
      if (!v.empty()) {
        mean = 0;
        for (double x : v) mean += x;
        mean /= static_cast<double>(v.size());
      }
      if (exact && !v.empty()) {
        sd = 0;
      } else if (v.size() >= 2) {
        double ss = 0;
        for (double x : v) ss += (x - mean) * (x - mean);
        sd = std::sqrt(ss / static_cast<double>(v.size() - 1));
      }
      s[j] = mean;
      if (js >= 0) s[js] = sd;
      const Metric* metric = find_metric(m);
      if (jc < 0) continue;
      if (metric && metric->chunk_ci95 && !losses.empty()) s[jc] = metric->chunk_ci95(losses);
      else s[jc] = exact && !v.empty() ? 0.0 : v.size() >= 2 ? sd * ci95_factor(v.size()) : std::nan("");
    }
    summaries.push_back(std::move(s));
  }
  for (auto& s : summaries) t.rows.push_back(std::move(s));
}

}  // namespace tqb
