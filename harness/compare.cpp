#include "harness/compare.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <vector>

#include "common/error.hpp"
#include "eval/paired.hpp"
#include "harness/store.hpp"

namespace tqb {
namespace {

struct ChunkLosses {
  std::string label, data;
  nlohmann::json chunking;  // corpus, method, ctx, first_scored
  std::vector<double> nll, kld;
};

ChunkLosses row_losses(const ResultTable& t, const std::string& file, const std::string& which) {
  const int point = t.column_index("point"), quantizer = t.column_index("quantizer"), status = t.column_index("status"),
            losses = t.column_index("chunk_losses"), data = t.column_index("data");
  if (losses < 0 || point < 0 || quantizer < 0 || status < 0 || data < 0)
    throw InputError(fmt::format("{}: error: no chunk_losses column (a model experiment run by this tqbench writes one)", file));
  std::vector<std::size_t> found;
  for (std::size_t i = 0; i < t.rows.size(); ++i) {
    if (cell_text(t.rows[i][status], true) != "ok") continue;
    if (cell_text(t.rows[i][point], true) == which || cell_text(t.rows[i][quantizer], true) == which) found.push_back(i);
  }
  if (found.size() != 1) {
    std::string rows;
    for (std::size_t i = 0; i < t.rows.size(); ++i)
      if (cell_text(t.rows[i][status], true) == "ok")
        rows += fmt::format("\n  {}  {}", cell_text(t.rows[i][point], true), cell_text(t.rows[i][quantizer], true));
    throw InputError(fmt::format("{}: error: '{}' names {} rows; give a point number or a quantizer of one row:{}", file, which,
                                 found.size(), rows));
  }
  const auto& r = t.rows[found.front()];
  ChunkLosses c;
  c.label = fmt::format("point {}, {}", cell_text(r[point], true), cell_text(r[quantizer], true));
  c.data = cell_text(r[data], true);
  try {
    const nlohmann::json j = nlohmann::json::parse(std::get<std::string>(r[losses]));
    c.nll = j.at("nll").get<std::vector<double>>();
    c.kld = j.at("kld").get<std::vector<double>>();
    c.chunking = {{"corpus", j.at("corpus")}, {"method", j.at("method")}, {"ctx", j.at("ctx")}, {"first_scored", j.at("first_scored")}};
  } catch (const std::exception& e) {
    throw InputError(fmt::format("{}: error: point {}'s chunk_losses is not what tqbench writes: {}", file, cell_text(r[point], true), e.what()));
  }
  return c;
}

}  // namespace

void compare_rows(const std::string& file, const std::string& a_name, const std::string& b_name, std::ostream& out) {
  const ResultTable t = read_result_file(file);
  const ChunkLosses a = row_losses(t, file, a_name), b = row_losses(t, file, b_name);
  if (a.chunking != b.chunking || a.nll.size() != b.nll.size() || a.data != b.data)
    throw InputError(fmt::format("{}: error: {} and {} were not scored on the same chunks ({} chunks, {} against {} chunks, {}); "
                                 "a paired difference needs the same data, corpus, method, ctx and chunk count",
                                 file, a.label, b.label, a.chunking.dump(), a.nll.size(), b.nll.size(), b.chunking.dump()));
  const PairedDifference d = paired_difference(a.nll, b.nll);
  out << fmt::format("A: {}\nB: {}\ndata: {}\n{} chunks of {} scored tokens each ({}), paired over the chunks (a paired t "
                     "interval; seeds are not resampled here: compare repeats' rows for that)\n",
                     a.label, b.label, a.data, d.n, a.chunking.at("ctx").get<int>() - 1 - a.chunking.at("first_scored").get<int>(),
                     a.chunking.dump());
  out << fmt::format("  delta log-perplexity (mean NLL, B - A): {:+.6f} +/- {:.6f} (95%), p = {:.3g}; unpaired +/- {:.6f}; "
                     "chunk correlation {:.4f}\n",
                     d.mean, d.ci95, d.p_value, d.unpaired_ci95, d.correlation);
  out << fmt::format("  perplexity ratio B / A: {:.5f} [{:.5f}, {:.5f}]\n", std::exp(d.mean), std::exp(d.mean - d.ci95),
                     std::exp(d.mean + d.ci95));
  if (a.kld.size() == a.nll.size() && b.kld.size() == b.nll.size()) {
    const PairedDifference k = paired_difference(a.kld, b.kld);
    out << fmt::format("  delta KLD (B - A): {:+.6f} +/- {:.6f} (95%), p = {:.3g}; unpaired +/- {:.6f}\n", k.mean, k.ci95, k.p_value,
                       k.unpaired_ci95);
  }
}

}  // namespace tqb
