// llama.cpp's legacy block formats as quantizers (quantizers/ggml_formats.hpp): bit-exact against gguf-py's
// numpy quantizers (the oracle, installed by scripts/setup.sh into .venv), exact bits per weight, and the
// error a block format must have.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include "common/error.hpp"
#include "common/rng.hpp"
#include "quantizers/ggml_blocks.hpp"
#include "quantizers/registry.hpp"
#include "test_util.hpp"

using namespace tqb;

namespace {

// Rows that exercise the corners of the reference rounding: Gaussian rows at several scales, a zero block,
// a constant block, one large outlier, values on the half-steps of the grid, tiny (subnormal fp16) scales.
std::vector<float> awkward_matrix(std::size_t rows, std::size_t cols) {
  std::vector<float> w(rows * cols);
  Rng rng(20261124);
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t c = 0; c < cols; ++c) w[r * cols + c] = static_cast<float>(rng.normal() * std::pow(10.0, static_cast<double>(r % 5) - 2));
  std::fill(w.begin(), w.begin() + 32, 0.0f);                  // a zero block
  std::fill(w.begin() + 32, w.begin() + 64, 0.75f);            // a constant block
  w[cols + 7] = 1000.0f;                                        // an outlier
  for (std::size_t c = 0; c < 32; ++c) w[2 * cols + c] = (static_cast<float>(c) - 16.0f) * 0.5f;  // half steps
  for (std::size_t c = 0; c < 32; ++c) w[3 * cols + c] = 1e-7f * static_cast<float>(c % 7);       // tiny scale
  return w;
}

}  // namespace

TEST_CASE("llama.cpp's legacy formats quantize bit-exactly like gguf-py (ggml's reference path)") {
  const std::string python = TQB_GGUF_PYTHON;
  if (python.empty()) {
    MESSAGE("SKIPPED: no Python with the gguf package (scripts/setup.sh installs PyPI gguf into .venv)");
    return;
  }
  test::TempDir dir;
  const std::size_t rows = 9, cols = 256;
  const std::vector<float> w = awkward_matrix(rows, cols);
  const std::string in = dir.file("w.f32");
  std::ofstream(in, std::ios::binary).write(reinterpret_cast<const char*>(w.data()), static_cast<std::streamsize>(w.size() * 4));
  for (const std::string name : {"q4_0", "q4_1", "q5_0", "q5_1", "q8_0"}) {  // gguf-py quantizes only these
    const GgmlBlockFormat& f = *find_ggml_block_format(name);
    CAPTURE(f.name);
    const QuantizedMatrix q = parse_quantizer(std::string(f.name) + "()")->quantize(w.data(), rows, cols, 1);
    const std::string out = dir.file(std::string(f.name) + ".bin");
    const auto r = test::run_command("'" + python + "' '" + test::kSourceDir + "/tests/oracles/ggml_quantize.py' " + f.name +
                                     " '" + in + "' " + std::to_string(rows) + " " + std::to_string(cols) + " '" + out + "'");
    REQUIRE_MESSAGE(r.exit_code == 0, r.output);
    const std::string expect = test::read_text(out);
    REQUIRE(expect.size() == q.codes.size());
    std::size_t first = expect.size();
    for (std::size_t i = 0; i < expect.size() && first == expect.size(); ++i)
      if (static_cast<std::uint8_t>(expect[i]) != q.codes[i]) first = i;
    CHECK_MESSAGE(first == expect.size(), "first differing byte " << first << " (block " << first / f.block_bytes << ")");
  }
}

TEST_CASE("llama.cpp's legacy formats: exact bits per weight, registry names, shape checks, block-format error") {
  const std::size_t rows = 16, cols = 128;
  std::vector<float> w(rows * cols);
  Rng rng(7);
  for (auto& v : w) v = static_cast<float>(rng.normal());
  const std::map<std::string, double> bpw{{"q4_0", 4.5}, {"q4_1", 5.0}, {"q5_0", 5.5}, {"q5_1", 6.0}, {"q8_0", 8.5}};
  double previous_error = 1e9;
  for (const std::string name : {"q4_0", "q5_0", "q8_0"}) {
    CAPTURE(name);
    auto qz = parse_quantizer(name);  // bare family names parse, and print canonically
    CHECK(qz->name() == name + "()");
    const QuantizedMatrix q = qz->quantize(w.data(), rows, cols, 1);
    CHECK(q.bits_per_weight() == bpw.at(name));
    std::vector<float> back(rows * cols);
    qz->dequantize(q, back.data());
    double err = 0, norm = 0;
    for (std::size_t i = 0; i < w.size(); ++i) {
      err += (w[i] - back[i]) * double(w[i] - back[i]);
      norm += double(w[i]) * w[i];
    }
    CHECK(err / norm < previous_error);  // more bits, less error
    previous_error = err / norm;
    CHECK(qz->check_shape(4, 48).message.find("not a multiple of 32") != std::string::npos);
  }
  for (const std::string name : {"q4_1", "q5_1"}) CHECK(parse_quantizer(name)->quantize(w.data(), rows, cols, 1).bits_per_weight() == bpw.at(name));
  // The reader of GGUF files dequantizes these types with the same codec.
  CHECK(find_ggml_block_format(6u) == find_ggml_block_format("q5_0"));
}

// The k-quants and iq4_nl have no test oracle in CI (gguf-py has no quantizers for them):
// bench/peers/check_ggml_formats.py compares them with ggml itself (docs/GGML_FORMATS.md). Here: the
// properties any correct implementation has.
TEST_CASE("k-quants and iq4_nl: exact bits per weight, error ordered by bits, fallback rows, zero and sign handling") {
  const std::size_t rows = 12, cols = 512;
  std::vector<float> w(rows * cols);
  Rng rng(11);
  for (auto& v : w) v = static_cast<float>(rng.normal());
  const std::map<std::string, double> bpw{{"q2_K", 2.625}, {"q3_K", 3.4375}, {"q4_K", 4.5}, {"q5_K", 5.5}, {"q6_K", 6.5625},
                                          {"iq4_nl", 4.5}};
  auto nmse_of = [&](const std::string& name, const std::vector<float>& x, std::size_t r, std::size_t c, double* bits) {
    auto qz = parse_quantizer(name);
    const QuantizedMatrix q = qz->quantize(x.data(), r, c, 1);
    if (bits) *bits = q.bits_per_weight();
    std::vector<float> back(r * c);
    qz->dequantize(q, back.data());
    double err = 0, norm = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
      REQUIRE(std::isfinite(back[i]));
      err += (x[i] - back[i]) * double(x[i] - back[i]);
      norm += double(x[i]) * x[i];
    }
    return norm > 0 ? err / norm : err;
  };
  double previous = 1e9;
  for (const std::string name : {"q2_K", "q3_K", "q4_K", "q5_K", "q6_K"}) {
    CAPTURE(name);
    double bits = 0;
    const double nmse = nmse_of(name, w, rows, cols, &bits);
    CHECK(bits == bpw.at(name));
    CHECK(nmse < previous);
    // Gaussian weights: about 4^-b relative error for b bits, within the formats' scale overheads.
    CHECK(nmse < 2.5 * std::pow(4.0, -static_cast<double>(name[1] - '0')) * 3);
    previous = nmse;
  }
  double iq4_bits = 0;
  const double iq4 = nmse_of("iq4_nl", w, rows, cols, &iq4_bits);
  CHECK(iq4_bits == 4.5);
  CHECK(iq4 < nmse_of("q4_0", w, rows, cols, nullptr));  // the non-uniform grid beats q4_0 on Gaussian weights

  // Rows that are not whole super-blocks: llama-quantize's fallback by default, stated in the name; none refuses.
  auto q4k = parse_quantizer("q4_K");
  CHECK(q4k->name() == "q4_K(fallback=q5_0)");
  CHECK(q4k->quantize(w.data(), rows * 2, cols / 2 + 0, 1).bits_per_weight() == 4.5);  // 256 columns: q4_K itself
  std::vector<float> narrow(rows * 576);
  for (auto& v : narrow) v = static_cast<float>(rng.normal());
  CHECK(q4k->quantize(narrow.data(), rows, 576, 1).bits_per_weight() == 5.5);  // q5_0
  CHECK(parse_quantizer("q6_K")->quantize(narrow.data(), rows, 576, 1).bits_per_weight() == 8.5);  // q8_0
  const ShapeProblem refused = parse_quantizer("q4_K(fallback=none)")->check_shape(rows, 576);
  CHECK(refused.param == "fallback");
  CHECK(refused.message.find("llama-quantize would use q5_0") != std::string::npos);
  CHECK_THROWS_WITH_AS(parse_quantizer("q4_K(fallback=q4_K)"), doctest::Contains("one of none, q4_0"), InputError);

  // All-zero super-blocks dequantize to zeros; an all-positive or all-negative block keeps its sign.
  std::vector<float> special(2 * 256, 0.0f);
  for (std::size_t i = 256; i < 512; ++i) special[i] = 0.5f + static_cast<float>(i % 7) * 0.1f;
  for (const std::string name : {"q2_K", "q3_K", "q4_K", "q5_K", "q6_K", "iq4_nl"}) {
    CAPTURE(name);
    auto qz = parse_quantizer(name);
    std::vector<float> back(special.size());
    qz->dequantize(qz->quantize(special.data(), 1, special.size(), 1), back.data());
    for (std::size_t i = 0; i < 256; ++i) REQUIRE(back[i] == 0.0f);
    // The values span 0.5..1.1: half a step of each grid (iq4_nl's top levels are 24/127 of the scale apart).
    const float tolerance = name == "q2_K" ? 0.2f : name == "q3_K" ? 0.15f : name == "iq4_nl" ? 0.12f : 0.05f;
    for (std::size_t i = 256; i < 512; ++i) {
      REQUIRE(back[i] > 0.0f);
      REQUIRE(std::fabs(back[i] - special[i]) < tolerance);
    }
  }
}
