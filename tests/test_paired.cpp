// Paired differences over the chunks two rows share (eval/paired.hpp, tqbench compare; issue 26): on the same
// tokens the paired interval is much narrower than the unpaired one, and a row against itself gives 0 ± 0.
#include <doctest/doctest.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cmath>

#include "common/error.hpp"
#include "common/rng.hpp"
#include "eval/paired.hpp"
#include "harness/store.hpp"
#include "test_util.hpp"

using namespace tqb;

TEST_CASE("paired_difference: shared variation cancels, no difference gives an interval containing 0") {
  Rng rng(4);
  std::vector<double> a(40), b(40);
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double text = 3.0 + rng.normal();  // how hard chunk i is: shared by both rows
    a[i] = text + 0.01 * rng.normal();
    b[i] = text + 0.05 + 0.01 * rng.normal();
  }
  const PairedDifference d = paired_difference(a, b);
  CHECK(d.n == 40);
  CHECK(std::fabs(d.mean - 0.05) < 3 * d.ci95);
  CHECK(d.ci95 < 0.1 * d.unpaired_ci95);  // the chunks' difficulty (sd 1) is gone from the paired difference
  CHECK(d.p_value < 1e-6);
  CHECK(d.correlation > 0.99);
  const PairedDifference same = paired_difference(a, a);
  CHECK(same.mean == 0.0);
  CHECK(same.ci95 == 0.0);
  CHECK(same.p_value == 1.0);
  CHECK_THROWS_AS(paired_difference(a, std::vector<double>(39)), InputError);
  CHECK_THROWS_AS(paired_difference({1.0}, {2.0}), InputError);
}

// Coverage of the chunks x seeds interval, simulated from the model it assumes (x_sc = mu + a_c + b_s + e_sc):
// about 95% of the intervals contain mu; an interval over chunks alone, blind to the seeds, covers far less
// when the seed effect is as large as the text's share of the variance.
TEST_CASE("crossed_mean_interval covers the mean 95% of the time over chunks and seeds, chunks alone do not") {
  Rng rng(26);
  const std::size_t C = 20, R = 5, trials = 2000;
  const double sa = 1.0, sb = 0.5, se = 0.1, mu = 3.0;
  std::size_t crossed = 0, chunks_only = 0;
  double dof_sum = 0;
  for (std::size_t t = 0; t < trials; ++t) {
    std::vector<double> a(C), b(R);
    for (auto& v : a) v = sa * rng.normal();
    for (auto& v : b) v = sb * rng.normal();
    LossMatrix x(R, std::vector<double>(C));
    for (std::size_t s = 0; s < R; ++s)
      for (std::size_t c = 0; c < C; ++c) x[s][c] = mu + a[c] + b[s] + se * rng.normal();
    const MeanInterval i = crossed_mean_interval(x);
    crossed += std::fabs(i.mean - mu) <= i.ci95;
    dof_sum += i.dof;
    // Treating the chunk means as the only variation (seeds averaged in, their shared shift ignored).
    std::vector<double> cm(C, 0.0);
    for (std::size_t c = 0; c < C; ++c)
      for (std::size_t s = 0; s < R; ++s) cm[c] += x[s][c] / R;
    const MeanInterval naive = crossed_mean_interval(LossMatrix{cm});
    chunks_only += std::fabs(naive.mean - mu) <= naive.ci95;
  }
  const double cover = static_cast<double>(crossed) / trials, naive_cover = static_cast<double>(chunks_only) / trials;
  MESSAGE("coverage: chunks and seeds " << cover << ", chunks alone " << naive_cover << ", mean dof " << dof_sum / trials);
  CHECK(cover > 0.93);
  CHECK(cover < 0.985);
  CHECK(naive_cover < 0.9);
  // One seed: the plain t interval over chunks (sd / sqrt(C) with C - 1 degrees of freedom).
  std::vector<double> one(C);
  for (auto& v : one) v = rng.normal();
  const MeanInterval plain = crossed_mean_interval(LossMatrix{one});
  CHECK(plain.dof == doctest::Approx(C - 1.0));
  CHECK_THROWS_AS(crossed_mean_interval(LossMatrix{{1.0}}), InputError);
  CHECK_THROWS_AS(crossed_mean_interval(LossMatrix{{1.0, 2.0}, {1.0}}), InputError);
}

// Two quantizers drawing the same seeds (a sweep's common random numbers): a seed's shift that both share cancels
// when the seeds pair, and counts twice when they do not.
TEST_CASE("paired_difference over repeats: shared seeds pair, the same quantizer twice gives 0 +/- 0") {
  Rng rng(7);
  const std::size_t C = 16, R = 5;
  LossMatrix a(R, std::vector<double>(C)), b = a;
  std::vector<double> text(C), seed(R);
  for (auto& v : text) v = 3 + rng.normal();
  for (auto& v : seed) v = 0.2 * rng.normal();
  for (std::size_t s = 0; s < R; ++s)
    for (std::size_t c = 0; c < C; ++c) {
      a[s][c] = text[c] + seed[s] + 0.01 * rng.normal();
      b[s][c] = text[c] + 0.03 + seed[s] + 0.01 * rng.normal();
    }
  const PairedDifference paired = paired_difference(a, b, true), independent = paired_difference(a, b, false);
  CHECK(paired.seeds_paired);
  CHECK(paired.repeats_a == R);
  CHECK(std::fabs(paired.mean - 0.03) < paired.ci95);
  CHECK(paired.ci95 < 0.25 * independent.ci95);  // the seeds' shared shift cancels only when paired
  CHECK(independent.ci95 < independent.unpaired_ci95);
  const PairedDifference same = paired_difference(a, a, true);
  CHECK(same.mean == 0.0);
  CHECK(same.ci95 == 0.0);
  CHECK(same.p_value == 1.0);
  CHECK_THROWS_AS(paired_difference(a, LossMatrix{a.front()}, true), InputError);  // paired seeds need as many repeats
  const PairedDifference mixed = paired_difference(LossMatrix{a.front()}, b, false);  // a deterministic row against repeats
  CHECK(mixed.repeats_b == R);
  CHECK(mixed.ci95 > 0.0);
}

TEST_CASE("a model experiment stores per-chunk losses, tqbench compare pairs two rows over them") {
  const test::BooksModel books = test::books14m();
  if (!books.present_or_skip()) return;
  const std::string &model = books.model, &corpus = books.corpus;
  test::TempDir dir;
  const std::string spec = dir.file("paired.yaml"), out = dir.file("paired.h5");
  test::write_text(spec, "experiment: paired\ndata: {source: model, model: '" + model + "', corpus: '" + corpus +
                             "', ctx: 128, chunks: 12}\nquantizers: [none, 'rtn(bits=3,group=64)', "
                             "'turboquant(bits=3,group=64,rotation=hadamard)']\nmetrics: [perplexity, kld_mean]\n");
  const auto r = test::run_tqbench("run '" + spec + "' -o '" + out + "'");
  REQUIRE_MESSAGE(r.exit_code == 0, r.output);
  const ResultTable t = read_result_file(out);
  const int losses = t.column_index("chunk_losses"), ppl = t.column_index("perplexity");
  REQUIRE(losses >= 0);
  std::vector<std::vector<double>> nll;
  for (const auto& row : t.rows) {
    const auto j = nlohmann::json::parse(std::get<std::string>(row[losses]));
    nll.push_back(j.at("nll").get<std::vector<double>>());
    REQUIRE(nll.back().size() == 12);
    CHECK(j.at("tokens_per_chunk").get<int>() == 63);
    double mean = 0;  // equal tokens per chunk: the perplexity is exp of the mean of the chunk means
    for (double v : nll.back()) mean += v / 12;
    CHECK(std::exp(mean) == doctest::Approx(std::get<double>(row[ppl])).epsilon(1e-12));
  }
  const PairedDifference d = paired_difference(nll[1], nll[2]);
  MESSAGE("rtn 3-bit vs turboquant 3-bit g64: paired +/- " << d.ci95 << ", unpaired +/- " << d.unpaired_ci95);
  CHECK(d.ci95 < 0.5 * d.unpaired_ci95);
  const auto self = test::run_tqbench("compare '" + out + "' 2 2");
  REQUIRE_MESSAGE(self.exit_code == 0, self.output);
  CHECK(self.output.find("+0.000000 +/- 0.000000") != std::string::npos);
  const auto pair = test::run_tqbench("compare '" + out + "' 'none()' 1");
  REQUIRE_MESSAGE(pair.exit_code == 0, pair.output);
  CHECK(pair.output.find("perplexity ratio B / A") != std::string::npos);
  // A quantizer as the user writes it (defaults left out, a family's own short form) finds its row by the canonical name.
  const auto short_name = test::run_tqbench("compare '" + out + "' 'rtn(group=64,bits=3)' 'turboquant(bits=3,group=64,rotation=hadamard)'");
  REQUIRE_MESSAGE(short_name.exit_code == 0, short_name.output);
  CHECK(short_name.output.find("mean NLL, B - A") != std::string::npos);
  const auto bad = test::run_tqbench("compare '" + out + "' rtn 2");
  CHECK(bad.exit_code == 2);
  CHECK(bad.output.find("'rtn' names no finished row") != std::string::npos);
  // Rows on other chunks (two contexts) do not pair; a matrix experiment's file has no chunk losses.
  const std::string two = dir.file("two.yaml"), two_out = dir.file("two.h5");
  test::write_text(two, "experiment: two\ndata: {source: model, model: '" + model + "', corpus: '" + corpus +
                            "', ctx: [64, 128], chunks: 3}\nquantizers: [none]\nmetrics: [perplexity]\n");
  REQUIRE(test::run_tqbench("run '" + two + "' -o '" + two_out + "'").exit_code == 0);
  const auto unpaired = test::run_tqbench("compare '" + two_out + "' 0 1");
  CHECK(unpaired.exit_code == 2);
  CHECK(unpaired.output.find("not scored on the same chunks") != std::string::npos);
  const std::string matrix = dir.file("matrix.yaml"), matrix_out = dir.file("matrix.h5");
  test::write_text(matrix, "experiment: matrix\ndata: {source: gaussian, rows: 8, cols: 64}\nquantizers: ['rtn(bits=4,group=64)']\n"
                           "metrics: [weight_nmse]\n");
  REQUIRE(test::run_tqbench("run '" + matrix + "' -o '" + matrix_out + "'").exit_code == 0);
  const auto no_losses = test::run_tqbench("compare '" + matrix_out + "' 0 0");
  CHECK(no_losses.exit_code == 2);
  CHECK(no_losses.output.find("no chunk_losses column") != std::string::npos);
}

TEST_CASE("repeats on books-14m: summaries over chunks and seeds, compare pairs seeds, against the baseline, flags unmatched bits") {
  const test::BooksModel books = test::books14m();
  if (!books.present_or_skip()) return;
  test::TempDir dir;
  const std::string spec = dir.file("rep.yaml"), out = dir.file("rep.h5");
  test::write_text(spec, "experiment: rep\nrepeats: 3\ndata: {source: model, model: '" + books.model + "', corpus: '" + books.corpus +
                             "', ctx: 128, chunks: 8}\nquantizers: ['rtn(bits=3,group=64)', 'turboquant(bits=3,group=64,rotation=hadamard)']\n"
                             "metrics: [perplexity, delta_log_ppl, kld_mean, quantized_bits_per_weight]\n");
  const auto r = test::run_tqbench("run '" + spec + "' -o '" + out + "'");
  REQUIRE_MESSAGE(r.exit_code == 0, r.output);
  CHECK(r.output.find("warning: repeats: 3 gives the seeds' interval 2 degrees of freedom (t = 4.3") != std::string::npos);
  const ResultTable t = read_result_file(out);
  const int status = t.column_index("status"), q = t.column_index("quantizer"), ci = t.column_index("delta_log_ppl_ci95");
  REQUIRE(ci >= 0);
  double rtn_row_ci = 0;
  for (const auto& row : t.rows) {
    const double half = std::get<double>(row[ci]);
    CHECK(std::isfinite(half));
    CHECK(half > 0.0);  // every row, repeat or summary, deterministic or not: never +/- 0
    if (cell_text(row[status], true) == "ok" && cell_text(row[q], true).rfind("rtn", 0) == 0) rtn_row_ci = half;
  }
  // rtn is deterministic (one run): its summary's interval is its row's, over the chunks.
  for (const auto& row : t.rows)
    if (cell_text(row[status], true) == "summary" && cell_text(row[q], true).rfind("rtn", 0) == 0) CHECK(std::get<double>(row[ci]) == rtn_row_ci);
  const std::string tq = "turboquant(bits=3,codebook=beta,rotation=hadamard,group=64,norm=fp32)";
  const auto both = test::run_tqbench("compare '" + out + "' 'rtn(bits=3,group=64,mode=sym,scale=fp16)' '" + tq + "'");
  REQUIRE_MESSAGE(both.exit_code == 0, both.output);
  CHECK(both.output.find("1 and 3 repeats") != std::string::npos);
  CHECK(both.output.find("warning: A and B differ by 0.2500 bits per weight") != std::string::npos);  // 3.25 against 3.5
  CHECK(test::run_tqbench("compare '" + out + "' 0 '" + tq + "' --bits-tolerance 0.3").output.find("warning") == std::string::npos);
  // The same quantizer twice with the same seeds: no difference, 0 +/- 0.
  const auto self = test::run_tqbench("compare '" + out + "' '" + tq + "' '" + tq + "'");
  REQUIRE_MESSAGE(self.exit_code == 0, self.output);
  CHECK(self.output.find("paired over the chunks and the seeds, 3 and 3 repeats") != std::string::npos);
  CHECK(self.output.find("+0.000000 +/- 0.000000") != std::string::npos);
  // Against the baseline: the row's own delta_log_ppl and its interval.
  const auto base = test::run_tqbench("compare '" + out + "' baseline 0");
  REQUIRE_MESSAGE(base.exit_code == 0, base.output);
  CHECK(base.output.find("A: baseline") != std::string::npos);
  CHECK(base.output.find(fmt::format("{:+.6f} +/- {:.6f}", std::get<double>(t.rows[0][t.column_index("delta_log_ppl")]), rtn_row_ci)) !=
        std::string::npos);
  const auto twice = test::run_tqbench("compare '" + out + "' baseline baseline");
  CHECK(twice.exit_code == 2);
}
