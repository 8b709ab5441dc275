// Every fused kernel variant against the reference ("dequantize, then dense"), at odd shapes, every
// bit width, each SIMD level forced in turn, with guard zones around the output.
#include <doctest/doctest.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>
#include <limits>
#include <optional>
#include <set>
#include <stdexcept>

#include "common/rng.hpp"
#include "kernels/cpu/fused_i16.hpp"
#include "kernels/cpu/fused_i8.hpp"
#include "kernels/cpu/fused_lut.hpp"
#include "kernels/linear.hpp"
#include "kernels/registry.hpp"
#include "common/error.hpp"
#include "kernels/cpu/simd_level.hpp"
#include "quantizers/registry.hpp"
#include "test_util.hpp"

using namespace tqb;

namespace {

struct LevelGuard {
  SimdLevel saved = simd_level();
  ~LevelGuard() { set_simd_level(saved); }
};

}  // namespace

TEST_CASE("fused LUT kernels match dequantize-then-dense for every format, shape, batch and SIMD level") {
  LevelGuard guard;
  std::vector<std::string> names;
  for (int b = 1; b <= 8; ++b) {
    names.push_back(fmt::format("turboquant(bits={},group=32,rotation=hadamard)", b));
    if (b >= 2) names.push_back(fmt::format("rtn(bits={},group=32,mode=sym)", b));
    names.push_back(fmt::format("rtn(bits={},group=row,mode=asym,scale=fp32)", b));
  }
  for (const std::string n : {"turboquant(bits=4,group=row,rotation=haar,codebook=gaussian)",
                              "turboquant(bits=3,group=64,rotation=none,norm=fp16)", "qjl(sketch=d,group=32)",
                              "qjl(sketch=2d,group=row)", "turboquant_prod(bits=3,group=32)",
                              "residual(stack=4+2,group=32,rotation=hadamard)", "residual(stack=3+1-qjl,group=64)",
                              "residual(stack=rtn(bits=4,group=32,mode=asym)+2,group=32)"})
    names.push_back(n);
  const std::size_t rows = 301, cols = 192;  // odd row count over two prefill tiles; groups of 32, 64, 192
  const Matrix w = test::random_normal_matrix(rows, cols, 1);
  for (const auto& name : names) {
    auto q = parse_quantizer(name);
    REQUIRE_MESSAGE(fused_lut_supports(*q).empty(), name);
    const QuantizedMatrix qm = q->quantize(w.data(), rows, cols, 7);
    const auto reference = make_dequantized_linear(*q, qm);
    const auto fused = make_fused_lut_linear(*q, qm);
    for (std::size_t n : {1u, 3u, 16u, 33u, 70u}) {  // 33 and 70 take the tiled prefill path
      const Matrix x = test::random_normal_matrix(n, cols, 100 + n);
      Matrix expect(n, rows);
      reference->forward(x.data(), n, expect.data());
      for (SimdLevel level : {SimdLevel::scalar, SimdLevel::avx2, SimdLevel::avx512}) {
        if (set_simd_level(level) != level) continue;  // the CPU lacks it
        CAPTURE(name);
        CAPTURE(n);
        CAPTURE(to_string(level));
        std::vector<float> y(n * rows + 64, 12345.0f);  // 32 guard floats each side
        fused->forward(x.data(), n, y.data() + 32);
        for (int k = 0; k < 32; ++k) {
          CHECK(y[k] == 12345.0f);
          CHECK(y[32 + n * rows + k] == 12345.0f);
        }
        const Eigen::Map<const Matrix> got(y.data() + 32, n, rows);
        const double rel = (got - expect).cast<double>().norm() / std::max(1e-30, expect.cast<double>().norm());
        CHECK(rel <= 1e-5);
        CHECK(fused->kernel() == "fused_lut_" + to_string(level));
      }
    }
  }
}

TEST_CASE("the fused kernel declares what it cannot read") {
  CHECK(fused_lut_supports(*parse_quantizer("none")).find("does not read none") != std::string::npos);
  CHECK(fused_lut_supports(*parse_quantizer("residual(stack=none()+4)")).find("does not read none") != std::string::npos);
  CHECK_THROWS_AS(make_fused_lut_linear(*parse_quantizer("none"), QuantizedMatrix{}), std::invalid_argument);
  // TQB_SIMD / set_simd_level never go above the CPU.
  LevelGuard guard;
  CHECK(static_cast<int>(set_simd_level(SimdLevel::avx512)) <= static_cast<int>(detected_simd_level()));
  CHECK(set_simd_level(SimdLevel::scalar) == SimdLevel::scalar);
}

TEST_CASE("the dense fp32 kernel (GEMV, per-column GEMV blocks, the thin 4x4 kernel, GEMM) matches a double product") {
  // n = 1: OpenBLAS GEMV; 2..4: one GEMV per column over row blocks; 5..31: gemm_xwt_thin (rows in 4s, a
  // k % 8 tail); from 32: OpenBLAS GEMM. Odd shapes reach every tail.
  for (const auto& [rows, cols] : {std::pair<std::size_t, std::size_t>{300, 200}, {7, 70000}, {1000, 64}, {13, 13}}) {
    const Matrix w = test::random_normal_matrix(rows, cols, 8);
    const auto dense = make_dense_linear(w);
    for (std::size_t n : {1u, 2u, 3u, 4u, 5u, 7u, 16u, 31u, 32u, 40u}) {
      const Matrix x = test::random_normal_matrix(n, cols, 60 + n);
      std::vector<float> y(n * rows + 64, -7.0f);
      dense->forward(x.data(), n, y.data() + 32);
      bool guards = true;
      for (int k = 0; k < 32; ++k) guards = guards && y[k] == -7.0f && y[32 + n * rows + k] == -7.0f;
      CHECK(guards);
      const Eigen::MatrixXd expect = x.cast<double>() * w.cast<double>().transpose();
      const Eigen::Map<const Matrix> got(y.data() + 32, n, rows);
      CAPTURE(rows);
      CAPTURE(n);
      CHECK((got.cast<double>() - expect).norm() <= 1e-5 * expect.norm());
    }
  }
}

TEST_CASE("the kernel registry: auto takes the first supported kernel, names are checked") {
  const Matrix w = test::random_normal_matrix(8, 64, 3);
  auto q = parse_quantizer("turboquant(bits=4,group=32,rotation=hadamard)");
  const QuantizedMatrix qm = q->quantize(w.data(), 8, 64, 1);
  CHECK(make_linear("auto", *q, qm)->kernel().rfind(linear_kernels().front().name, 0) == 0);
  CHECK(make_linear("auto", *q, qm)->kernel().rfind("fused_i16", 0) == 0);
  CHECK(make_linear("fused_lut", *q, qm)->kernel().rfind("fused_lut", 0) == 0);
  // Formats the fastest kernel cannot read fall through the table to the reference (fused_lut, slower
  // than the reference, is never auto's choice).
  auto q3 = parse_quantizer("turboquant(bits=3,group=32,rotation=hadamard)");
  CHECK(make_linear("auto", *q3, q3->quantize(w.data(), 8, 64, 1))->kernel() == "dequantized_dense");
  auto none = parse_quantizer("none");
  CHECK(make_linear("auto", *none, none->quantize(w.data(), 8, 64, 1))->kernel() == "dequantized_dense");
  CHECK_THROWS_WITH_AS(make_linear("fused_lut", *none, none->quantize(w.data(), 8, 64, 1)),
                       doctest::Contains("kernel 'fused_lut' cannot run none()"), InputError);
  CHECK_THROWS_WITH_AS(make_linear("fused_lt", *q, qm), doctest::Contains("did you mean 'fused_lut'"), InputError);
  CHECK(linear_kernel_names().front() == "auto");
}

namespace {

// An integer kernel (fused_i16, fused_i8) against the reference at every SIMD level this CPU has: the
// formats it reads, batches that take every slice path, guard zones around the output, the variant that
// dispatch runs, and NaN propagation. The levels compute the same integer sums, so their outputs must
// also agree with one another far more closely than with the reference.
using MakeKernel = std::unique_ptr<Linear> (*)(const Quantizer&, QuantizedMatrix);
void check_integer_kernel(const std::string& prefix, MakeKernel make, std::string (*supports)(const Quantizer&),
                          double tolerance) {
  LevelGuard guard;
  const std::size_t rows = 53, cols = 256;  // groups of 32 take the 32-code tail path, larger ones 64-code blocks
  if (detected_simd_level() < SimdLevel::avx512)
    MESSAGE("this CPU lacks AVX-512: the AVX-512 variants are compiled but not run here (scripts/device_check.sh runs them)");
  std::set<std::string> variants;
  const Matrix w = test::random_normal_matrix(rows, cols, 4);
  for (const std::string name : {"turboquant(bits=4,group=32,rotation=hadamard)", "turboquant(bits=4,group=256,rotation=haar)",
                                 "turboquant(bits=4,group=64,rotation=none,codebook=gaussian)",
                                 "rtn(bits=4,group=64,mode=sym)", "rtn(bits=4,group=32,mode=asym,scale=fp16)",
                                 "residual(stack=4+4,group=64,rotation=hadamard)"}) {
    auto q = parse_quantizer(name);
    REQUIRE_MESSAGE(supports(*q).empty(), name);
    const QuantizedMatrix qm = q->quantize(w.data(), rows, cols, 3);
    const auto reference = make_dequantized_linear(*q, qm);
    const auto fused = make(*q, qm);
    for (std::size_t n : {1u, 3u, 8u, 16u, 31u, 40u, 300u}) {
      const Matrix x = test::random_normal_matrix(n, cols, 50 + n);
      Matrix expect(n, rows);
      reference->forward(x.data(), n, expect.data());
      std::optional<Matrix> first_level;
      for (SimdLevel level : {SimdLevel::scalar, SimdLevel::avx2, SimdLevel::avx512}) {
        if (set_simd_level(level) != level) continue;  // a level this CPU lacks
        // What dispatch runs at this level is what is tested (AVX-512 without VNNI runs the AVX2 kernel).
        const std::string variant = fused->kernel();
        variants.insert(variant);
        if (level == SimdLevel::scalar) CHECK(variant == prefix + "_scalar");
        if (level == SimdLevel::avx2) CHECK(variant == prefix + "_avx2");
        if (level == SimdLevel::avx512) CHECK((variant == prefix + "_avx512_vnni" || variant == prefix + "_avx2"));
        CAPTURE(name);
        CAPTURE(variant);
        CAPTURE(n);
        CAPTURE(to_string(level));
        std::vector<float> y(n * rows + 64, -7.0f);
        fused->forward(x.data(), n, y.data() + 32);
        bool guards = true;
        for (int k = 0; k < 32; ++k) guards = guards && y[k] == -7.0f && y[32 + n * rows + k] == -7.0f;
        CHECK(guards);
        const Eigen::Map<const Matrix> got(y.data() + 32, n, rows);
        CHECK((got - expect).cast<double>().norm() <= tolerance * expect.cast<double>().norm());
        if (!first_level) first_level = got;
        else CHECK((got - *first_level).cast<double>().norm() <= 1e-5 * first_level->cast<double>().norm());
      }
    }
  }
  MESSAGE(prefix << " variants checked against the reference: " << fmt::format("{}", fmt::join(variants, ", ")));
  {  // a non-finite activation gives non-finite outputs, as the reference does, never plausible numbers
    auto q = parse_quantizer("turboquant(bits=4,group=64,rotation=hadamard)");
    const QuantizedMatrix qm = q->quantize(w.data(), rows, cols, 3);
    Matrix x = test::random_normal_matrix(2, cols, 77);
    x(1, 5) = std::numeric_limits<float>::infinity();
    Matrix got(2, rows);
    make(*q, qm)->forward(x.data(), 2, got.data());
    CHECK(got.row(0).allFinite());
    CHECK(!got.row(1).array().isFinite().any());
  }
}

}  // namespace

TEST_CASE("fused_i8 (int8 activations and table, approximate) matches the reference within 2e-2 at every level, auto never takes it") {
  check_integer_kernel("fused_i8", make_fused_i8_linear, fused_i8_supports, 2e-2);
  CHECK(fused_i8_supports(*parse_quantizer("turboquant(bits=3,group=32)")).find("fused_i8 reads 4-bit") != std::string::npos);
  const Matrix w = test::random_normal_matrix(16, 64, 4);
  auto q = parse_quantizer("turboquant(bits=4,group=64,rotation=hadamard)");
  const QuantizedMatrix qm = q->quantize(w.data(), 16, 64, 3);
  CHECK(make_linear("auto", *q, qm)->kernel().rfind("fused_i16", 0) == 0);
  CHECK(make_linear("fused_i8", *q, qm)->kernel().rfind("fused_i8", 0) == 0);
}

TEST_CASE("fused_i16 (14-bit integer activations) matches the reference within 2e-3 at every level") {
  check_integer_kernel("fused_i16", make_fused_i16_linear, fused_i16_supports, 2e-3);
  CHECK(fused_i16_supports(*parse_quantizer("turboquant(bits=3,group=32)")).find("4-bit") != std::string::npos);
  CHECK(fused_i16_supports(*parse_quantizer("turboquant(bits=4,group=row)")).find("multiple of 32") != std::string::npos);
  CHECK(fused_i16_supports(*parse_quantizer("residual(stack=4+2,group=32)")).find("4-bit") != std::string::npos);
  CHECK(fused_i16_supports(*parse_quantizer("qjl(group=32)")).find("QJL") != std::string::npos);
}
