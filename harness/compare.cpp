#include "harness/compare.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <vector>

#include "common/error.hpp"
#include "common/printable.hpp"
#include "common/read_file.hpp"
#include "eval/chunk_losses.hpp"
#include "eval/paired.hpp"
#include "harness/short_names.hpp"
#include "harness/store.hpp"
#include "harness/table.hpp"
#include "quantizers/registry.hpp"

namespace tqb {
namespace {

// One side of a comparison: a row, a point's repeats, or the baseline.
struct Side {
  std::string label, data;
  std::vector<ChunkLosses> repeats;
  std::vector<std::int64_t> seeds;  // per repeat; empty for the baseline (no seed)
  double bits = std::nan("");       // quantized_bits_per_weight (the baseline: none)
};

// Rows whose point number or quantizer is `which`, as written or as the registry's canonical name of it (so that
// "gptq(q4_0)" finds the row stored as "gptq(quantizer=q4_0(),damp=0.01,...)").
std::vector<std::size_t> matching_rows(const ResultTable& t, const std::string& which) {
  const int point = t.column_index("point"), quantizer = t.column_index("quantizer"), status = t.column_index("status");
  std::string canonical;
  try {
    canonical = parse_quantizer(which)->name();
  } catch (const std::exception&) {  // a point number, "baseline", or a name this build does not know: matched as written
  }
  std::vector<std::size_t> found;
  for (std::size_t i = 0; i < t.rows.size(); ++i) {
    if (cell_text(t.rows[i][status], true) != "ok") continue;
    const std::string q = cell_text(t.rows[i][quantizer], true);
    if (cell_text(t.rows[i][point], true) == which || q == which || (!canonical.empty() && q == canonical)) found.push_back(i);
  }
  return found;
}

std::string row_list(const ResultTable& t) {
  const int point = t.column_index("point"), quantizer = t.column_index("quantizer"), status = t.column_index("status");
  std::string rows;
  for (const auto& r : t.rows)
    if (cell_text(r[status], true) == "ok") rows += fmt::format("\n  {}  {}", cell_text(r[point], true), printable(cell_text(r[quantizer], true)));
  return rows;
}

Side side_of(const ResultTable& t, const std::string& file, const std::string& which) {
  const int point = t.column_index("point"), quantizer = t.column_index("quantizer"), losses = t.column_index("chunk_losses"),
            data = t.column_index("data"), seed = t.column_index("seed"), bits = t.column_index("quantized_bits_per_weight");
  const std::vector<std::size_t> found = matching_rows(t, which);
  if (found.empty())
    throw InputError(fmt::format("{}: error: '{}' names no finished row; give a point number, a quantizer or baseline:{}", file,
                                 printable(which), row_list(t)));
  Side s;
  s.data = cell_text(t.rows[found.front()][data], true);
  for (auto i : found) {
    const auto& r = t.rows[i];
    if (cell_text(r[data], true) != s.data)
      throw InputError(fmt::format("{}: error: '{}' names rows on {} data points; give a point number:{}", file, printable(which),
                                   std::set<std::string>{s.data, cell_text(r[data], true)}.size(), row_list(t)));
    s.repeats.push_back(chunk_losses_from_json(std::get<std::string>(r[losses]), fmt::format("{}: point {}", file, cell_text(r[point], true))));
    s.seeds.push_back(seed >= 0 ? std::get<std::int64_t>(r[seed]) : 0);
    if (bits >= 0) s.bits = std::get<double>(r[bits]);
  }
  const auto& first = t.rows[found.front()];
  s.label = found.size() == 1 ? fmt::format("point {}, {}", cell_text(first[point], true), cell_text(first[quantizer], true))
                              : fmt::format("{}, {} repeats (points {}..{})", cell_text(first[quantizer], true), found.size(),
                                            cell_text(first[point], true), cell_text(t.rows[found.back()][point], true));
  return s;
}

// The unquantized model on the chunks `other` scored: its baseline losses (the same in every repeat).
Side baseline_of(const Side& other, const std::string& file) {
  const ChunkLosses& c = other.repeats.front();
  if (c.baseline_nll.empty())
    throw InputError(fmt::format("{}: error: {}'s chunk_losses hold no baseline losses (written by an older tqbench); "
                                 "compare it with the row of quantizer none instead", file, other.label));
  Side s;
  s.label = "baseline (the unquantized model on the same chunks)";
  s.data = other.data;
  ChunkLosses b = c;
  b.nll = c.baseline_nll;
  b.kld.assign(c.nll.size(), 0.0);  // against itself
  s.repeats = {b};
  return s;
}

}  // namespace

// A `tqbench perplexity --chunk-nll` file: one run's chunk losses, its label and model.
Side side_of_chunk_file(const std::string& path) {
  const std::string text = read_regular_file(path, std::size_t{64} << 20, "a --chunk-nll file");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw InputError(fmt::format("{}: error: not a `tqbench perplexity --chunk-nll` file (not JSON: {})", path, e.what()));
  }
  if (!j.is_object() || !j.contains("chunk_losses") || !j.contains("label") || !j.contains("model"))
    throw InputError(fmt::format("{}: error: not a `tqbench perplexity --chunk-nll` file (chunk_losses, label and model expected)", path));
  Side s;
  s.label = fmt::format("{}, {} ({})", j.at("model").dump(), j.at("label").dump(), path);
  s.repeats = {chunk_losses_from_json(j.at("chunk_losses").dump(), path)};
  s.data = s.repeats.front().corpus;
  s.seeds = {0};
  return s;
}

// The paired comparison of two sides already read; `where` names their source in errors.
void compare_sides(const Side& a, const Side& b, const std::string& where, const CompareOptions& options, std::ostream& out) {
  const ChunkLosses& ca = a.repeats.front();
  for (const Side* s : {&a, static_cast<const Side*>(&b)})
    for (const auto& r : s->repeats)
      if (!r.same_chunking(ca) || a.data != b.data)
        throw InputError(fmt::format("{}: error: {} and {} were not scored on the same chunks ({} against {}); a paired difference "
                                     "needs the same data, corpus, method, ctx and chunk count",
                                     where, a.label, b.label, ca.chunking_text(), r.chunking_text()));
  // The sweep gives every quantizer on one data point the same seeds: repeats pair by seed when both lists agree.
  const bool seeds_paired = !a.seeds.empty() && a.seeds == b.seeds;
  const PairedDifference d = paired_difference(loss_matrix(a.repeats, &ChunkLosses::nll), loss_matrix(b.repeats, &ChunkLosses::nll), seeds_paired);
  out << fmt::format("A: {}\nB: {}\ndata: {}\n{}; ", a.label, b.label, printable(a.data), ca.chunking_text());
  if (d.repeats_a == 1 && d.repeats_b == 1) out << "paired over the chunks (a paired t interval)\n";
  else
    out << fmt::format("paired over the chunks{}, {} and {} repeats (chunks and seeds as crossed random effects, eval/paired.hpp)\n",
                       seeds_paired ? " and the seeds" : "", d.repeats_a, d.repeats_b);
  out << fmt::format("  delta log-perplexity (mean NLL, B - A): {:+.6f} +/- {:.6f} (95%, {:.1f} dof), p = {:.3g}; unpaired +/- {:.6f}; "
                     "chunk correlation {:.4f}\n",
                     d.mean, d.ci95, d.dof, d.p_value, d.unpaired_ci95, d.correlation);
  out << fmt::format("  perplexity ratio B / A: {:.5f} [{:.5f}, {:.5f}]\n", std::exp(d.mean), std::exp(d.mean - d.ci95),
                     std::exp(d.mean + d.ci95));
  const LossMatrix ka = loss_matrix(a.repeats, &ChunkLosses::kld), kb = loss_matrix(b.repeats, &ChunkLosses::kld);
  if (!ka.empty() && !kb.empty()) {
    const PairedDifference k = paired_difference(ka, kb, seeds_paired);
    out << fmt::format("  delta KLD (B - A): {:+.6f} +/- {:.6f} (95%), p = {:.3g}; unpaired +/- {:.6f}\n", k.mean, k.ci95, k.p_value,
                       k.unpaired_ci95);
  }
  const double bits_a = a.bits, bits_b = b.bits;  // NaN for the baseline and a chunk-losses file
  if (std::isfinite(bits_a) && std::isfinite(bits_b)) {
    out << fmt::format("  bits per weight (quantized layers): A {:.4f}, B {:.4f}\n", bits_a, bits_b);
    if (std::fabs(bits_a - bits_b) > options.bits_tolerance)
      out << fmt::format("warning: A and B differ by {:.4f} bits per weight (more than --bits-tolerance {}): not a comparison at "
                         "matched bits\n", std::fabs(bits_a - bits_b), options.bits_tolerance);
  }
}

void compare_rows(const std::string& file, const std::string& a_name, const std::string& b_name, const CompareOptions& options,
                  std::ostream& out) {
  const ResultTable t = read_result_file(file);
  for (const char* column : {"point", "quantizer", "status", "data", "chunk_losses"})
    if (t.column_index(column) < 0)
      throw InputError(fmt::format("{}: error: no {} column (a model experiment run by this tqbench writes chunk_losses)", file, column));
  const bool a_base = a_name == "baseline", b_base = b_name == "baseline";
  if (a_base && b_base) throw InputError("compare: A and B are both the baseline; name a row for one of them");
  Side b = b_base ? Side{} : side_of(t, file, b_name);
  const Side a = a_base ? baseline_of(b, file) : side_of(t, file, a_name);
  if (b_base) b = baseline_of(a, file);
  compare_sides(a, b, file, options, out);
}

void compare_chunk_files(const std::string& a, const std::string& b, const CompareOptions& options, std::ostream& out) {
  compare_sides(side_of_chunk_file(a), side_of_chunk_file(b), a + " and " + b, options, out);
}

void compare_files(const std::vector<std::string>& files, const std::string& metric_name, std::ostream& out) {
  std::vector<ResultTable> tables;
  for (const auto& f : files) tables.push_back(read_result_file(f));
  std::string metric = metric_name;
  if (metric.empty())
    for (const char* m : {"delta_ppl", "perplexity", "weight_nmse"})
      if (tables.front().column_index(m) >= 0) {
        metric = m;
        break;
      }
  // Per file: key "data | quantizer" -> (value, half-width), from summary rows where there are any.
  std::vector<std::string> keys, quantizers;
  std::vector<std::map<std::string, std::pair<double, double>>> values(files.size());
  for (std::size_t f = 0; f < files.size(); ++f) {
    const ResultTable& t = tables[f];
    const int status = t.column_index("status"), data = t.column_index("data"), q = t.column_index("quantizer"),
              m = t.column_index(metric), ci = t.column_index(metric + "_ci95");
    if (status < 0 || data < 0 || q < 0) throw InputError(fmt::format("{}: error: not a sweep's result file (no status, data or quantizer column)", files[f]));
    if (m < 0) throw InputError(fmt::format("{}: error: no column '{}' (give --metric one it has)", files[f], metric));
    const bool summaries = std::any_of(t.rows.begin(), t.rows.end(), [&](const auto& r) { return cell_text(r[status], true) == "summary"; });
    for (const auto& r : t.rows) {
      if (cell_text(r[status], true) != (summaries ? "summary" : "ok")) continue;
      const std::string key = cell_text(r[data], true) + " | " + cell_text(r[q], true);
      if (std::find(keys.begin(), keys.end(), key) == keys.end()) {
        keys.push_back(key);
        quantizers.push_back(cell_text(r[q], true));
      }
      const double v = std::holds_alternative<double>(r[m]) ? std::get<double>(r[m]) : std::nan("");
      values[f][key] = {v, ci >= 0 ? std::get<double>(r[ci]) : std::nan("")};
    }
  }
  const std::vector<std::string> shown = varying_names(quantizers);
  ResultTable view;
  view.columns.push_back({"quantizer", ColumnType::text, "quantizer", "", ""});
  for (std::size_t f = 0; f < files.size(); ++f) {
    view.columns.push_back({fmt::format("[{}] {}", f + 1, metric), ColumnType::text, "metric", "", ""});
    if (f > 0) view.columns.push_back({fmt::format("[{}] - [1]", f + 1), ColumnType::text, "metric", "", ""});
  }
  for (std::size_t k = 0; k < keys.size(); ++k) {
    std::vector<Cell> row{shown[k]};
    const auto first = values[0].find(keys[k]);
    for (std::size_t f = 0; f < files.size(); ++f) {
      const auto it = values[f].find(keys[k]);
      if (it == values[f].end()) {
        row.emplace_back(std::string("(absent)"));
      } else {
        const auto [v, h] = it->second;
        row.emplace_back(std::isfinite(h) ? fmt::format("{:.6g} ± {:.3g}", v, h) : fmt::format("{:.6g}", v));
      }
      if (f > 0)
        row.emplace_back(it != values[f].end() && first != values[0].end() ? fmt::format("{:+.4g}", it->second.first - first->second.first)
                                                                           : std::string("-"));
    }
    view.rows.push_back(std::move(row));
  }
  for (std::size_t f = 0; f < files.size(); ++f) {
    const Cell* commit = tables[f].attribute("git_commit");
    const Cell* host = tables[f].attribute("host");
    out << fmt::format("[{}] {} (tqbench {}, {})\n", f + 1, files[f], commit ? printable(cell_text(*commit)).substr(0, 12) : "?",
                       host ? printable(cell_text(*host)) : "?");
  }
  std::vector<std::string> cols;
  for (const auto& c : view.columns) cols.push_back(c.name);
  print_table(view, cols, out);
}

}  // namespace tqb
