// GPTQ (quantizers/gptq.hpp) against an independent straightforward implementation of the paper's update (Frantar et
// al. 2022, Eq. 2-3: the OBQ step with the inverse Hessian updated by removing each quantized column, no Cholesky, no
// batches), against RTN on the same grid and, for a tiny problem, against the exact optimum over every code choice.
#include <doctest/doctest.h>

#include <fmt/format.h>

#include <cmath>
#include <functional>

#include "common/error.hpp"
#include <filesystem>

#include "eval/calibration.hpp"
#include "eval/layer_quantization.hpp"
#include "kernels/lut_plan.hpp"
#include "models/checkpoint.hpp"
#include "quantizers/gptq.hpp"
#include "quantizers/registry.hpp"
#include "test_util.hpp"

using namespace tqb;

namespace {

// Inputs with correlated columns (a random mixing of independent ones), so that error feedback has something to use.
Eigen::MatrixXd calibration(std::size_t samples, std::size_t cols, std::uint64_t seed) {
  const Matrix z = test::random_normal_matrix(samples, cols, seed), m = test::random_normal_matrix(cols, cols, seed + 1);
  return (z.cast<double>() * (Eigen::MatrixXd::Identity(cols, cols) + 0.3 * m.cast<double>()));
}

Matrix dequantized(const Quantizer& q, const QuantizedMatrix& m) {
  Matrix out(m.rows, m.cols);
  q.dequantize(m, out.data());
  return out;
}

double output_error(const Matrix& w, const Matrix& w_hat, const Eigen::MatrixXd& X) {
  return ((w.cast<double>() - w_hat.cast<double>()) * X.transpose()).squaredNorm();
}

// The paper's step, written out: q = nearest grid value of w_i; the columns F not yet quantized take
// −(w_i − q) / [H⁻¹]_ii · [H⁻¹]_{i,F}; H⁻¹ loses row and column i (Gaussian elimination). Grid: rtn's static grid
// (scale per row and group, symmetric levels).
Matrix straightforward_gptq(const Matrix& w, const Eigen::MatrixXd& X, const Quantizer& rtn, double damp) {
  const QuantizedMatrix grid = rtn.quantize(w.data(), w.rows(), w.cols(), 0);
  const auto passes = decode_passes(rtn, grid);
  const DecodePass& s = passes.front();
  Eigen::MatrixXd H = X.transpose() * X;
  H.diagonal().array() += damp * H.diagonal().mean();
  Eigen::MatrixXd Hinv = H.inverse(), W = w.cast<double>();
  const Eigen::Index C = w.cols();
  Matrix out(w.rows(), C);
  for (Eigen::Index i = 0; i < C; ++i) {
    for (Eigen::Index r = 0; r < w.rows(); ++r) {
      const std::size_t at = static_cast<std::size_t>(r) * s.groups + static_cast<std::size_t>(i) / s.g;
      double best = INFINITY, qv = 0;
      for (float l : s.lut)
        if (const double v = s.a[at] * l + (s.b.empty() ? 0.0 : s.b[at]); std::fabs(v - W(r, i)) < best) {
          best = std::fabs(v - W(r, i));
          qv = v;
        }
      out(r, i) = static_cast<float>(qv);
      const double e = (W(r, i) - qv) / Hinv(i, i);
      for (Eigen::Index k = i + 1; k < C; ++k) W(r, k) -= e * Hinv(i, k);
    }
    const Eigen::VectorXd col = Hinv.col(i);
    Hinv -= col * col.transpose() / col(i);
  }
  return out;
}

}  // namespace

TEST_CASE("gptq equals the paper's step written out, whatever the lazy batch; its output error is below RTN's") {
  const std::size_t rows = 24, cols = 96;
  const Matrix w = test::random_normal_matrix(rows, cols, 5);
  const Eigen::MatrixXd X = calibration(512, cols, 7), H = X.transpose() * X;
  const auto rtn = parse_quantizer("rtn(bits=3,group=32,mode=sym)");
  const Matrix want = straightforward_gptq(w, X, *rtn, 0.01);
  for (int block : {1, 8, 32, 128}) {
    CAPTURE(block);
    const Matrix got = dequantized(*rtn, gptq_quantize(*rtn, w.data(), rows, cols, H, 0, {.damp = 0.01, .block = block}));
    CHECK((got - want).cwiseAbs().maxCoeff() < 1e-5f);
  }
  // Every wrapped format: the layer's output error on the calibration inputs drops below plain rounding on the same grid.
  for (const std::string name : {"rtn(bits=4,group=32,mode=asym)", "rtn(bits=2,group=row)", "turboquant(bits=3,group=32,rotation=hadamard)",
                                 "turboquant(bits=2,group=row,rotation=haar)", "rotated(rtn(bits=3,group=32))"}) {
    CAPTURE(name);
    const auto q = parse_quantizer(name);
    const Matrix plain = dequantized(*q, q->quantize(w.data(), rows, cols, 3));
    for (bool act_order : {false, true}) {
      const Matrix g = dequantized(*q, gptq_quantize(*q, w.data(), rows, cols, H, 3, {.act_order = act_order}));
      const double e_gptq = output_error(w, g, X), e_rtn = output_error(w, plain, X);
      MESSAGE(fmt::format("{}{}: output error gptq {:.4g}, plain {:.4g} ({:.1f}% less)", name, act_order ? " act_order" : "", e_gptq, e_rtn,
                          100 * (1 - e_gptq / e_rtn)));
      CHECK(e_gptq < e_rtn);
    }
  }
}

TEST_CASE("gptq on a tiny problem lies between the exact optimum on its grid and plain rounding") {
  const std::size_t cols = 6;
  const Matrix w = test::random_normal_matrix(1, cols, 11);
  const Eigen::MatrixXd X = calibration(64, cols, 13), H = X.transpose() * X;
  const auto rtn = parse_quantizer("rtn(bits=2,group=row,mode=asym)");
  const QuantizedMatrix grid = rtn->quantize(w.data(), 1, cols, 0);
  const DecodePass s = decode_passes(*rtn, grid).front();
  // Every one of 4^6 code choices on the same grid.
  double exact = INFINITY;
  std::vector<int> c(cols, 0);
  std::function<void(std::size_t)> search = [&](std::size_t i) {
    if (i == cols) {
      Matrix v(1, cols);
      for (std::size_t k = 0; k < cols; ++k) v(0, k) = s.a[0] * s.lut[c[k]] + s.b[0];
      exact = std::min(exact, output_error(w, v, X));
      return;
    }
    for (c[i] = 0; c[i] < static_cast<int>(s.lut.size()); ++c[i]) search(i + 1);
  };
  search(0);
  const double gptq = output_error(w, dequantized(*rtn, gptq_quantize(*rtn, w.data(), 1, cols, H, 0, {.damp = 1e-6})), X);
  const double plain = output_error(w, dequantized(*rtn, grid), X);
  MESSAGE(fmt::format("tiny problem: exact {:.4g}, gptq {:.4g} ({:.2f}x the exact), plain rounding {:.4g}", exact, gptq, gptq / exact, plain));
  CHECK(exact <= gptq * (1 + 1e-9));
  CHECK(gptq <= plain);
}

TEST_CASE("gptq: bad options, Hessians and formats are errors naming them") {
  const Matrix w = test::random_normal_matrix(4, 64, 1);
  const Eigen::MatrixXd H = Eigen::MatrixXd::Identity(64, 64);
  const auto rtn = parse_quantizer("rtn(bits=4,group=32)");
  CHECK_THROWS_WITH_AS(gptq_quantize(*rtn, w.data(), 4, 64, H, 0, {.damp = 0}), doctest::Contains("damp 0 must be in (0, 1]"), InputError);
  CHECK_THROWS_WITH_AS(gptq_quantize(*rtn, w.data(), 4, 64, H, 0, {.block = 0}), doctest::Contains("block 0"), InputError);
  CHECK_THROWS_WITH_AS(gptq_quantize(*rtn, w.data(), 4, 64, Eigen::MatrixXd::Identity(32, 32), 0), doctest::Contains("needs 64 x 64"),
                       InputError);
  Eigen::MatrixXd bad = H;
  bad(3, 3) = NAN;
  CHECK_THROWS_WITH_AS(gptq_quantize(*rtn, w.data(), 4, 64, bad, 0), doctest::Contains("non-finite"), InputError);
  for (const char* name : {"q4_K", "qjl(group=32)", "residual(stack=4+2,group=32)"}) {
    CAPTURE(name);
    const Matrix w256 = test::random_normal_matrix(4, 256, 1);
    CHECK_THROWS_WITH_AS(gptq_quantize(*parse_quantizer(name), w256.data(), 4, 256, Eigen::MatrixXd::Identity(256, 256), 0),
                         doctest::Contains("gptq wraps a quantizer of one pass"), InputError);
  }
  // A dead input column (never non-zero): no compensation through it, and no failure.
  Eigen::MatrixXd dead = H;
  dead(5, 5) = 0;
  CHECK_NOTHROW(gptq_quantize(*rtn, w.data(), 4, 64, dead, 0));
}

TEST_CASE("calibration statistics: each layer's Σ xᵀx and mean |x| over the calibration positions, from the model's forward") {
  const Checkpoint ck = load_checkpoint((std::filesystem::path(test::kSourceDir) / "tests/fixtures/hf/llama").string());
  const std::size_t ctx = 16;
  const std::vector<int> tokens = test::seeded_tokens(2 * ctx, ck.config.vocab, 4);
  const auto stats = collect_layer_statistics(ck, tokens, ctx);
  REQUIRE(stats.size() == 7 * static_cast<std::size_t>(ck.config.n_layers));
  const LayerStatistics& q = stats.at("blk.0.attn_q.weight");
  CHECK(q.samples == 2 * ctx);
  CHECK((q.hessian - q.hessian.transpose()).cwiseAbs().maxCoeff() == 0);
  // q, k and v read one input; gate and up another.
  CHECK(stats.at("blk.0.attn_k.weight").hessian == q.hessian);
  CHECK(stats.at("blk.1.ffn_up.weight").hessian == stats.at("blk.1.ffn_gate.weight").hessian);
  // Layer 0's attention input by hand: RMSNorm of the embedded tokens.
  const Matrix& table = ck.tensor("token_embd.weight");
  const Matrix& norm = ck.tensor("blk.0.attn_norm.weight");
  const auto d = table.cols();
  Eigen::MatrixXd X(static_cast<Eigen::Index>(tokens.size()), d);
  for (std::size_t t = 0; t < tokens.size(); ++t) {
    const Eigen::VectorXd e = table.row(tokens[t]).cast<double>().transpose() * ck.config.embed_scale;
    const double s = 1.0 / std::sqrt(e.squaredNorm() / static_cast<double>(d) + ck.config.norm_eps);
    X.row(static_cast<Eigen::Index>(t)) = (e * s).cwiseProduct(norm.row(0).cast<double>().transpose()).transpose();
  }
  const Eigen::MatrixXd H = X.transpose() * X;
  CHECK((q.hessian - H).cwiseAbs().maxCoeff() <= 1e-4 * H.cwiseAbs().maxCoeff());
  CHECK((q.mean_abs - X.cwiseAbs().colwise().mean().transpose()).cwiseAbs().maxCoeff() <= 1e-5 * X.cwiseAbs().maxCoeff());
  CHECK_THROWS_WITH_AS(collect_layer_statistics(ck, tokens, 15), doctest::Contains("whole chunks of 15"), InputError);
  CHECK_THROWS_WITH_AS(collect_layer_statistics(ck, tokens, ctx, "nothing"), doctest::Contains("selects no linear layer"), InputError);
}

TEST_CASE("gptq(Q) in the registry: the name round-trips, Q's format and kernels, and it asks for calibration where none is given") {
  const auto g = parse_quantizer("gptq(rtn(bits=4,group=32),act_order=on)");
  CHECK(g->name() == "gptq(quantizer=rtn(bits=4,group=32,mode=sym,scale=fp16),damp=0.01,block=128,act_order=on)");
  CHECK(parse_quantizer(g->name())->name() == g->name());
  CHECK(g->needs_calibration());
  CHECK(g->decode_form().size() == 1);
  const Matrix w = test::random_normal_matrix(8, 64, 2);
  CHECK_THROWS_WITH_AS(g->quantize(w.data(), 8, 64, 0), doctest::Contains("needs calibration data"), InputError);
  CHECK_THROWS_WITH_AS(quantize_layer(*g, "blk.0.attn_q.weight", w, 0, GroupFallback::none), doctest::Contains("no calibration statistics"),
                       InputError);
  const Eigen::MatrixXd X = calibration(128, 64, 3), H = X.transpose() * X;
  const QuantizedLayer l = quantize_layer(*g, "blk.0.attn_q.weight", w, 0, GroupFallback::none, &H);
  CHECK(l.matrix.format == g->name());
  CHECK(dequantized(*l.quantizer, l.matrix).allFinite());
  CHECK_THROWS_WITH_AS(parse_quantizer("gptq(q4_K)"), doctest::Contains("gptq wraps a quantizer of one pass"), InputError);
  CHECK_THROWS_WITH_AS(parse_quantizer("gptq(rtn,damp=0)"), doctest::Contains("damp"), InputError);
}

TEST_CASE("tqbench perplexity and generate with gptq: calibrated on the corpus' end, overlap and bad flags refused naming them") {
  const std::string model = (std::filesystem::path(test::kSourceDir) / "tests/fixtures/gguf/qwen2.gguf").string();
  const std::string corpus = (std::filesystem::path(test::kSourceDir) / "README.md").string();
  const std::string base = "perplexity --model '" + model + "' --corpus '" + corpus + "' --ctx 64 --quantizer 'gptq(rtn(bits=4,group=32))' ";
  auto r = test::run_tqbench(base + "--chunks 2 --calibration-chunks 2 --calibration-ctx 64");
  REQUIRE_MESSAGE(r.exit_code == 0, r.output);
  CHECK(r.output.find("calibrated on the last 2 chunks of 64 tokens of") != std::string::npos);
  // Every chunk scored (--chunks 0): no text is left to calibrate on.
  r = test::run_tqbench(base + "--chunks 0");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("--calibration-chunks 16 of 512 tokens need 8192 tokens of") != std::string::npos);
  CHECK(r.output.find("the evaluation does not read; it has 0") != std::string::npos);
  r = test::run_tqbench(base + "--chunks 2 --calibration-chunks 0");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("--calibration-chunks") != std::string::npos);
  r = test::run_tqbench("generate --model '" + model + "' --prompt-file /nonexistent/prompt.txt");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("/nonexistent/prompt.txt") != std::string::npos);
  r = test::run_tqbench("generate --model '" + model + "' --quantizer 'gptq(rtn(bits=4,group=32))'");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("needs calibration text (--calibration-corpus)") != std::string::npos);
}
