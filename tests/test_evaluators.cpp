// The evaluation axes of matrix points (a spec's timing.kernel and timing.batch as lists), quantizing once per
// (data, quantizer, seed), and the metric registry's checks, through the CLI as a user runs them.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <set>

#include "common/error.hpp"
#include "harness/evaluator.hpp"
#include "harness/metrics.hpp"
#include "harness/spec.hpp"
#include "harness/sweep.hpp"
#include "harness/store.hpp"
#include "test_util.hpp"

using namespace tqb;
using test::run_tqbench;

TEST_CASE("timing kernels and batches are evaluation axes: one quantization, timed under each, summarized per kernel") {
  test::TempDir dir;
  const std::string spec = dir.file("axes.yaml"), out = dir.file("axes.h5");
  test::write_text(spec,
                   "experiment: axes\nseed: 3\nrepeats: 2\n"
                   "data: {source: gaussian, rows: 48, cols: 128}\n"
                   "timing: {kernel: [dequantized_dense, fused_lut], batch: [1, 4], repetitions: 3}\n"
                   "quantizers: ['turboquant(bits=4,group=64,rotation=hadamard)', 'rtn(bits=3,group=32)']\n"
                   "metrics: [weight_nmse, kernel_us]\n");
  const auto r = run_tqbench("run '" + spec + "' -o '" + out + "'");
  REQUIRE_MESSAGE(r.exit_code == 0, r.output);
  const ResultTable t = read_result_file(out);
  const int status = t.column_index("status"), key = t.column_index("key"), nmse = t.column_index("weight_nmse"),
            kernel = t.column_index("kernel"), tk = t.column_index("timing.kernel"), tb = t.column_index("timing.batch"),
            quantizer = t.column_index("quantizer"), repeat = t.column_index("repeat");
  REQUIRE(tk >= 0);
  REQUIRE(tb >= 0);
  // turboquant: 2 repeats x 2 kernels x 2 batches; rtn (seedless on seeded data: 2 repeats as well) likewise.
  std::size_t ok = 0, summaries = 0;
  std::map<std::string, std::set<double>> nmse_by_quantization;  // quantizer | repeat -> every kernel's value
  std::set<std::string> summary_keys;
  for (const auto& row : t.rows) {
    const std::string st = std::get<std::string>(row[status]);
    if (st == "summary") {
      ++summaries;
      summary_keys.insert(std::get<std::string>(row[key]));
      continue;
    }
    REQUIRE(st == "ok");
    ++ok;
    const std::string k = std::get<std::string>(row[tk]);
    CHECK(std::get<std::string>(row[key]).find(" | timing(kernel=" + k + ",batch=" + std::to_string(std::get<std::int64_t>(row[tb])) + ")") !=
          std::string::npos);
    CHECK(std::get<std::string>(row[kernel]).rfind(k, 0) == 0);  // what ran is what the axis named
    nmse_by_quantization[std::get<std::string>(row[quantizer]) + " | " + std::to_string(std::get<std::int64_t>(row[repeat]))].insert(
        std::get<double>(row[nmse]));
  }
  CHECK(ok == 16);
  CHECK(summaries == 8);  // one per quantizer, kernel and batch
  CHECK(summary_keys.size() == 8);
  // The same quantized matrix under every kernel and batch: its error is one number.
  CHECK(nmse_by_quantization.size() == 4);
  for (const auto& [what, values] : nmse_by_quantization) {
    CAPTURE(what);
    CHECK(values.size() == 1);
  }
  // Without lists the keys are as they always were.
  test::write_text(spec, "experiment: plain\ndata: {source: gaussian, rows: 16, cols: 64}\n"
                         "timing: {kernel: fused_lut, repetitions: 3}\nquantizers: ['rtn(bits=4,group=32)']\nmetrics: [kernel_us]\n");
  const auto p = run_tqbench("run '" + spec + "' -o '" + dir.file("plain.h5") + "'");
  REQUIRE_MESSAGE(p.exit_code == 0, p.output);
  const ResultTable plain = read_result_file(dir.file("plain.h5"));
  CHECK(plain.column_index("timing.kernel") < 0);
  CHECK(std::get<std::string>(plain.rows[0][plain.column_index("key")]).find("timing(") == std::string::npos);
}

TEST_CASE("timing axes: bad lists are located errors") {
  test::TempDir dir;
  const std::string spec = dir.file("bad.yaml");
  for (const auto& [timing, expect] : std::vector<std::pair<std::string, std::string>>{
           {"{kernel: [auto, auto]}", "timing.kernel[1]"},
           {"{kernel: [auto, nope]}", "timing.kernel[1]"},
           {"{kernel: []}", "empty list"},
           {"{batch: [1, 0]}", "timing.batch[1]"},
           {"{batch: [2, 2]}", "listed twice"}}) {
    CAPTURE(timing);
    test::write_text(spec, "experiment: bad\ndata: {source: gaussian, rows: 16, cols: 64}\ntiming: " + timing +
                               "\nquantizers: ['rtn(bits=4,group=32)']\nmetrics: [kernel_us]\n");
    const auto r = run_tqbench("run '" + spec + "' --dry-run");
    CHECK(r.exit_code == 2);
    CHECK(r.output.find(expect) != std::string::npos);
    CHECK(r.output.find(":3:") != std::string::npos);  // the line of the timing block
  }
}

TEST_CASE("every metric of the registry measures some kind of data, and an evaluator per kind exists") {
  for (const auto& m : metrics()) {
    CAPTURE(m.name);
    CHECK((m.applies_to(DataKind::matrix) || m.applies_to(DataKind::model)));
    CHECK((!m.queries || m.applies_to(DataKind::matrix)));  // the spec's random queries are matrix data's
  }
  CHECK(find_metric("gpu_peak_bytes")->applies_to(DataKind::matrix));  // one name for both kinds
  CHECK(find_metric("gpu_peak_bytes")->applies_to(DataKind::model));
  ExperimentSpec spec;
  spec.path = "typo.yaml";
  spec.metrics = {"weight_nmse", "perplexty"};
  CHECK_THROWS_WITH_AS(compute_metrics(spec, [](const Metric&) { return 1.0; }), doctest::Contains("unknown metric 'perplexty'"),
                       InputError);
}

TEST_CASE("model points that differ only in kernel share one quantization of the layers") {
  const test::BooksModel books = test::books14m();
  if (!books.present_or_skip()) return;
  const std::string &model = books.model, &corpus = books.corpus;
  test::TempDir dir;
  const std::string spec = dir.file("kernels.yaml"), out = dir.file("kernels.h5");
  test::write_text(spec, "experiment: kernels\ndata: {source: model, model: '" + model + "', corpus: '" + corpus +
                             "', ctx: 128, chunks: 2, kernel: [dequantized_dense, fused_lut]}\n"
                             "quantizers: ['turboquant(bits=3,group=64,rotation=hadamard)', 'rtn(bits=4,group=64)']\n"
                             "metrics: [perplexity, weight_nmse_mean, quantize_s]\n");
  const auto r = run_tqbench("run '" + spec + "' -o '" + out + "'");
  REQUIRE_MESSAGE(r.exit_code == 0, r.output);
  const ResultTable t = read_result_file(out);
  REQUIRE(t.rows.size() == 4);  // data-major: (dense: tq, rtn), (fused_lut: tq, rtn)
  const int ppl = t.column_index("perplexity"), nmse = t.column_index("weight_nmse_mean"), qs = t.column_index("quantize_s");
  for (std::size_t i = 0; i < 2; ++i) {
    CHECK(std::get<double>(t.rows[i][qs]) > 0);       // quantized here
    CHECK(std::get<double>(t.rows[i + 2][qs]) == 0);  // reused: the same layers under another kernel
    CHECK(std::get<double>(t.rows[i][nmse]) == std::get<double>(t.rows[i + 2][nmse]));
    CHECK(std::get<double>(t.rows[i + 2][ppl]) == doctest::Approx(std::get<double>(t.rows[i][ppl])).epsilon(1e-4));
  }
}

TEST_CASE("a model spec's device: named in the point only when not the default, the KV estimator on cuda is a located error") {
  if (!std::filesystem::exists(std::filesystem::path(shared_dir()) / "models/stories260K/stories260K.gguf")) {
    MESSAGE("SKIPPED: stories260K (../shared) is not there");
    return;
  }
  test::TempDir dir;
  const std::string spec = dir.file("device.yaml");
  test::write_text(spec, "experiment: device\ndata: {source: model, model: stories260k, device: [cpu, cuda]}\n"
                         "quantizers: ['rtn(bits=4,group=64)']\nmetrics: [perplexity]\n");
  const auto r = run_tqbench("run '" + spec + "' --dry-run");
  REQUIRE_MESSAGE(r.exit_code == 0, r.output);
  // The cpu point keeps the name it had before the parameter existed (result files resume and compare unchanged);
  // the dry run names the points by what varies.
  const auto points = expand_sweep(load_spec(spec));
  REQUIRE(points.size() == 2);
  CHECK(points[0].data->name.rfind("model(model=stories260k,corpus=wikitext-2-test,method=llamacpp,ctx=512,chunks=20,include=", 0) == 0);
  CHECK(points[0].data->name.find("device=") == std::string::npos);
  CHECK(points[1].data->name.find("device=cuda") != std::string::npos);
  CHECK(r.output.find("model(device=cuda) | rtn") != std::string::npos);
  CHECK(r.output.find("device=cpu") == std::string::npos);
  // A quantized KV cache runs on the GPU (written by the CPU path's quantizer); the estimator's scores do not.
  test::write_text(spec, "experiment: device\ndata: {source: model, model: stories260k, device: cuda, kv_key: 'rtn(bits=4,group=row)', "
                         "kv_scores: estimator}\nquantizers: ['rtn(bits=4,group=64)']\nmetrics: [perplexity]\n");
  const auto bad = run_tqbench("run '" + spec + "' --dry-run");
  CHECK(bad.exit_code == 2);
  CHECK(bad.output.find("kv_scores") != std::string::npos);
  CHECK(bad.output.find("device: cpu") != std::string::npos);
  test::write_text(spec, "experiment: device\ndata: {source: model, model: stories260k, device: tpu}\n"
                         "quantizers: ['rtn(bits=4,group=64)']\nmetrics: [perplexity]\n");
  const auto tpu = run_tqbench("run '" + spec + "' --dry-run");
  CHECK(tpu.exit_code == 2);
  CHECK(tpu.output.find("cuda-fp32") != std::string::npos);
}
