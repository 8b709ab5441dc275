// End-to-end tests of the tqbench binary: exit codes, located spec errors, runs, resume after kill -9.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <cmath>
#include <cstring>
#include <thread>

#include <fmt/format.h>

#include "common/env.hpp"
#include "common/error.hpp"
#include "common/rng.hpp"
#include "harness/store.hpp"
#include "kernels/cuda/gpu.hpp"
#include "test_util.hpp"

using namespace tqb;
using tqb::test::run_tqbench;

namespace {

// "# expect-line: N" and "# expect: TEXT" headers of a bad-spec fixture.
std::pair<int, std::string> expectation(const std::string& text) {
  int line = 0;
  std::string expect;
  std::istringstream in(text);
  std::string l;
  while (std::getline(in, l)) {
    if (l.rfind("# expect-line: ", 0) == 0) line = std::stoi(l.substr(15));
    if (l.rfind("# expect: ", 0) == 0) expect = l.substr(10);
  }
  return {line, expect};
}

// `tqbench run SPEC -o OUT` in a child process, quiet; returns its pid (for kill -9 tests).
pid_t spawn_run(const std::string& spec, const std::string& out) {
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    std::freopen("/dev/null", "w", stderr);
    std::freopen("/dev/null", "w", stdout);
    ::execl(test::kBinary.c_str(), "tqbench", "run", spec.c_str(), "-o", out.c_str(), nullptr);
    ::_exit(127);
  }
  return pid;
}

std::size_t rows_in(const std::string& path) {
  try {
    return read_result_file(path).rows.size();
  } catch (const InputError&) {
    return 0;
  }
}

// Every column but the measured ones (time, memory), which legitimately differ between runs.
std::vector<std::vector<Cell>> comparable_rows(const ResultTable& t) {
  std::vector<std::vector<Cell>> out;
  for (const auto& r : t.rows) {
    std::vector<Cell> keep;
    for (std::size_t j = 0; j < t.columns.size(); ++j)
      if (t.columns[j].name != "elapsed_s" && t.columns[j].name != "finished_utc" && t.columns[j].name != "peak_rss_bytes")
        keep.push_back(r[j]);
    out.push_back(keep);
  }
  return out;
}

// stories260K from ../shared, or a skip message.
bool have_stories260k() {
  if (std::filesystem::exists(test::kSourceDir + "/../shared/models/stories260K/stories260K.gguf")) return true;
  MESSAGE("skipped: stories260K (../shared) not found");
  return false;
}

// Writes `yaml` as a spec, runs it, and returns its result table (the run must succeed).
ResultTable run_spec(const test::TempDir& dir, const std::string& yaml) {
  const std::string spec = dir.file("spec.yaml"), out = dir.file("spec.h5");
  test::write_text(spec, yaml);
  const auto r = run_tqbench("run '" + spec + "' -o '" + out + "' --force");
  REQUIRE_MESSAGE(r.exit_code == 0, r.output);
  return read_result_file(out);
}

}  // namespace

TEST_CASE("every malformed spec is rejected with exit code 2 and a located message") {
  test::TempDir dir;
  std::size_t n = 0;
  for (const auto& entry : std::filesystem::directory_iterator(test::kSourceDir + "/tests/specs/bad")) {
    const std::string path = entry.path().string();
    const auto [line, expect] = expectation(test::read_text(path));
    REQUIRE_MESSAGE(line > 0, path, " lacks an '# expect-line:' header");
    const auto r = run_tqbench("run '" + path + "' -o '" + dir.file("out.h5") + "'");
    CAPTURE(path);
    CAPTURE(r.output);
    CHECK(r.exit_code == 2);
    CHECK(r.output.find(path + ":" + std::to_string(line) + ":") != std::string::npos);
    CHECK(r.output.find(expect) != std::string::npos);
    CHECK(!std::filesystem::exists(dir.file("out.h5")));
    ++n;
  }
  CHECK(n >= 10);
}

TEST_CASE("tuning switches from the environment: a value the variable does not take is an error naming it, unset or empty is the default") {
  const char* var = "TQB_TEST_ENV_SWITCH";
  ::unsetenv(var);
  CHECK_FALSE(env_switch(var).has_value());
  CHECK_FALSE(env_count(var, 1, 10).has_value());
  CHECK_FALSE(env_seconds(var).has_value());
  ::setenv(var, "", 1);
  CHECK_FALSE(env_switch(var).has_value());
  ::setenv(var, "1", 1);
  CHECK(env_switch(var) == std::optional<bool>(true));
  CHECK(env_count(var, 1, 10) == std::optional<std::uint64_t>(1));
  ::setenv(var, "0", 1);
  CHECK(env_switch(var) == std::optional<bool>(false));
  CHECK_THROWS_WITH_AS(env_count(var, 1, 10), doctest::Contains("TQB_TEST_ENV_SWITCH='0': expected a whole number from 1 to 10"), InputError);
  for (const char* bad : {"yes", "on", "2", " 1"}) {
    ::setenv(var, bad, 1);
    CHECK_THROWS_WITH_AS(env_switch(var), doctest::Contains("expected 0 (off) or 1 (on)"), InputError);
  }
  for (const char* bad : {"-3", "12", "4k", "abc", "99999999999999999999999"}) {
    ::setenv(var, bad, 1);
    CHECK_THROWS_WITH_AS(env_count(var, 1, 10), doctest::Contains("TQB_TEST_ENV_SWITCH"), InputError);
  }
  ::setenv(var, "0.25", 1);
  CHECK(env_seconds(var) == std::optional<double>(0.25));
  for (const char* bad : {"-1", "nan", "inf", "1s"}) {
    ::setenv(var, bad, 1);
    CHECK_THROWS_WITH_AS(env_seconds(var), doctest::Contains("expected a number of seconds"), InputError);
  }
  ::unsetenv(var);
}

TEST_CASE("a missing spec file and bad usage exit with code 2") {
  auto r = run_tqbench("run /nonexistent/spec.yaml");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("/nonexistent/spec.yaml: error: cannot open the spec file") != std::string::npos);
  CHECK(run_tqbench("run").exit_code == 2);
  CHECK(run_tqbench("frobnicate").exit_code == 2);
  CHECK(run_tqbench("list colours").exit_code == 2);
  CHECK(run_tqbench("").exit_code == 2);
  CHECK(run_tqbench("run x.yaml --resume --force").exit_code == 2);
  CHECK(run_tqbench("show /nonexistent.h5").exit_code == 2);
  test::TempDir dir;
  test::write_text(dir.file("notes.h5"), "plain text, not HDF5\n");
  r = run_tqbench("show '" + dir.file("notes.h5") + "'");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("not an HDF5 file") != std::string::npos);
}

TEST_CASE("--version, --help and list") {
  auto r = run_tqbench("--version");
  CHECK(r.exit_code == 0);
  CHECK(r.output.find("tqbench 0.1.0 (git ") != std::string::npos);
  for (const std::string cmd : {"--help", "run --help", "list --help", "show --help"}) {
    r = run_tqbench(cmd);
    CAPTURE(cmd);
    CHECK(r.exit_code == 0);
    CHECK(r.output.find("Usage") != std::string::npos);
  }
  r = run_tqbench("list quantizers");
  CHECK(r.exit_code == 0);
  CHECK(r.output.find("rtn(bits=4,group=128,mode=sym,scale=fp16)") != std::string::npos);
  r = run_tqbench("list metrics");
  CHECK(r.output.find("weight_nmse") != std::string::npos);
  CHECK(run_tqbench("list data").output.find("student_t") != std::string::npos);
  r = run_tqbench("list kernels");
  CHECK(r.exit_code == 0);
  CHECK(r.output.find("fused_i16:") < r.output.find("dequantized_dense:"));  // fastest first
  CHECK(r.output.find("SIMD level in use") != std::string::npos);
}

TEST_CASE("run, dry run, show, repeatability and spec mismatch") {
  test::TempDir dir;
  const std::string spec = dir.file("s.yaml"), out = dir.file("s.h5"), out2 = dir.file("s2.h5");
  test::write_text(spec,
                   "experiment: small\nseed: 5\ndata: {source: student_t, rows: 16, cols: 128}\nqueries: 8\n"
                   "quantizers:\n  - family: rtn\n    bits: [3, 4]\n    group: [32, row]\n");
  auto r = run_tqbench("run '" + spec + "' --dry-run");
  CHECK(r.exit_code == 0);
  CHECK(r.output.find("4 points") != std::string::npos);
  CHECK(!std::filesystem::exists(out));

  REQUIRE(run_tqbench("run '" + spec + "' -o '" + out + "'").exit_code == 0);
  REQUIRE(run_tqbench("run '" + spec + "' -o '" + out2 + "'").exit_code == 0);
  const ResultTable a = read_result_file(out), b = read_result_file(out2);
  CHECK(a.rows.size() == 4);
  CHECK(comparable_rows(a) == comparable_rows(b));  // bit-for-bit repeatable from the seed
  for (const std::string attr : {"spec_text", "git_commit", "cpu_model", "host", "start_utc", "compiler", "seed"})
    CHECK_MESSAGE(a.attribute(attr) != nullptr, attr);

  r = run_tqbench("show '" + out + "'");
  CHECK(r.exit_code == 0);
  // What varies across the sweep names a point (bits and group here); --all keeps the canonical name.
  CHECK(r.output.find("rtn(bits=4,group=row)") != std::string::npos);
  CHECK(r.output.find("rtn(bits=4,group=row,mode=sym,scale=fp16)") == std::string::npos);
  CHECK(run_tqbench("show --all '" + out + "'").output.find("rtn(bits=4,group=row,mode=sym,scale=fp16)") != std::string::npos);
  r = run_tqbench("show --markdown --columns quantizer,weight_nmse '" + out + "'");
  CHECK(r.exit_code == 0);
  CHECK(r.output.find("| quantizer | weight_nmse |\n|---|---|\n| rtn(") == 0);
  CHECK(run_tqbench("show --markdown --csv '" + out + "'").exit_code == 2);  // one format at a time
  r = run_tqbench("show --csv '" + out + "'");
  CHECK(r.output.find("point,key,status") == 0);
  CHECK(run_tqbench("show --columns point,nope '" + out + "'").exit_code == 2);
  // One table across result files of the same sweep: two runs from one seed differ by nothing.
  r = run_tqbench("compare '" + out + "' '" + out2 + "'");
  CHECK(r.exit_code == 0);
  CHECK(r.output.find("[2] - [1]") != std::string::npos);
  CHECK(r.output.find("rtn(bits=4,group=row)") != std::string::npos);
  std::size_t zeros = 0;
  for (std::size_t at = 0; (at = r.output.find("  +0\n", at)) != std::string::npos; ++at) ++zeros;
  CHECK(zeros == 4);
  CHECK(run_tqbench("compare '" + out + "' '" + out2 + "' --metric nope").output.find("no column 'nope'") != std::string::npos);
  CHECK(run_tqbench("compare '" + out + "' 1").exit_code == 2);
  // Rows chosen and ordered on the stored values; reals to the digits asked.
  r = run_tqbench("show '" + out + "' --where 'q.bits=4' --where 'quantizer~row' --columns quantizer,weight_nmse --digits 3");
  CHECK(r.exit_code == 0);
  CHECK(r.output.find("1 of 4 rows match --where") != std::string::npos);
  CHECK(r.output.find("rtn(bits=4,group=row)") != std::string::npos);
  CHECK(r.output.find("rtn(bits=3") == std::string::npos);
  r = run_tqbench("show '" + out + "' --sort -weight_nmse --columns q.bits,weight_nmse --csv");
  CHECK(r.exit_code == 0);
  const auto first3 = r.output.find("\n3,"), first4 = r.output.find("\n4,");
  CHECK(first3 < first4);  // 3-bit errors are larger: first when descending
  CHECK(run_tqbench("show '" + out + "' --where 'weight_nmse<abc'").output.find("'weight_nmse' is a numeric column; expected a number") !=
        std::string::npos);
  CHECK(run_tqbench("show '" + out + "' --where 'quantizer<rtn'").exit_code == 2);
  CHECK(run_tqbench("show '" + out + "' --where 'bits'").output.find("expected COLUMN OP VALUE") != std::string::npos);
  CHECK(run_tqbench("show '" + out + "' --sort nope").output.find("--sort: 'nope' is not a column") != std::string::npos);

  // Running again resumes (nothing left to do); a changed spec must not silently mix results.
  r = run_tqbench("run '" + spec + "' -o '" + out + "'");
  CHECK(r.exit_code == 0);
  CHECK(r.output.find("0 run now") != std::string::npos);
  test::write_text(spec, test::read_text(spec) + "description: changed\n");
  r = run_tqbench("run '" + spec + "' -o '" + out + "'");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("different spec") != std::string::npos);
  CHECK(run_tqbench("run '" + spec + "' -o '" + out + "' --force").exit_code == 0);
  CHECK(run_tqbench("run '" + spec + "' -o '" + dir.file("none.h5") + "' --resume").exit_code == 2);
}

TEST_CASE("latency metrics time the spec's kernel against dense fp32 and name the kernel") {
  test::TempDir dir;
  const ResultTable t = run_spec(dir, "experiment: lat\nseed: 1\ndata: {source: gaussian, rows: 64, cols: 256}\n"
                                      "timing: {kernel: auto, batch: 2, repetitions: 5}\n"
                                      "quantizers: ['turboquant(bits=4,group=64)', 'rtn(bits=3,group=32)']\n"
                                      "metrics: [d_mse, kernel_us, kernel_us_min, kernel_us_max, dense_us, kernel_speedup, "
                                      "kernel_weight_bytes]\n");
  REQUIRE(t.rows.size() == 2);
  const int k = t.column_index("kernel"), med = t.column_index("kernel_us"), lo = t.column_index("kernel_us_min"),
            hi = t.column_index("kernel_us_max"), dense = t.column_index("dense_us"), speed = t.column_index("kernel_speedup"),
            bytes = t.column_index("kernel_weight_bytes");
  REQUIRE(k >= 0);
  CHECK(std::get<std::string>(t.rows[0][k]).rfind("fused_i16", 0) == 0);
  CHECK(std::get<std::string>(t.rows[1][k]) == "dequantized_dense");  // 3-bit codes: the next kernel
  CHECK(std::get<double>(t.rows[0][bytes]) < 64 * 256);  // 4-bit codes and norms, not fp32
  for (const auto& row : t.rows) {
    const double m = std::get<double>(row[med]);
    CHECK(std::get<double>(row[lo]) <= m);
    CHECK(m <= std::get<double>(row[hi]));
    CHECK(m > 0);
    CHECK(std::get<double>(row[speed]) == doctest::Approx(std::get<double>(row[dense]) / m));
  }
  const auto a = read_result_file(dir.file("spec.h5"));
  REQUIRE(a.attribute("timing_kernel") != nullptr);
  // A named kernel that cannot read a point's format fails that point, saying why; the others run.
  const std::string spec = dir.file("named.yaml");
  test::write_text(spec, "experiment: named\ndata: {source: gaussian, rows: 16, cols: 64}\n"
                         "timing: {kernel: fused_i16, repetitions: 3}\n"
                         "quantizers: ['rtn(bits=4,group=32)', 'rtn(bits=3,group=32)']\nmetrics: [kernel_us]\n");
  const auto r = run_tqbench("run '" + spec + "' -o '" + dir.file("named.h5") + "'");
  CHECK(r.exit_code == 1);
  const ResultTable named = read_result_file(dir.file("named.h5"));
  REQUIRE(named.rows.size() == 2);
  const int status = named.column_index("status"), error = named.column_index("error");
  CHECK(std::get<std::string>(named.rows[0][status]) == "ok");
  CHECK(std::get<std::string>(named.rows[1][status]) == "failed");
  CHECK(std::get<std::string>(named.rows[1][error]).find("kernel 'fused_i16' cannot run rtn(bits=3") != std::string::npos);
}

TEST_CASE("timing.device cuda times cuda_lut_mma against cuBLAS bf16, or fails each point saying why there is no GPU") {
  test::TempDir dir;
  const std::string spec = dir.file("gpu.yaml"), out = dir.file("gpu.h5");
  test::write_text(spec, "experiment: gpu\nseed: 3\ndata: {source: gaussian, rows: 300, cols: 512}\n"
                         "timing: {device: cuda, batch: 4, repetitions: 7}\n"
                         "quantizers: ['turboquant(bits=4,group=128,rotation=hadamard)', 'rtn(bits=8,group=128)']\n"
                         "metrics: [kernel_us, kernel_us_min, kernel_us_max, dense_us, kernel_speedup, kernel_weight_bytes, gpu_peak_bytes]\n");
  const auto r = run_tqbench("run '" + spec + "' -o '" + out + "'");
  CHECK(r.exit_code == 1);  // the 8-bit point fails everywhere; without a GPU both do
  const ResultTable t = read_result_file(out);
  REQUIRE(t.rows.size() == 2);
  const int status = t.column_index("status"), error = t.column_index("error"), k = t.column_index("kernel");
  const std::string why = gpu::unavailable_reason();
  if (!why.empty()) {
    MESSAGE("no GPU here (" << why << "): checking that the points fail with the reason");
    for (const auto& row : t.rows) {
      CHECK(std::get<std::string>(row[status]) == "failed");
      CHECK(std::get<std::string>(row[error]).find("needs a CUDA GPU") != std::string::npos);
    }
    return;
  }
  CHECK(std::get<std::string>(t.rows[0][status]) == "ok");
  CHECK(std::get<std::string>(t.rows[0][k]).rfind("cuda_lut_mma:small", 0) == 0);
  const double bytes = std::get<double>(t.rows[0][t.column_index("kernel_weight_bytes")]);
  CHECK(bytes < 300 * 512 * 0.6);  // 4-bit codes and bf16 norms on the GPU, not 2-byte weights
  CHECK(std::get<double>(t.rows[0][t.column_index("gpu_peak_bytes")]) >= bytes + 300 * 512 * 2);  // with the bf16 baseline
  CHECK(std::get<double>(t.rows[0][t.column_index("kernel_us")]) > 0);
  CHECK(std::get<double>(t.rows[0][t.column_index("dense_us")]) > 0);
  CHECK(std::get<std::string>(t.rows[1][status]) == "failed");
  CHECK(std::get<std::string>(t.rows[1][error]).find("cannot run") != std::string::npos);
  const auto a = read_result_file(out);
  REQUIRE(a.attribute("gpu") != nullptr);
}

TEST_CASE("-o never names the spec, a device or a folder, even with --force, a failed model run leaves no empty file") {
  test::TempDir dir;
  const std::string spec = dir.file("s.yaml");
  const std::string text = "experiment: s\ndata: {source: gaussian, rows: 8, cols: 64}\nquantizers: ['rtn(group=32)']\n";
  test::write_text(spec, text);
  for (const std::string& out : {spec, std::string("/dev/null"), dir.path.string()}) {
    CAPTURE(out);
    const auto r = run_tqbench("run '" + spec + "' -o '" + out + "' --force");
    CHECK(r.exit_code == 2);
    CHECK(r.output.find(out + ": error: the output is") != std::string::npos);
  }
  CHECK(test::read_text(spec) == text);  // the spec survived
  // Bad model input: exit 2, and no 0-row result file that would make the corrected spec "different".
  const std::string model_spec = dir.file("m.yaml"), model_out = dir.file("m.h5");
  test::write_text(model_spec, "experiment: m\ndata: {source: model, model: " + dir.file("missing.gguf") + ", chunks: 1}\nquantizers: [none]\n");
  const auto r = run_tqbench("run '" + model_spec + "' -o '" + model_out + "'");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("missing.gguf") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(model_out));
  // --max-points takes a positive count.
  const auto m = run_tqbench("run '" + spec + "' --dry-run --max-points 0");
  CHECK(m.exit_code == 2);
  CHECK(m.output.find("--max-points") != std::string::npos);
}

TEST_CASE("specs and corpora must be regular files of bounded size: /dev/zero and folders are refused at once") {
  test::TempDir dir;
  for (const std::string& spec : {std::string("/dev/zero"), dir.path.string()}) {
    const auto r = run_tqbench("run '" + spec + "' --dry-run");
    CHECK(r.exit_code == 2);
    CHECK(r.output.find(spec + ": error: the spec file must be a regular file") != std::string::npos);
  }
  if (!have_stories260k()) return;
  const auto r = run_tqbench("perplexity --model stories260k --corpus /dev/zero");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("/dev/zero: error: the corpus '/dev/zero' must be a regular file") != std::string::npos);
}

TEST_CASE("a format that overflows on the data fails the point with the reason, no ok row holds non-finite weights") {
  test::TempDir dir;
  const std::string spec = dir.file("big.yaml"), out = dir.file("big.h5");
  test::write_text(spec, "experiment: big\ndata: {source: gaussian, rows: 8, cols: 64, std: 100000}\n"
                         "quantizers: ['turboquant(bits=4,group=32,norm=fp16)', 'qjl(sketch=d,group=32,norm=fp16)', 'turboquant(bits=4,group=32)']\n"
                         "metrics: [weight_nmse]\n");
  const auto r = run_tqbench("run '" + spec + "' -o '" + out + "'");
  CHECK(r.exit_code == 1);
  const ResultTable t = read_result_file(out);
  REQUIRE(t.rows.size() == 3);
  const int status = t.column_index("status"), error = t.column_index("error"), nmse = t.column_index("weight_nmse");
  for (int i = 0; i < 2; ++i) {
    CHECK(std::get<std::string>(t.rows[i][status]) == "failed");
    CHECK(std::get<std::string>(t.rows[i][error]).find("not finite") != std::string::npos);
  }
  CHECK(std::get<std::string>(t.rows[2][status]) == "ok");  // fp32 norms hold it
  CHECK(std::isfinite(std::get<double>(t.rows[2][nmse])));
}

TEST_CASE("show names what is wrong with a path that is not a result file: a folder, a device, nothing") {
  test::TempDir dir;
  for (const auto& [path, expect] : {std::pair<std::string, std::string>{dir.path.string(), "not a regular file"}, {"/dev/null", "not a regular file"},
                                     {dir.file("none.h5"), "no such result file"}}) {
    const auto r = run_tqbench("show '" + path + "'");
    CHECK(r.exit_code == 2);
    CHECK(r.output.find(path + ": error: " + expect) != std::string::npos);
  }
}

TEST_CASE("a result file edited outside tqbench: a column of the wrong type is refused on resume, control characters are shown escaped") {
  test::TempDir dir;
  const std::string spec = dir.file("s.yaml"), out = dir.file("s.h5");
  test::write_text(spec, "experiment: edited\ndata: {source: gaussian, rows: 8, cols: 128}\nquantizers: [rtn]\n");
  REQUIRE(run_tqbench("run '" + spec + "' -o '" + out + "'").exit_code == 0);
  ResultTable t = read_result_file(out);
  const int point = t.column_index("point"), key = t.column_index("key");
  REQUIRE(point >= 0);
  t.columns[point].type = ColumnType::text;
  for (auto& row : t.rows) row[point] = cell_text(row[point]);
  t.rows[0][key] = std::string("evil\x1b[2Jkey");
  for (auto& [name, value] : t.attributes)
    if (name == "experiment") value = std::string("x\x1b]0;title\x07");
  write_result_file(out, t);
  auto r = run_tqbench("run '" + spec + "' -o '" + out + "'");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find(out + ": error: column 'point' holds text values, but this run writes integer") != std::string::npos);
  r = run_tqbench("show --all '" + out + "'");
  CHECK(r.exit_code == 0);
  CHECK(r.output.find('\x1b') == std::string::npos);
  CHECK(r.output.find('\x07') == std::string::npos);
  CHECK(r.output.find("experiment x\\x1b]0;title\\x07,") != std::string::npos);
  CHECK(r.output.find("evil\\x1b[2Jkey") != std::string::npos);
  CHECK(run_tqbench("show --csv '" + out + "'").output.find('\x1b') == std::string::npos);
}

TEST_CASE("a write that fails (file-size limit, as a full disk) exits 1 naming the file and cause, finished rows stay readable and resume") {
  test::TempDir dir;
  const std::string spec = dir.file("s.yaml"), out = dir.file("s.h5");
  test::write_text(spec, "experiment: disk\ndata: {source: gaussian, rows: 64, cols: [256, 512, 1024]}\n"
                         "quantizers:\n  - {family: rtn, bits: [2, 3, 4, 5, 6, 7, 8], group: [32, 64, 128]}\n"
                         "metrics: [weight_mse]\n");
  // RLIMIT_FSIZE (48 blocks of 512 bytes in /bin/sh) with SIGXFSZ ignored makes write() fail with EFBIG, the way ENOSPC does on a full disk.
  auto r = test::run_command("ulimit -f 48; trap '' XFSZ; '" + test::kBinary + "' run '" + spec + "' -o '" + out + "'");
  CAPTURE(r.output);
  CHECK(r.exit_code == 1);
  CHECK(r.output.find("cannot write") != std::string::npos);
  CHECK(r.output.find("File too large") != std::string::npos);
  const ResultTable partial = read_result_file(out);
  CHECK(partial.rows.size() > 0);
  CHECK(partial.rows.size() < 63);
  for (const auto& e : std::filesystem::directory_iterator(dir.path))
    CHECK_MESSAGE(e.path().filename().string().find(".tmp.") == std::string::npos, e.path());
  r = run_tqbench("run '" + spec + "' -o '" + out + "'");
  CHECK(r.exit_code == 0);
  CHECK(read_result_file(out).rows.size() == 63);
}

TEST_CASE("a point that cannot fit in memory is refused before it allocates, --dry-run prints the largest point's estimate") {
  test::TempDir dir;
  const std::string spec = dir.file("s.yaml"), out = dir.file("s.h5");
  // Point 1: a Haar rotation at d = 65536 (16 GiB of rotation alone) and 2^20 queries against 16384
  // rows (rows x queries products in doubles: 384 GiB). Point 0 is small and must still run.
  test::write_text(spec, "experiment: huge\nqueries: 1048576\ndata:\n  - {source: gaussian, rows: 16, cols: 64}\n"
                         "  - {source: gaussian, rows: 16384, cols: 65536}\n"
                         "quantizers:\n  - {family: turboquant, bits: 2}\nmetrics: [d_mse, d_prod]\n");
  auto r = run_tqbench("run '" + spec + "' --dry-run");
  CHECK(r.exit_code == 0);
  CHECK(r.output.find("largest point: 1 needs about") != std::string::npos);
  CHECK(r.output.find("points that do not fit will be refused") != std::string::npos);
  r = run_tqbench("run '" + spec + "' -o '" + out + "'");
  CHECK(r.exit_code == 1);
  const ResultTable t = read_result_file(out);
  REQUIRE(t.rows.size() == 2);
  const int status = t.column_index("status"), error = t.column_index("error");
  CHECK(cell_text(t.rows[0][status]) == "ok");
  CHECK(cell_text(t.rows[1][status]) == "failed");
  CHECK(cell_text(t.rows[1][error]).find("needs about") != std::string::npos);
  CHECK(cell_text(t.rows[1][error]).find("is available") != std::string::npos);
}

TEST_CASE("one run at a time writes a result file: a second exits 2 naming the holder's pid, a dead holder's lock does not block") {
  test::TempDir dir;
  const std::string spec = dir.file("s.yaml"), out = dir.file("s.h5");
  test::write_text(spec, "experiment: s\ndata: {source: gaussian, rows: 8, cols: 64}\nquantizers: ['rtn(group=32)']\n");
  {
    // Hold the lock as a concurrent run would (flock on FILE.lock with the holder's pid in it).
    const int fd = ::open((out + ".lock").c_str(), O_RDWR | O_CREAT, 0644);
    REQUIRE(fd >= 0);
    REQUIRE(::flock(fd, LOCK_EX | LOCK_NB) == 0);
    REQUIRE(::write(fd, "424242", 6) == 6);
    const auto r = run_tqbench("run '" + spec + "' -o '" + out + "'");
    CHECK(r.exit_code == 2);
    CHECK(r.output.find("another tqbench run (pid 424242)") != std::string::npos);
    CHECK_FALSE(std::filesystem::exists(out));
    ::close(fd);  // as when the holder dies: the kernel drops its flock
  }
  const auto r = run_tqbench("run '" + spec + "' -o '" + out + "'");
  CHECK(r.exit_code == 0);
  CHECK(read_result_file(out).rows.size() == 1);
}

TEST_CASE("a run killed with SIGKILL midway resumes to the rows of an uninterrupted run") {
  test::TempDir dir;
  const std::string spec = test::kSourceDir + "/tests/specs/good/resume.yaml";
  const std::string killed = dir.file("killed.h5"), clean = dir.file("clean.h5");

  const pid_t pid = spawn_run(spec, killed);
  // Wait until a few points are durable, then kill without warning.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (rows_in(killed) < 3 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  REQUIRE(WIFSIGNALED(status));  // it was killed, not finished

  const ResultTable partial = read_result_file(killed);  // opens cleanly
  const std::size_t total = 56;
  CHECK(partial.rows.size() >= 3);
  CHECK(partial.rows.size() < total);

  auto r = run_tqbench("run '" + spec + "' -o '" + killed + "'");
  CHECK(r.exit_code == 0);
  CHECK(r.output.find(fmt::format("resuming: {} of {} points already done", partial.rows.size(), total)) !=
        std::string::npos);
  REQUIRE(run_tqbench("run '" + spec + "' -o '" + clean + "'").exit_code == 0);
  const ResultTable resumed = read_result_file(killed), uninterrupted = read_result_file(clean);
  CHECK(resumed.rows.size() == total);
  CHECK(comparable_rows(resumed) == comparable_rows(uninterrupted));
  // The killed writer's temporary file is cleaned up by the resumed run.
  for (const auto& e : std::filesystem::directory_iterator(dir.path))
    CHECK_MESSAGE(e.path().string().find(".tmp.") == std::string::npos, e.path().string());
}

TEST_CASE("a model experiment with a missing model or corpus exits with code 2 naming it") {
  test::TempDir dir;
  const std::string spec = dir.file("m.yaml");
  test::write_text(spec, "experiment: m\ndata: {source: model, model: /nonexistent/model.gguf}\nquantizers: [none]\n");
  auto r = run_tqbench("run '" + spec + "' -o '" + dir.file("m.h5") + "'");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("model '/nonexistent/model.gguf': no such file or folder") != std::string::npos);
  if (!have_stories260k()) return;
  test::write_text(spec, "experiment: m\ndata: {source: model, model: stories260k, corpus: /nonexistent.txt}\nquantizers: [none]\n");
  r = run_tqbench("run '" + spec + "' -o '" + dir.file("m2.h5") + "'");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("/nonexistent.txt: error: cannot open the corpus '/nonexistent.txt'") != std::string::npos);
  r = run_tqbench("perplexity --model stories260k --quantizer 'rtn(bits=99)'");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("out of range") != std::string::npos);
  r = run_tqbench("perplexity --model stories260k --ctx 4");
  CHECK(r.exit_code == 2);
}

TEST_CASE("a model experiment writes perplexity, KLD and per-layer statistics") {
  if (!have_stories260k()) return;
  test::TempDir dir;
  // stories260K's ffn_down is 172 wide: group 32 does not divide it. An error naming the layer, unless the
  // spec allows the smaller group, which the row then records.
  const std::string spec = dir.file("g.yaml");
  test::write_text(spec, "experiment: g\ndata: {source: model, model: stories260k, ctx: 128, chunks: 4}\n"
                         "quantizers: ['rtn(bits=3,group=32,mode=asym)']\n");
  const auto refused = run_tqbench("run '" + spec + "' -o '" + dir.file("g.h5") + "'");
  CHECK(refused.exit_code == 2);
  CHECK(refused.output.find("layer blk.0.ffn_down.weight is 64 x 172") != std::string::npos);
  CHECK(refused.output.find("group_fallback: halve") != std::string::npos);
  const ResultTable t = run_spec(dir, "experiment: m\nseed: 2\ndata: {source: model, model: stories260k, ctx: 128, chunks: 4, "
                                      "group_fallback: halve}\nquantizers: [none, 'rtn(bits=3,group=32,mode=asym)']\n");
  REQUIRE(t.rows.size() == 2);
  const std::string used = std::get<std::string>(t.rows[1][t.column_index("layer_quantizers")]);
  CHECK(used.find("{\"layers\":30,\"quantizer\":\"rtn(bits=3,group=32,mode=asym,scale=fp16)\",\"widths\":[64]}") != std::string::npos);
  CHECK(used.find("{\"layers\":5,\"quantizer\":\"rtn(bits=3,group=4,mode=asym,scale=fp16)\",\"widths\":[172]}") != std::string::npos);
  const int ppl = t.column_index("perplexity"), kld = t.column_index("kld_mean"), layers = t.column_index("layer_stats");
  const int delta = t.column_index("delta_ppl");
  REQUIRE(ppl >= 0);
  REQUIRE(kld >= 0);
  REQUIRE(layers >= 0);
  CHECK(std::get<double>(t.rows[0][kld]) == doctest::Approx(0.0).epsilon(1e-9));  // none: the baseline itself
  CHECK(std::get<double>(t.rows[0][delta]) == 0.0);
  CHECK(std::get<double>(t.rows[1][kld]) > 0.0);
  CHECK(std::get<std::string>(t.rows[1][layers]).find("\"blk.4.ffn_down.weight\"") != std::string::npos);
}

TEST_CASE("a model experiment can name its kernel: fused_lut matches the reference and holds fewer bytes") {
  if (!have_stories260k()) return;
  test::TempDir dir;
  const ResultTable t = run_spec(dir, "experiment: k\ndata:\n  source: model\n  model: stories260k\n  ctx: 128\n  chunks: 3\n"
                                      "  group_fallback: halve\n  kernel: [dequantized_dense, fused_lut, auto]\n"
                                      "quantizers: ['turboquant(bits=4,group=32,rotation=hadamard)']\n");
  const std::string spec = dir.file("k.yaml");
  REQUIRE(t.rows.size() == 3);
  const int ppl = t.column_index("perplexity"), mem = t.column_index("weight_bytes_in_memory"), kern = t.column_index("kernel");
  REQUIRE(kern >= 0);
  const double p0 = std::get<double>(t.rows[0][ppl]);
  for (std::size_t i = 1; i < 3; ++i) {
    CHECK(std::fabs(std::get<double>(t.rows[i][ppl]) - p0) <= 1e-3 * p0);  // same model, other kernels
    CHECK(std::get<double>(t.rows[i][mem]) < std::get<double>(t.rows[0][mem]));  // packed codes for some layers
  }
  CHECK(std::get<std::string>(t.rows[0][kern]) == "dequantized_dense");
  // auto: fused_i16 where the group is a multiple of 32; ffn_down's 172 columns fall back to groups of
  // 4, which fused_i16 cannot read: the reference runs those.
  const std::string chosen = std::get<std::string>(t.rows[2][kern]);
  CHECK(chosen.find("fused_i16") != std::string::npos);
  CHECK(chosen.find("dequantized_dense") != std::string::npos);
  // Without a kernel, model evaluation runs the exact reference (fused kernels move the perplexity).
  const ResultTable d = run_spec(dir, "experiment: d\ndata:\n  source: model\n  model: stories260k\n  ctx: 128\n  chunks: 3\n"
                                      "  group_fallback: halve\n"
                                      "quantizers: ['turboquant(bits=4,group=32,rotation=hadamard)']\n");
  REQUIRE(d.rows.size() == 1);
  CHECK(std::get<std::string>(d.rows[0][d.column_index("kernel")]) == "dequantized_dense");
  CHECK(std::get<double>(d.rows[0][d.column_index("perplexity")]) == p0);
  test::write_text(spec, "experiment: k\ndata: {source: model, model: stories260k, kernel: fused_lut}\nquantizers: [none]\n");
  const auto simd = test::run_command("TQB_SIMD=avx9 '" + test::kBinary +
                                 "' perplexity --model stories260k --quantizer 'turboquant(bits=4,group=32)' "
                                 "--group-fallback halve --kernel fused_lut --ctx 64 --chunks 1");
  CHECK(simd.exit_code == 0);
  CHECK(simd.output.find("TQB_SIMD='avx9' is not one of scalar, avx2, avx512") != std::string::npos);
  const auto bad = run_tqbench("run '" + spec + "' -o '" + dir.file("k2.h5") + "'");
  CHECK(bad.exit_code == 2);
  CHECK(bad.output.find("kernel 'fused_lut' cannot run none()") != std::string::npos);
}

// The journal (harness/result_journal.hpp): kill -9 at random moments, with a fold after every point so that
// many kills land inside a fold (the HDF5 file being replaced, or the journal being cleared). Every resume
// must continue, and the final rows equal an uninterrupted run's.
TEST_CASE("kill -9 at random moments, folds included, loses no finished point, the last resume equals a clean run") {
  test::TempDir dir;
  const std::string spec = test::kSourceDir + "/tests/specs/good/resume.yaml";
  const std::string killed = dir.file("killed.h5"), clean = dir.file("clean.h5");
  ::setenv("TQB_FOLD_SECONDS", "0", 1);
  std::size_t before = 0;
  Rng rng(31);
  for (int attempt = 0; attempt < 6; ++attempt) {
    const pid_t pid = spawn_run(spec, killed);
    std::this_thread::sleep_for(std::chrono::milliseconds(150 + static_cast<int>(rng.uniform() * 400)));
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    const std::size_t now = rows_in(killed);  // opens cleanly, journal included
    CHECK(now >= before);                     // nothing finished is lost
    before = now;
  }
  ::unsetenv("TQB_FOLD_SECONDS");
  REQUIRE(run_tqbench("run '" + spec + "' -o '" + killed + "'").exit_code == 0);
  REQUIRE(run_tqbench("run '" + spec + "' -o '" + clean + "'").exit_code == 0);
  CHECK(comparable_rows(read_result_file(killed)) == comparable_rows(read_result_file(clean)));
  CHECK(!std::filesystem::exists(killed + ".journal"));  // folded and removed at the end
}

TEST_CASE("run --dry-run on a model prints each point's exact bits per weight and flags one configuration under two names") {
  if (!have_stories260k()) return;
  test::TempDir dir;
  const std::string spec = dir.file("b.yaml");
  test::write_text(spec, "experiment: b\ndata: {source: model, model: stories260k, ctx: 128, chunks: 2, group_fallback: halve}\n"
                         "quantizers: ['turboquant(bits=2,group=32)', 'rtn(bits=4,group=64)', 'rtn(bits=4,group=128)', q4_K]\n");
  const auto r = run_tqbench("run '" + spec + "' --dry-run");
  CHECK(r.exit_code == 0);
  // stories260K's 172-wide layers run g4 under halve: 4.70 bits per weight for a "2-bit g32" quantizer (issue 26).
  CHECK(r.output.find("    0     4.7006") != std::string::npos);
  CHECK(r.output.find("rtn(bits=4,group=4,mode=sym,scale=fp16) x 5 (width 172)") != std::string::npos);
  CHECK(r.output.find("warning: points 1 (rtn(bits=4,group=64,mode=sym,scale=fp16)), 2 (rtn(bits=4,group=128,mode=sym,scale=fp16)) "
                      "run the same effective quantizer on every layer") != std::string::npos);
  CHECK(r.output.find("3  cannot run: point 3 (q4_K(fallback=q5_0) on model stories260k)") != std::string::npos);
  CHECK(r.output.find("time: run --dry-run --calibrate") != std::string::npos);
  const auto timed = run_tqbench("run '" + spec + "' --dry-run --calibrate");
  CHECK(timed.exit_code == 0);
  CHECK(timed.output.find("time: point 0 took ") != std::string::npos);
  CHECK(timed.output.find("the sweep's 4 points about ") != std::string::npos);
  CHECK(run_tqbench("run '" + spec + "' --calibrate").exit_code == 2);  // only with --dry-run
  // The run itself refuses before any point runs, naming the point and the layer.
  const auto run = run_tqbench("run '" + spec + "' -o '" + dir.file("b.h5") + "'");
  CHECK(run.exit_code == 2);
  CHECK(run.output.find("q5_0 stores blocks of 32 weights along a row, and 172 columns are not a multiple of 32") != std::string::npos);
  CHECK(run.output.find("[0/") == std::string::npos);  // no point started
  CHECK(!std::filesystem::exists(dir.file("b.h5")));
}

TEST_CASE("SIGINT and SIGTERM fold the finished points into the file, say how to resume, and leave no lock or journal") {
  test::TempDir dir;
  const std::string spec = test::kSourceDir + "/tests/specs/good/resume.yaml";
  for (const int sig : {SIGINT, SIGTERM}) {
    CAPTURE(sig);
    const std::string out = dir.file(fmt::format("sig{}.h5", sig)), log = dir.file(fmt::format("sig{}.log", sig));
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      std::freopen(log.c_str(), "w", stderr);
      std::freopen("/dev/null", "w", stdout);
      ::execl(test::kBinary.c_str(), "tqbench", "run", spec.c_str(), "-o", out.c_str(), nullptr);
      ::_exit(127);
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (rows_in(out) < 2 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    ::kill(pid, sig);
    int status = 0;
    ::waitpid(pid, &status, 0);
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 128 + sig);
    const std::string said = test::read_text(log);
    const std::size_t saved = read_result_file(out).rows.size();
    CHECK(saved >= 2);
    CHECK(said.find(fmt::format("interrupted ({}): {} points saved in {}", sig == SIGINT ? "SIGINT" : "SIGTERM", saved, out)) !=
          std::string::npos);
    CHECK(said.find("resume with: tqbench run '" + spec + "' -o '" + out + "'") != std::string::npos);
    // Nothing left beside the result file: the lock is removed, the journal folded into the file.
    for (const auto& e : std::filesystem::directory_iterator(dir.path)) {
      const bool beside = e.path().filename().string().rfind(fmt::format("sig{}.h5", sig), 0) == 0 && e.path().string() != out;
      CHECK_MESSAGE(!beside, e.path().string());
    }
    const auto resumed = run_tqbench("run '" + spec + "' -o '" + out + "'");
    CHECK(resumed.exit_code == 0);
    CHECK(read_result_file(out).rows.size() == 56);
  }
}

TEST_CASE("CLI symmetry: perplexity takes a spec's KV-cache and layer options, a misspelled flag or command gets a suggestion") {
  auto r = run_tqbench("perplexity --chunk 3");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("tqbench perplexity: '--chunk' is not an option or argument here (did you mean '--chunks'?)") != std::string::npos);
  r = run_tqbench("runn spec.yaml");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("(did you mean 'run'?)") != std::string::npos);
  const test::BooksModel books = test::books14m();
  if (!books.present_or_skip()) return;
  // The same deterministic KV cache and layer selection through the CLI and through a spec: the same perplexity.
  test::TempDir dir;
  const std::string spec = dir.file("kv.yaml"), out = dir.file("kv.h5");
  test::write_text(spec, "experiment: kv\ndata: {source: model, model: '" + books.model + "', corpus: '" + books.corpus +
                             "', ctx: 128, chunks: 3, include: 'blk\\.1\\..*', kv_key: 'rtn(bits=4,group=row)', kv_value: key}\n"
                             "quantizers: ['rtn(bits=3,group=64)']\nmetrics: [perplexity, kv_key_bits]\n");
  REQUIRE(run_tqbench("run '" + spec + "' -o '" + out + "'").exit_code == 0);
  const ResultTable t = read_result_file(out);
  r = run_tqbench("perplexity --model '" + books.model + "' --corpus '" + books.corpus + "' --ctx 128 --chunks 3 --quantizer 'rtn(bits=3,group=64)' "
                  "--include 'blk\\.1\\..*' --kv-key 'rtn(bits=4,group=row)' --kv-value key");
  REQUIRE_MESSAGE(r.exit_code == 0, r.output);
  CHECK(r.output.find(fmt::format("perplexity: {:.4f}", std::get<double>(t.rows[0][t.column_index("perplexity")]))) != std::string::npos);
  CHECK(r.output.find("in 7 layers") != std::string::npos);  // one block's seven
  CHECK(r.output.find("KV cache: keys rtn(bits=4,group=row)") != std::string::npos);
  r = run_tqbench("perplexity --model '" + books.model + "' --corpus '" + books.corpus + "' --chunks 1 --kv-key 'rtn(bits=4,group=row)' --device cuda");
  CHECK(r.exit_code == 2);
}

TEST_CASE("no command writes over a file it reads, with or without --force, through links too (issue 28)") {
  test::TempDir dir;
  const std::string spec = dir.file("s.yaml"), corpus = dir.file("corpus.txt"), out = dir.file("s.h5");
  test::write_text(corpus, "Once upon a time there was a small model that read books all day long and never slept at all.\n");
  test::write_text(spec, "experiment: s\ndata: {source: gaussian, rows: 8, cols: 64}\nquantizers: ['rtn(group=32)']\n");
  // -o naming the spec (or a link to it), or any other non-result file, with --force: refused, untouched.
  const std::string text = test::read_text(spec);
  std::filesystem::create_symlink(spec, dir.file("link.h5"));
  for (const std::string& target : {spec, dir.file("link.h5"), corpus}) {
    CAPTURE(target);
    const auto r = run_tqbench("run '" + spec + "' -o '" + target + "' --force");
    CHECK(r.exit_code == 2);
  }
  CHECK(test::read_text(spec) == text);
  CHECK(test::read_text(corpus).rfind("Once upon a time", 0) == 0);
  CHECK(run_tqbench("run '" + spec + "' -o '" + corpus + "' --force").output.find("not a tqbench result file") != std::string::npos);
  // A result file is what --force replaces.
  REQUIRE(run_tqbench("run '" + spec + "' -o '" + out + "'").exit_code == 0);
  CHECK(run_tqbench("run '" + spec + "' -o '" + out + "' --force").exit_code == 0);
  // merge over a file that is not a result file.
  CHECK(run_tqbench("merge '" + corpus + "' '" + out + "'").output.find("not a tqbench result file") != std::string::npos);
  if (!have_stories260k()) return;
  // The model a model spec reads, and the corpus, named as the output.
  const std::string model = test::kSourceDir + "/../shared/models/stories260K/stories260K.gguf";
  std::filesystem::create_symlink(model, dir.file("model-link.h5"));
  test::write_text(spec, "experiment: m\ndata: {source: model, model: '" + model + "', corpus: '" + corpus + "', ctx: 16, chunks: 1}\n"
                         "quantizers: [none]\n");
  auto r = run_tqbench("run '" + spec + "' -o '" + dir.file("model-link.h5") + "' --force");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("this is the model") != std::string::npos);
  r = run_tqbench("run '" + spec + "' -o '" + corpus + "' --force");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("this is the corpus") != std::string::npos);
  // export never writes its input, and an existing output only with --force.
  r = run_tqbench("export --model '" + model + "' --quantizer q8_0 --group-fallback halve -o '" + dir.file("model-link.h5") + "'");
  CHECK(r.exit_code == 2);
  const std::string copy = dir.file("copy.gguf");
  std::filesystem::copy_file(model, copy);
  r = run_tqbench("export --model '" + copy + "' --quantizer q8_0 -o '" + copy + "' --force");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("this is the model") != std::string::npos);
  const std::string exported = dir.file("out.safetensors");
  CHECK(run_tqbench("export --model stories260k --quantizer 'rtn(bits=4,group=32)' --group-fallback halve -o '" + exported + "'").exit_code == 0);
  r = run_tqbench("export --model stories260k --quantizer 'rtn(bits=4,group=32)' --group-fallback halve -o '" + exported + "'");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("pass --force to replace it") != std::string::npos);
  CHECK(run_tqbench("export --model stories260k --quantizer 'rtn(bits=4,group=32)' --group-fallback halve -o '" + exported + "' --force").exit_code == 0);
  // A KL-divergence base is never written over the corpus or the model.
  r = run_tqbench("perplexity --model '" + model + "' --corpus '" + corpus + "' --ctx 16 --kl-divergence-base '" + corpus + "'");
  CHECK(r.exit_code == 2);
  CHECK(test::read_text(corpus).rfind("Once upon a time", 0) == 0);
}

TEST_CASE("on an 80-column terminal the progress line keeps the counts, the ETA and the quantizer (issue 27)") {
  if (test::run_command("command -v script").exit_code != 0) {
    MESSAGE("SKIPPED: util-linux script (a pseudo-terminal) is not installed");
    return;
  }
  test::TempDir dir;
  const std::string spec = dir.file("p.yaml");
  // Data names long enough to overflow 80 columns if printed whole.
  test::write_text(spec, "experiment: p\ndata: {source: student_t, rows: [16, 17], cols: [128, 256], nu: [3, 5]}\n"
                         "quantizers:\n  - family: turboquant\n    bits: [2, 3]\n    codebook: [beta, gaussian]\n    group: [32, 64]\n");
  const auto r = test::run_command("script -qec \"stty cols 80; '" + test::kBinary + "' run '" + spec + "' -o '" + dir.file("p.h5") +
                                   "'\" /dev/null");
  REQUIRE(r.exit_code == 0);
  std::size_t lines = 0;
  for (std::size_t start = 0; start < r.output.size();) {
    std::size_t end = r.output.find_first_of("\r\n", start);
    if (end == std::string::npos) end = r.output.size();
    std::string line = r.output.substr(start, end - start);
    start = end + 1;
    if (const auto k = line.find("\033[K"); k != std::string::npos) line = line.substr(k + 3);
    if (line.rfind("[", 0) != 0 || line.find(" ETA ") == std::string::npos) continue;
    ++lines;
    CAPTURE(line);
    CHECK(line.size() <= 80);
    CHECK(line.find("] turboquant(") != std::string::npos);  // the quantizer follows the counts and ETA, then the data
    CHECK(line.find(" | student_t") != std::string::npos);
  }
  CHECK(lines >= 32);
}
