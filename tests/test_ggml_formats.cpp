// llama.cpp's legacy block formats as quantizers (quantizers/ggml_formats.hpp): bit-exact against gguf-py's
// numpy quantizers (the oracle, installed by scripts/setup.sh into .venv), exact bits per weight, and the
// error a block format must have.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

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
  for (const auto& f : ggml_block_formats()) {
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
