// The decode description (quantizers/decode.hpp) and the rotation stage (quantizers/rotated.hpp): the
// description rebuilds every describable format's reference weights; rotated(Q) is an ordinary format that
// every kernel reads; kernels/ holds no family names.
#include <doctest/doctest.h>

#include <fmt/format.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "common/error.hpp"
#include "common/float_format.hpp"
#include "eval/layer_quantization.hpp"
#include "kernels/cuda/gpu.hpp"
#include "kernels/registry.hpp"
#include "kernels/cpu/fused_i16.hpp"
#include "kernels/cpu/fused_lut.hpp"
#include "kernels/cuda/lut_mma_layout.hpp"
#include "kernels/linear.hpp"
#include "kernels/lut_plan.hpp"
#include "quantizers/bitpack.hpp"
#include "quantizers/registry.hpp"
#include "test_util.hpp"

using namespace tqb;

namespace {

// Ŵ from the decode description alone: per pass and group, T_jᵀ (a·lut[code] + b), summed over passes.
Matrix weights_from_description(const std::vector<DecodePass>& passes, std::size_t rows, std::size_t cols) {
  Matrix w = Matrix::Zero(rows, cols);
  for (const DecodePass& s : passes) {
    std::vector<std::uint8_t> codes(rows * s.groups * s.m);
    unpack_codes(s.codes, codes.size(), s.bits, codes.data());
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t j = 0; j < s.groups; ++j) {
        std::vector<float> v(s.m);
        const float a = s.a[r * s.groups + j], b = s.b.empty() ? 0.0f : s.b[r * s.groups + j];
        for (std::size_t i = 0; i < s.m; ++i) v[i] = a * s.lut.at(codes[(r * s.groups + j) * s.m + i]) + b;
        if (s.transform == GroupTransform::gaussian_projection) {
          const std::vector<float>& S = *s.projections.at(j);  // m × g: Ŵ_j = Sᵀ v
          for (std::size_t k = 0; k < s.g; ++k) {
            double acc = 0;
            for (std::size_t i = 0; i < s.m; ++i) acc += static_cast<double>(S[i * s.g + k]) * v[i];
            w(r, j * s.g + k) += static_cast<float>(acc);
          }
          continue;
        }
        if (!s.rotations.empty()) s.rotations.at(j)->inverse(v.data(), 1, s.g);
        for (std::size_t k = 0; k < s.g; ++k) w(r, j * s.g + k) += v[k];
      }
  }
  return w;
}

}  // namespace

TEST_CASE("the decode description rebuilds the reference dequantizer of every describable format") {
  const std::size_t rows = 37, cols = 192;
  const Matrix w = test::random_normal_matrix(rows, cols, 3);
  for (const std::string name :
       {"rtn(bits=3,group=32,mode=sym)", "rtn(bits=4,group=row,mode=asym,scale=bf16)",
        "turboquant(bits=4,group=64,rotation=hadamard)", "turboquant(bits=2,group=row,rotation=haar,norm=fp16)",
        "turboquant(bits=3,group=32,rotation=none,codebook=beta)", "qjl(sketch=2d,group=64)", "turboquant_prod(bits=3,group=32)",
        "residual(stack=4+2,group=64,rotation=hadamard)", "rotated(rtn(bits=4,group=64,mode=asym))",
        "rotated(quantizer=rtn(bits=3,group=32),rotation=haar)", "rotated(residual(stack=rtn(bits=4,group=32)+rtn(bits=2,group=32)))"}) {
    CAPTURE(name);
    auto q = parse_quantizer(name);
    const auto form = q->decode_form();
    REQUIRE_FALSE(form.empty());
    const QuantizedMatrix qm = q->quantize(w.data(), rows, cols, 9);
    const auto passes = decode_passes(*q, qm);
    REQUIRE(passes.size() == form.size());
    for (std::size_t k = 0; k < passes.size(); ++k) {
      CHECK(passes[k].bits == form[k].bits);
      CHECK(passes[k].transform == form[k].transform);
      CHECK(passes[k].b.empty() == !form[k].has_offset);
      CHECK(passes[k].g == (form[k].group == 0 ? cols : static_cast<std::size_t>(form[k].group)));
    }
    Matrix expect(rows, cols);
    q->dequantize(qm, expect.data());
    const Matrix got = weights_from_description(passes, rows, cols);
    CHECK((got - expect).norm() <= 1e-5 * expect.norm());
  }
  // Formats without a per-group description say so; kernels refuse them by it.
  for (const std::string name : {"q4_K", "iq4_nl", "none", "residual(stack=none()+4)"}) {
    CAPTURE(name);
    auto q = parse_quantizer(name);
    CHECK(q->decode_form().empty());
    CHECK_THROWS_AS(decode_passes(*q, q->quantize(w.data(), rows, 256 <= cols ? 256 : cols, 1)), std::invalid_argument);
  }
}

TEST_CASE("rotated(Q): names round-trip, positional form, refusals, and what the rotation buys on outliers") {
  auto q = parse_quantizer("rotated(rtn(bits=4,group=64))");
  CHECK(q->name() == "rotated(quantizer=rtn(bits=4,group=64,mode=sym,scale=fp16),rotation=hadamard)");
  CHECK(parse_quantizer(q->name())->name() == q->name());
  CHECK(q->uses_seed());
  CHECK(q->nominal_bits(256) == 4);
  for (const auto& [bad, why] : std::vector<std::pair<std::string, std::string>>{
           {"rotated(turboquant(bits=4))", "rotates or projects"},
           {"rotated(qjl(group=32))", "rotates or projects"},
           {"rotated(q4_K)", "no per-group decode description"},
           {"rotated(rotated(rtn))", "rotates or projects"},
           {"rotated(rtn(bits=4),rtn(bits=2))", "only the first argument"},
           {"rotated(rtn(bits=4),rotation=givens)", "rotation"}}) {
    CAPTURE(bad);
    CHECK_THROWS_WITH_AS(parse_quantizer(bad), doctest::Contains(why.c_str()), InputError);
  }
  // Weights with a few outlier input channels (the case rotations are for: QuaRot, QuIP#): absmax RTN
  // spends its grid on the outlier; the rotation spreads it over the group.
  const std::size_t rows = 64, cols = 256;
  Matrix w = test::random_normal_matrix(rows, cols, 5);
  for (std::size_t r = 0; r < rows; ++r) w(r, 17) *= 40.0f, w(r, 150) *= 40.0f;
  auto nmse = [&](const std::string& name) {
    auto qq = parse_quantizer(name);
    Matrix w_hat(rows, cols);
    qq->dequantize(qq->quantize(w.data(), rows, cols, 2), w_hat.data());
    return (w - w_hat).squaredNorm() / w.squaredNorm();
  };
  const double plain = nmse("rtn(bits=4,group=64)"), rotated = nmse("rotated(rtn(bits=4,group=64))");
  MESSAGE(fmt::format("nmse with outlier channels: rtn {:.4g}, rotated(rtn) {:.4g}", plain, rotated));
  CHECK(rotated < 0.5 * plain);
}

TEST_CASE("every kernel reads rotated(Q) through the decode description and matches the reference") {
  const std::size_t rows = 96, cols = 256;
  const Matrix w = test::random_normal_matrix(rows, cols, 6);
  const Matrix x = test::random_normal_matrix(5, cols, 7);
  for (const std::string name : {"rotated(rtn(bits=4,group=64))", "rotated(rtn(bits=4,group=128,mode=asym))",
                                 "rotated(quantizer=rtn(bits=3,group=32),rotation=haar)",
                                 "rotated(residual(stack=rtn(bits=4,group=64)+rtn(bits=4,group=64)))"}) {
    CAPTURE(name);
    auto q = parse_quantizer(name);
    const QuantizedMatrix qm = q->quantize(w.data(), rows, cols, 4);
    Matrix expect(x.rows(), rows), got(x.rows(), rows);
    make_dequantized_linear(*q, qm)->forward(x.data(), x.rows(), expect.data());
    REQUIRE(fused_lut_supports(*q).empty());
    make_fused_lut_linear(*q, qm)->forward(x.data(), x.rows(), got.data());
    CHECK((got - expect).norm() <= 1e-5 * expect.norm());
    const bool four_bit = name.find("bits=3") == std::string::npos;
    CHECK(fused_i16_supports(*q).empty() == four_bit);
    if (four_bit) {
      make_fused_i16_linear(*q, qm)->forward(x.data(), x.rows(), got.data());
      CHECK((got - expect).norm() <= 2e-3 * expect.norm());
    }
    // The GPU layout: Hadamard-rotated passes of 2-4 bits are its formats, Haar is not.
    CHECK(lut_mma_supports(*q).empty() == (name.find("haar") == std::string::npos));
  }
}

TEST_CASE("kernels/ compares no quantizer family names: it reads the decode description") {
  // A string comparison or switch on a family ("rtn", "turboquant", "qjl", ...) in a kernel would restate
  // what the quantizer's decode description says.
  const std::regex family_compare(
      R"re((==|!=)\s*"(rtn|turboquant|turboquant_prod|qjl|residual|rotated|q\d_\w+|iq4_nl)"|"(rtn|turboquant|turboquant_prod|qjl|residual|rotated)"\s*(==|!=))re");
  int files = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(test::kSourceDir + "/kernels")) {
    const std::string ext = e.path().extension().string();
    if (ext != ".cpp" && ext != ".hpp" && ext != ".cu" && ext != ".cuh") continue;
    ++files;
    std::ifstream in(e.path());
    std::string line;
    for (int n = 1; std::getline(in, line); ++n) {
      const bool hit = std::regex_search(line, family_compare);
      CHECK_MESSAGE(!hit, e.path().string() << ":" << n << ": " << line);
    }
  }
  CHECK(files > 10);
}

namespace {

// rotated(rtn) formats the GPU layout reads (Hadamard, 2-4 bits, groups of 32-256, stacks of two).
const std::vector<std::string> kRotatedGpuFormats = {"rotated(rtn(bits=4,group=64))", "rotated(rtn(bits=3,group=128,mode=asym))",
                                                     "rotated(residual(stack=rtn(bits=4,group=32)+rtn(bits=2,group=32)))"};

}  // namespace

TEST_CASE("the GPU layout reads rotated(rtn) from its description: host emulation within the bf16 bound") {
  const std::size_t rows = 53, cols = 384, n = 3;
  const Matrix w = test::random_normal_matrix(rows, cols, 8), x = test::random_normal_matrix(n, cols, 9);
  for (const auto& name : kRotatedGpuFormats) {
    CAPTURE(name);
    auto q = parse_quantizer(name);
    REQUIRE(lut_mma_supports(*q).empty());
    const QuantizedMatrix qm = q->quantize(w.data(), rows, cols, 5);
    const LutMmaLayout L = make_lut_mma_layout(*q, qm);
    const auto ref = test::bf16_reference(*q, qm, x);
    std::vector<float> y(n * rows), mag(n * rows);
    lut_mma_emulate(L, x.data(), n, y.data(), mag.data(), LutMmaArith::bf16_decode);
    double worst = 0;
    for (std::size_t i = 0; i < y.size(); ++i)  // tests/test_cuda.cpp derives the bound
      worst = std::max(worst, std::fabs(y[i] - ref[i]) / ((4.5 / 256 + cols * std::ldexp(1.0, -23)) * mag[i] + 1e-30));
    CHECK(worst <= 1.0);
  }
}

TEST_CASE("cuda_lut_mma runs rotated(rtn) on a GPU through the registry") {
  if (const std::string why = gpu::unavailable_reason(); !why.empty()) {
    MESSAGE("SKIPPED: needs a GPU: " << why);
    return;
  }
  const std::size_t rows = 300, cols = 1024;
  const Matrix w = test::random_normal_matrix(rows, cols, 10);
  for (const auto& name : kRotatedGpuFormats) {
    CAPTURE(name);
    auto q = parse_quantizer(name);
    const QuantizedMatrix qm = q->quantize(w.data(), rows, cols, 6);
    const auto gpu_layer = make_linear("cuda_lut_mma", *q, qm);
    for (std::size_t n : {1u, 16u, 128u}) {
      CAPTURE(n);
      const Matrix x = test::random_normal_matrix(n, cols, 20 + n);
      Matrix got(n, rows);
      gpu_layer->forward(x.data(), n, got.data());
      const auto ref = test::bf16_reference(*q, qm, x);
      double err = 0, norm = 0;
      for (std::size_t i = 0; i < ref.size(); ++i) {
        err += (got.data()[i] - ref[i]) * (got.data()[i] - ref[i]);
        norm += ref[i] * ref[i];
      }
      MESSAGE(name << " n=" << n << ": rel err vs reference " << std::sqrt(err / norm));
      CHECK(std::sqrt(err / norm) < 1e-2);
    }
  }
}

TEST_CASE("a layer whose width the group does not divide: an error naming it, or with halve the group below, inside rotated(...) too") {
  // SmolLM2's 576 = 4.5 x 128: with halve, rtn g128 runs such layers at g64, and so does the rtn inside rotated.
  auto q = parse_quantizer("rotated(rtn(bits=4,group=128))");
  const auto fallback = quantizer_for_layer(*q, "blk.0.attn_q.weight", 8, 576, GroupFallback::halve);
  CHECK(fallback->name() == "rotated(quantizer=rtn(bits=4,group=64,mode=sym,scale=fp16),rotation=hadamard)");
  CHECK(quantizer_for_layer(*q, "w", 8, 512, GroupFallback::none)->name() == q->name());
  CHECK_THROWS_WITH_AS(quantizer_for_layer(*q, "blk.0.attn_q.weight", 8, 576, GroupFallback::none),
                       doctest::Contains("layer blk.0.attn_q.weight is 8 x 576"), InputError);
  CHECK_THROWS_WITH_AS(quantizer_for_layer(*parse_quantizer("turboquant(bits=2,group=32)"), "blk.0.ffn_down.weight", 64, 172,
                                           GroupFallback::none),
                       doctest::Contains("group_fallback: halve"), InputError);
  // No power-of-two group of 4 or more divides 6.
  CHECK_THROWS_WITH_AS(quantizer_for_layer(*q, "w", 8, 6, GroupFallback::halve), doctest::Contains("cannot quantize layer w"), InputError);
}
