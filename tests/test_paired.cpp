// Paired differences over the chunks two rows share (eval/paired.hpp, tqbench compare; issue 26): on the same
// tokens the paired interval is much narrower than the unpaired one, and a row against itself gives 0 ± 0.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include <cmath>

#include "common/error.hpp"
#include "common/rng.hpp"
#include "eval/paired.hpp"
#include "harness/store.hpp"
#include "test_util.hpp"

using namespace tqb;

TEST_CASE("paired_difference: shared variation cancels; no difference gives an interval containing 0") {
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

TEST_CASE("a model experiment stores per-chunk losses; tqbench compare pairs two rows over them") {
  const test::BooksModel books = test::books14m();
  if (!books.present()) {
    MESSAGE("SKIPPED: books-14m (../shared) is not there");
    return;
  }
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
