#include "harness/compare.hpp"

#include <fmt/format.h>

#include <cmath>
#include <set>
#include <vector>

#include "common/error.hpp"
#include "common/printable.hpp"
#include "eval/chunk_losses.hpp"
#include "eval/paired.hpp"
#include "harness/store.hpp"

namespace tqb {
namespace {

// One side of a comparison: a row, a point's repeats, or the baseline.
struct Side {
  std::string label, data;
  std::vector<ChunkLosses> repeats;
  std::vector<std::int64_t> seeds;  // per repeat; empty for the baseline (no seed)
  double bits = std::nan("");       // quantized_bits_per_weight (the baseline: none)
};

std::vector<std::size_t> matching_rows(const ResultTable& t, const std::string& which) {
  const int point = t.column_index("point"), quantizer = t.column_index("quantizer"), status = t.column_index("status");
  std::vector<std::size_t> found;
  for (std::size_t i = 0; i < t.rows.size(); ++i) {
    if (cell_text(t.rows[i][status], true) != "ok") continue;
    if (cell_text(t.rows[i][point], true) == which || cell_text(t.rows[i][quantizer], true) == which) found.push_back(i);
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

LossMatrix matrix_of(const Side& s, std::vector<double> ChunkLosses::*field) {
  LossMatrix x;
  for (const auto& r : s.repeats) {
    if ((r.*field).size() != r.nll.size()) return {};
    x.push_back(r.*field);
  }
  return x;
}

}  // namespace

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
  const ChunkLosses &ca = a.repeats.front(), &cb = b.repeats.front();
  for (const Side* s : {&a, static_cast<const Side*>(&b)})
    for (const auto& r : s->repeats)
      if (!r.same_chunking(ca) || a.data != b.data)
        throw InputError(fmt::format("{}: error: {} and {} were not scored on the same chunks ({} against {}); a paired difference "
                                     "needs the same data, corpus, method, ctx and chunk count",
                                     file, a.label, b.label, ca.chunking_text(), r.chunking_text()));
  // The sweep gives every quantizer on one data point the same seeds: repeats pair by seed when both lists agree.
  const bool seeds_paired = !a.seeds.empty() && a.seeds == b.seeds;
  const PairedDifference d = paired_difference(matrix_of(a, &ChunkLosses::nll), matrix_of(b, &ChunkLosses::nll), seeds_paired);
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
  const LossMatrix ka = matrix_of(a, &ChunkLosses::kld), kb = matrix_of(b, &ChunkLosses::kld);
  if (!ka.empty() && !kb.empty()) {
    const PairedDifference k = paired_difference(ka, kb, seeds_paired);
    out << fmt::format("  delta KLD (B - A): {:+.6f} +/- {:.6f} (95%), p = {:.3g}; unpaired +/- {:.6f}\n", k.mean, k.ci95, k.p_value,
                       k.unpaired_ci95);
  }
  const double bits_a = a_base ? std::nan("") : a.bits, bits_b = b_base ? std::nan("") : b.bits;
  if (std::isfinite(bits_a) && std::isfinite(bits_b)) {
    out << fmt::format("  bits per weight (quantized layers): A {:.4f}, B {:.4f}\n", bits_a, bits_b);
    if (std::fabs(bits_a - bits_b) > options.bits_tolerance)
      out << fmt::format("warning: A and B differ by {:.4f} bits per weight (more than --bits-tolerance {}): not a comparison at "
                         "matched bits\n", std::fabs(bits_a - bits_b), options.bits_tolerance);
  }
}

}  // namespace tqb
