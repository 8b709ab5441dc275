// Repeated sweeps (spec `repeats: N`): every point under N seeds, summary rows with mean, standard
// deviation and 95% interval, `show` with intervals, resume without duplicated summaries.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>

#include "harness/repeat_summary.hpp"
#include "harness/store.hpp"
#include "test_util.hpp"

using namespace tqb;

namespace {

std::string spec_text(int repeats) {
  return "experiment: rep\nseed: 5\n" + (repeats > 1 ? "repeats: " + std::to_string(repeats) + "\n" : std::string()) +
         "data: {source: gaussian, rows: 32, cols: 128}\n"
         "quantizers: ['turboquant(bits=2,group=64,rotation=haar)', 'rtn(bits=3,group=32)']\n"
         "metrics: [weight_nmse, bits_per_weight]\n";
}

double real(const ResultTable& t, std::size_t row, const std::string& col) { return std::get<double>(t.rows[row][t.column_index(col)]); }
std::string text(const ResultTable& t, std::size_t row, const std::string& col) { return cell_text(t.rows[row][t.column_index(col)], true); }

}  // namespace

TEST_CASE("the 95% interval factor is Student's t(0.975, n-1) / sqrt(n)") {
  // t(0.975, 4) = 2.776445 and t(0.975, 9) = 2.262157 (any table of Student's t).
  CHECK(ci95_factor(5) == doctest::Approx(2.776445 / std::sqrt(5.0)).epsilon(1e-6));
  CHECK(ci95_factor(10) == doctest::Approx(2.262157 / std::sqrt(10.0)).epsilon(1e-6));
  CHECK(std::isnan(ci95_factor(1)));
}

TEST_CASE("repeats: every point under N seeds, summary rows with mean, std and 95% interval, resume keeps one summary") {
  test::TempDir dir;
  const std::string spec = dir.file("rep.yaml"), out = dir.file("rep.h5"), single = dir.file("single.yaml"), out1 = dir.file("single.h5");
  std::ofstream(spec) << spec_text(3);
  std::ofstream(single) << spec_text(1);
  auto r = test::run_tqbench("run '" + spec + "' -o '" + out + "'");
  REQUIRE_MESSAGE(r.exit_code == 0, r.output);
  CHECK(r.output.find("6 points (6 run now, 0 failed), 2 summary rows with 95% intervals") != std::string::npos);
  REQUIRE(test::run_tqbench("run '" + single + "' -o '" + out1 + "'").exit_code == 0);
  const ResultTable t = read_result_file(out), t1 = read_result_file(out1);
  REQUIRE(t.rows.size() == 8);
  std::map<std::string, std::vector<double>> nmse;
  for (std::size_t i = 0; i < t.rows.size(); ++i)
    if (text(t, i, "status") == "ok") nmse[text(t, i, "quantizer")].push_back(real(t, i, "weight_nmse"));
  int summaries = 0;
  for (std::size_t i = 0; i < t.rows.size(); ++i) {
    if (text(t, i, "status") != "summary") continue;
    ++summaries;
    const auto& v = nmse.at(text(t, i, "quantizer"));
    REQUIRE(v.size() == 3);
    CHECK(v[0] != v[1]);  // the repeats differ: new rotations and new data
    const double mean = (v[0] + v[1] + v[2]) / 3;
    double ss = 0;
    for (double x : v) ss += (x - mean) * (x - mean);
    const double sd = std::sqrt(ss / 2);
    CHECK(real(t, i, "weight_nmse") == doctest::Approx(mean).epsilon(1e-12));
    CHECK(real(t, i, "weight_nmse_std") == doctest::Approx(sd).epsilon(1e-9));
    CHECK(real(t, i, "weight_nmse_ci95") == doctest::Approx(sd * ci95_factor(3)).epsilon(1e-9));
    CHECK(std::get<std::int64_t>(t.rows[i][t.column_index("n_repeats")]) == 3);
    CHECK(text(t, i, "key").find("| summary") != std::string::npos);
  }
  CHECK(summaries == 2);
  // Repeat 0 is the unrepeated run: same seeds, same numbers.
  for (std::size_t i = 0; i < t1.rows.size(); ++i)
    for (std::size_t k = 0; k < t.rows.size(); ++k)
      if (text(t, k, "status") == "ok" && std::get<std::int64_t>(t.rows[k][t.column_index("repeat")]) == 0 &&
          text(t, k, "quantizer") == text(t1, i, "quantizer")) {
        CHECK(std::get<std::int64_t>(t.rows[k][t.column_index("seed")]) == std::get<std::int64_t>(t1.rows[i][t1.column_index("seed")]));
        CHECK(real(t, k, "weight_nmse") == real(t1, i, "weight_nmse"));
      }
  // Resume: nothing to run, the summaries are rebuilt, not repeated.
  r = test::run_tqbench("run '" + spec + "' -o '" + out + "' --resume");
  REQUIRE(r.exit_code == 0);
  CHECK(read_result_file(out).rows.size() == 8);
  // show: the summaries with intervals; --all: every repeat.
  r = test::run_tqbench("show '" + out + "'");
  CHECK(r.output.find(" ± ") != std::string::npos);
  CHECK(r.output.find("repeat 1") == std::string::npos);
  r = test::run_tqbench("show '" + out + "' --all");
  CHECK(r.output.find("repeat 1") != std::string::npos);
}

TEST_CASE("repeats on a model: a deterministic format runs once with an exact summary, a rotated one N times") {
  const std::string stories = test::kSourceDir + "/../shared/models/stories260K/stories260K.gguf";
  if (!std::filesystem::exists(stories)) {
    MESSAGE("SKIPPED: stories260K (../shared) is not there");
    return;
  }
  test::TempDir dir;
  const std::string spec = dir.file("m.yaml"), out = dir.file("m.h5");
  std::ofstream(spec) << "experiment: m\nrepeats: 3\ndata: {source: model, model: stories260k, ctx: 64, chunks: 2, include: 'blk\\.\\d+\\.attn_.*'}\n"
                         "quantizers: [q8_0, 'turboquant(bits=3,group=32,rotation=hadamard)']\nmetrics: [perplexity, kld_mean]\n";
  const auto r = test::run_tqbench("run '" + spec + "' -o '" + out + "'");
  REQUIRE_MESSAGE(r.exit_code == 0, r.output);
  const ResultTable t = read_result_file(out);
  std::map<std::string, int> ok;
  for (std::size_t i = 0; i < t.rows.size(); ++i) {
    const std::string q = text(t, i, "quantizer");
    if (text(t, i, "status") == "ok") ++ok[q];
    if (text(t, i, "status") != "summary") continue;
    if (q == "q8_0()") {
      CHECK(std::get<std::int64_t>(t.rows[i][t.column_index("n_repeats")]) == 1);
      // Deterministic: no seed variation (std 0), but never ± 0: the interval over its chunks, as its row has.
      CHECK(real(t, i, "perplexity_std") == 0.0);
      CHECK(real(t, i, "perplexity_ci95") > 0.0);
      for (std::size_t k = 0; k < t.rows.size(); ++k)
        if (text(t, k, "quantizer") == q && text(t, k, "status") == "ok") CHECK(real(t, k, "perplexity_ci95") == real(t, i, "perplexity_ci95"));
    } else {
      CHECK(std::get<std::int64_t>(t.rows[i][t.column_index("n_repeats")]) == 3);
      CHECK(real(t, i, "perplexity_ci95") > 0.0);  // different rotations, different perplexities
    }
  }
  CHECK(ok["q8_0()"] == 1);
  CHECK(ok["turboquant(bits=3,codebook=beta,rotation=hadamard,group=32,norm=fp32)"] == 3);
}
