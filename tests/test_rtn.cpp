#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "common/float_format.hpp"
#include "common/rng.hpp"
#include "quantizers/bitpack.hpp"
#include "quantizers/registry.hpp"

using namespace tqb;

namespace {

std::vector<float> gaussian(std::size_t n, std::uint64_t seed, double scale = 1.0) {
  Rng rng(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(scale * rng.normal());
  return v;
}

double mse(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
  return s / static_cast<double>(a.size());
}

std::string rtn_name(int bits, const std::string& group, const std::string& mode, const std::string& scale) {
  return "rtn(bits=" + std::to_string(bits) + ",group=" + group + ",mode=" + mode + ",scale=" + scale + ")";
}

}  // namespace

TEST_CASE("RTN error never exceeds half a quantization step of the stored scale") {
  const std::size_t rows = 16, cols = 256;
  auto w = gaussian(rows * cols, 3, 0.02);
  // Edge cases inside the matrix: a constant group, an all-zero group, one outlier.
  for (std::size_t i = 0; i < 32; ++i) w[i] = 0.5f;
  for (std::size_t i = 32; i < 64; ++i) w[i] = 0.0f;
  w[300] = 40.0f;
  for (const std::string mode : {"sym", "asym"})
    for (const std::string scale : {"fp32", "fp16", "bf16"})
      for (const std::string group : {"32", "128", "row"})
        for (int bits = 2; bits <= 8; ++bits) {
          const std::string name = rtn_name(bits, group, mode, scale);
          CAPTURE(name);
          auto q = parse_quantizer(name);
          const QuantizedMatrix qm = q->quantize(w.data(), rows, cols, 1);
          std::vector<float> back(rows * cols);
          q->dequantize(qm, back.data());
          const std::size_t g = group == "row" ? cols : std::stoul(group);
          const std::size_t groups = cols / g;
          const FloatFormat f = *parse_float_format(scale);
          bool ok = true;
          for (std::size_t r = 0; r < rows && ok; ++r)
            for (std::size_t j = 0; j < groups && ok; ++j) {
              const float step = load_float(f, qm.scales.data() + (r * groups + j) * bytes_of(f));
              for (std::size_t i = 0; i < g; ++i) {
                const std::size_t k = r * cols + j * g + i;
                const double err = std::fabs(double(w[k]) - back[k]);
                // Half a step, plus float rounding of the reconstruction itself.
                if (err > 0.5 * step * (1 + 1e-5) + 1e-6 * std::fabs(w[k]) + 1e-30) {
                  ok = false;
                  FAIL_CHECK("row ", r, " group ", j, " element ", i, ": error ", err, " > half step ", 0.5 * step);
                }
              }
            }
          CHECK(ok);
        }
}

TEST_CASE("RTN mean squared error is non-increasing in bits") {
  const std::size_t rows = 32, cols = 512;
  const auto w = gaussian(rows * cols, 11);
  for (const std::string mode : {"sym", "asym"})
    for (const std::string group : {"32", "128", "row"}) {
      double prev = INFINITY;
      for (int bits = 2; bits <= 8; ++bits) {
        auto q = parse_quantizer(rtn_name(bits, group, mode, "fp16"));
        std::vector<float> back(rows * cols);
        q->dequantize(q->quantize(w.data(), rows, cols, 1), back.data());
        const double e = mse(w, back);
        CAPTURE(q->name());
        CHECK(e <= prev);
        prev = e;
      }
    }
}

TEST_CASE("RTN stored size is exact") {
  const std::size_t rows = 8, cols = 1024;
  const auto w = gaussian(rows * cols, 5);
  struct Case {
    std::string name;
    double bpw;
  };
  for (const Case& c : std::vector<Case>{
           {"rtn(bits=4,group=128,mode=sym,scale=fp16)", 4.125},
           {"rtn(bits=4,group=128,mode=asym,scale=fp16)", 4.25},
           {"rtn(bits=4,group=128,mode=sym,scale=fp32)", 4.25},
           {"rtn(bits=3,group=32,mode=asym,scale=fp16)", 4.0},
           {"rtn(bits=2,group=64,mode=sym,scale=bf16)", 2.25},
           {"rtn(bits=8,group=row,mode=sym,scale=fp32)", 8.0 + 32.0 / 1024},
           {"rtn(bits=5,group=256,mode=asym,scale=fp32)", 5.25},
       }) {
    CAPTURE(c.name);
    auto q = parse_quantizer(c.name);
    const QuantizedMatrix qm = q->quantize(w.data(), rows, cols, 1);
    CHECK(qm.bits_per_weight() == doctest::Approx(c.bpw).epsilon(1e-12));
    CHECK(qm.codes.size() == packed_size(rows * cols, qm.code_bits));
    CHECK(qm.storage_bytes() * 8 == static_cast<std::size_t>(c.bpw * rows * cols));
  }
}

TEST_CASE("RTN asym g32 fp16 reproduces a Q4_1 grid exactly") {
  // Groups of 32 values d*q + m with fp16 d, m and codes covering 0..15: the grid ggml's Q4_1 stores.
  const std::size_t rows = 4, cols = 128;
  Rng rng(9);
  std::vector<float> w(rows * cols);
  for (std::size_t g = 0; g < rows * cols / 32; ++g) {
    const float d = round_to(FloatFormat::fp16, static_cast<float>(0.001 + 0.01 * rng.uniform()));
    const float m = round_to(FloatFormat::fp16, static_cast<float>(-0.1 * rng.uniform()));
    for (std::size_t i = 0; i < 32; ++i) {
      const int q = i < 16 ? static_cast<int>(i) : static_cast<int>(rng.next_u64() % 16);
      w[g * 32 + i] = m + d * static_cast<float>(q);
    }
  }
  auto q = parse_quantizer("rtn(bits=4,group=32,mode=asym,scale=fp16)");
  std::vector<float> back(w.size());
  q->dequantize(q->quantize(w.data(), rows, cols, 1), back.data());
  CHECK(mse(w, back) == 0.0);
}

TEST_CASE("RTN is deterministic and checks shapes") {
  const auto w = gaussian(64 * 96, 2);
  auto q = parse_quantizer("rtn(bits=3,group=32)");
  const auto a = q->quantize(w.data(), 64, 96, 1);
  const auto b = q->quantize(w.data(), 64, 96, 1);
  CHECK(a.codes == b.codes);
  CHECK(a.scales == b.scales);
  CHECK(q->check_shape(64, 96).message.empty());
  const ShapeProblem p = parse_quantizer("rtn(group=128)")->check_shape(64, 96);
  CHECK(p.param == "group");
  CHECK(p.message.find("does not divide") != std::string::npos);
}
