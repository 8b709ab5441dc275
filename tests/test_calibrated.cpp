// Calibrated quantization (issue 30). GPTQ (quantizers/gptq.hpp) against an independent straightforward implementation
// of the paper's update (Frantar et al. 2022, Eq. 2-3: the OBQ step with the inverse Hessian updated by removing each
// quantized column, no Cholesky, no batches), against RTN on the same grid and, for a tiny problem, against the exact
// optimum over every code choice; AWQ (quantizers/awq.hpp) against its α grid written out; the calibration statistics
// (eval/calibration.hpp) in both orders; the spec, CLI and export paths.
#include <doctest/doctest.h>

#include <fmt/format.h>

#include <cmath>
#include <functional>

#include <omp.h>

#include "common/error.hpp"
#include <filesystem>

#include "eval/calibration.hpp"
#include "eval/layer_quantization.hpp"
#include "eval/model_eval.hpp"
#include "models/cuda/cuda_forward.hpp"
#include "harness/store.hpp"
#include "kernels/lut_plan.hpp"
#include "models/checkpoint.hpp"
#include "models/gguf.hpp"
#include "models/quantized_safetensors.hpp"
#include "quantizers/awq.hpp"
#include "quantizers/ggml_block_grid.hpp"
#include "quantizers/ggml_formats.hpp"
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
// (scale per row and group, symmetric levels): static, rtn's on w; dynamic, rtn's on each group's g columns of the updated
// weights when the group's first column comes up.
Matrix straightforward_gptq(const Matrix& w, const Eigen::MatrixXd& X, const Quantizer& rtn, double damp, bool dynamic) {
  const QuantizedMatrix grid = rtn.quantize(w.data(), w.rows(), w.cols(), 0);
  DecodePass s = rtn.search_grid(grid);
  Eigen::MatrixXd H = X.transpose() * X;
  H.diagonal().array() += damp * H.diagonal().mean();
  Eigen::MatrixXd Hinv = H.inverse(), W = w.cast<double>();
  const Eigen::Index C = w.cols();
  Matrix out(w.rows(), C);
  for (Eigen::Index i = 0; i < C; ++i) {
    // A span of groups set together (a k-quant's super-block) takes its grids at its first column.
    const std::size_t span = s.grid_span;
    if (dynamic && i % static_cast<Eigen::Index>(s.g * span) == 0) {
      const Matrix group = W.middleCols(i, static_cast<Eigen::Index>(s.g * span)).cast<float>();
      const DecodePass gs = rtn.search_grid(rtn.quantize(group.data(), group.rows(), group.cols(), 0));
      for (Eigen::Index r = 0; r < w.rows(); ++r)
        for (std::size_t k = 0; k < span; ++k) {
          const std::size_t at = static_cast<std::size_t>(r) * s.groups + static_cast<std::size_t>(i) / s.g + k, from = static_cast<std::size_t>(r) * span + k;
          s.a[at] = gs.a[from];
          if (!s.b.empty()) s.b[at] = gs.b[from];
        }
    }
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

TEST_CASE("gptq equals the paper's step written out, whatever the lazy batch, its output error is below RTN's") {
  const std::size_t rows = 24, cols = 96;
  const Matrix w = test::random_normal_matrix(rows, cols, 5);
  const Eigen::MatrixXd X = calibration(512, cols, 7), H = X.transpose() * X;
  // rtn's grid from its decode description; llama.cpp's 32-weight blocks from their bytes (d·lut[code] + m).
  for (const std::string name : {"rtn(bits=3,group=32,mode=sym)", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "iq4_nl"}) {
    const auto rtn = parse_quantizer(name);
    for (bool dynamic : {false, true}) {
      const Matrix want = straightforward_gptq(w, X, *rtn, 0.01, dynamic);
      for (int block : {1, 8, 32, 128}) {
        CAPTURE(name);
        CAPTURE(dynamic);
        CAPTURE(block);
        const Matrix got =
            dequantized(*rtn, gptq_quantize(*rtn, w.data(), rows, cols, H, 0, {.damp = 0.01, .block = block, .dynamic_groups = dynamic}));
        CHECK((got - want).cwiseAbs().maxCoeff() < 1e-5f);
      }
    }
  }
  // The k-quants' grids, a super-block of 256 at a time (8 groups of 32, or 16 of 16).
  {
    const std::size_t kr = 6, kc = 512;
    const Matrix wk = test::random_normal_matrix(kr, kc, 8);
    const Eigen::MatrixXd Xk = calibration(1024, kc, 9), Hk = Xk.transpose() * Xk;
    for (const std::string name : {"q2_K", "q3_K", "q4_K", "q5_K", "q6_K"}) {
      const auto kq = parse_quantizer(name);
      const Matrix plain = dequantized(*kq, kq->quantize(wk.data(), kr, kc, 0));
      for (bool dynamic : {false, true}) {
        CAPTURE(name);
        CAPTURE(dynamic);
        const Matrix want = straightforward_gptq(wk, Xk, *kq, 0.01, dynamic);
        const Matrix got = dequantized(*kq, gptq_quantize(*kq, wk.data(), kr, kc, Hk, 0, {.damp = 0.01, .block = 64, .dynamic_groups = dynamic}));
        CHECK((got - want).cwiseAbs().maxCoeff() < 1e-5f);
        const double e_gptq = output_error(wk, got, Xk), e_plain = output_error(wk, plain, Xk);
        MESSAGE(fmt::format("{}{}: output error gptq {:.4g}, plain {:.4g} ({:.1f}% less)", name, dynamic ? " dynamic" : " static", e_gptq,
                            e_plain, 100 * (1 - e_gptq / e_plain)));
        CHECK(e_gptq < e_plain);
      }
    }
  }
  // Every wrapped format: the layer's output error on the calibration inputs drops below plain rounding on the same grid.
  for (const std::string name : {"rtn(bits=4,group=32,mode=asym)", "rtn(bits=2,group=row)", "turboquant(bits=3,group=32,rotation=hadamard)",
                                 "turboquant(bits=2,group=row,rotation=haar)", "rotated(rtn(bits=3,group=32))", "q4_0", "q4_1", "q5_0",
                                 "iq4_nl"}) {
    CAPTURE(name);
    const auto q = parse_quantizer(name);
    const Matrix plain = dequantized(*q, q->quantize(w.data(), rows, cols, 3));
    for (bool act_order : {false, true})
      for (bool dynamic : {false, true}) {
        const Matrix g =
            dequantized(*q, gptq_quantize(*q, w.data(), rows, cols, H, 3, {.act_order = act_order, .dynamic_groups = dynamic}));
        const double e_gptq = output_error(w, g, X), e_rtn = output_error(w, plain, X);
        MESSAGE(fmt::format("{}{}{}: output error gptq {:.4g}, plain {:.4g} ({:.1f}% less)", name, act_order ? " act_order" : "",
                            dynamic ? " dynamic" : " static", e_gptq, e_rtn, 100 * (1 - e_gptq / e_rtn)));
        CHECK(e_gptq < e_rtn);
      }
  }
}

TEST_CASE("gptq's factor of the inverse Hessian is the upper Cholesky factor of H⁻¹, as the reference's three steps give it") {
  for (const auto& [cols, damp] : {std::pair{std::size_t{7}, 1e-2}, std::pair{std::size_t{200}, 1e-2}, std::pair{std::size_t{96}, 1e-6}}) {
    CAPTURE(cols);
    CAPTURE(damp);
    const Eigen::MatrixXd X = calibration(cols + 50, cols, 17);
    Eigen::MatrixXd H = X.transpose() * X;
    H.diagonal().array() += damp * H.diagonal().mean();
    const Eigen::MatrixXd U = inverse_hessian_factor(H);
    // The reference implementation's steps: a Cholesky, H⁻¹, a Cholesky of H⁻¹ (upper).
    const Eigen::MatrixXd Hinv = Eigen::LLT<Eigen::MatrixXd>(H).solve(Eigen::MatrixXd::Identity(H.rows(), H.cols()));
    const Eigen::MatrixXd want = Eigen::LLT<Eigen::MatrixXd>(Hinv).matrixU();
    CHECK(U.triangularView<Eigen::StrictlyLower>().toDenseMatrix().cwiseAbs().maxCoeff() == 0.0);
    CHECK((U - want).norm() <= 1e-9 * want.norm());
    CHECK((U.transpose() * U * H - Eigen::MatrixXd::Identity(H.rows(), H.cols())).cwiseAbs().maxCoeff() < 1e-6);
  }
  // Its blocks of columns run on OpenMP's threads: the bits do not depend on how many (codes are the same on every
  // machine).
  {
    const Eigen::MatrixXd X = calibration(400, 300, 19);
    const Eigen::MatrixXd H = X.transpose() * X + 0.01 * Eigen::MatrixXd::Identity(300, 300);
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    const Eigen::MatrixXd one = inverse_hessian_factor(H);
    omp_set_num_threads(std::max(3, threads));
    const Eigen::MatrixXd many = inverse_hessian_factor(H);
    omp_set_num_threads(threads);
    CHECK(one == many);
  }
  Eigen::MatrixXd singular = Eigen::MatrixXd::Zero(4, 4);
  singular(0, 0) = 1;
  CHECK_THROWS_WITH_AS(inverse_hessian_factor(singular), doctest::Contains("not positive definite"), InputError);
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
  const double gptq = output_error(w, dequantized(*rtn, gptq_quantize(*rtn, w.data(), 1, cols, H, 0, {.damp = 1e-6, .dynamic_groups = false})), X);
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
  for (const char* name : {"qjl(group=32)", "residual(stack=4+2,group=32)"}) {
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

TEST_CASE("llama.cpp's blocks as a grid: a·lut[code] + b is the format's dequantization, codes written back are its bytes, every format") {
  const std::size_t rows = 5, cols = 512;
  const Matrix w = test::random_normal_matrix(rows, cols, 21);
  for (const std::string name : {"q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "iq4_nl", "q2_K", "q3_K", "q4_K", "q5_K", "q6_K"}) {
    CAPTURE(name);
    const auto q = parse_quantizer(name);
    REQUIRE(q->search_form().size() == 1);
    QuantizedMatrix m = q->quantize(w.data(), rows, cols, 0);
    const DecodePass s = q->search_grid(m);
    CHECK(static_cast<std::int64_t>(s.g) == q->search_form().front().group);
    CHECK(s.g * s.grid_span == ggml_format_of(*q, cols)->block);
    CHECK(s.lut.size() == (std::size_t{1} << s.bits));
    const GgmlBlockFormat& f = *ggml_format_of(*q, cols);
    std::vector<std::uint8_t> codes(rows * cols);
    ggml_block_codes(f, m.codes.data(), rows, cols, codes.data());
    // The grid reproduces the format's dequantization of its own bytes.
    auto on_grid = [&](const std::vector<std::uint8_t>& c) {
      Matrix v(static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols));
      for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t k = 0; k < cols; ++k) {
          const std::size_t at = r * s.groups + k / s.g;
          v(static_cast<Eigen::Index>(r), static_cast<Eigen::Index>(k)) = s.a[at] * s.lut[c[r * cols + k]] + (s.b.empty() ? 0.0f : s.b[at]);
        }
      return v;
    };
    const Matrix plain = dequantized(*q, m);
    CHECK((on_grid(codes) - plain).cwiseAbs().maxCoeff() <= 1e-6f * plain.cwiseAbs().maxCoeff());
    // Its own codes written back leave the bytes as they were; other codes land on the same grid, scales untouched.
    const std::vector<std::uint8_t> before = m.codes;
    q->set_grid_codes(m, codes.data());
    CHECK(m.codes == before);
    Rng rng(4);
    for (auto& c : codes) c = static_cast<std::uint8_t>(rng.next_u64() % s.lut.size());
    q->set_grid_codes(m, codes.data());
    std::vector<std::uint8_t> back(rows * cols);
    ggml_block_codes(f, m.codes.data(), rows, cols, back.data());
    CHECK(back == codes);
    const Matrix moved = dequantized(*q, m);
    CHECK((moved - on_grid(codes)).cwiseAbs().maxCoeff() <= 1e-6f * moved.cwiseAbs().maxCoeff());
    CHECK(q->search_grid(m).a == s.a);
  }
  for (const std::string name : {"none", "residual(stack=4+2,group=32)"}) CHECK(parse_quantizer(name)->search_form().empty());
  const std::string name = parse_quantizer("gptq(q4_0)")->name();
  CHECK(name == "gptq(quantizer=q4_0(),damp=0.01,block=128,act_order=off,groups=dynamic)");
  CHECK(parse_quantizer(name)->name() == name);
}

TEST_CASE("gptq(Q) in the registry: the name round-trips, Q's format and kernels, and it asks for calibration where none is given") {
  const auto g = parse_quantizer("gptq(rtn(bits=4,group=32),act_order=on)");
  CHECK(g->name() == "gptq(quantizer=rtn(bits=4,group=32,mode=sym,scale=fp16),damp=0.01,block=128,act_order=on,groups=dynamic)");
  CHECK(parse_quantizer(g->name())->name() == g->name());
  CHECK(g->needs_calibration());
  CHECK(g->decode_form().size() == 1);
  const Matrix w = test::random_normal_matrix(8, 64, 2);
  CHECK_THROWS_WITH_AS(g->quantize(w.data(), 8, 64, 0), doctest::Contains("needs calibration data"), InputError);
  CHECK_THROWS_WITH_AS(quantize_layer(*g, "blk.0.attn_q.weight", w, 0, GroupFallback::none), doctest::Contains("no calibration statistics"),
                       InputError);
  const Eigen::MatrixXd X = calibration(128, 64, 3), H = X.transpose() * X;
  const InputStatistics inputs{H, X.cwiseAbs().colwise().mean().transpose(), 128};
  const QuantizedLayer l = quantize_layer(*g, "blk.0.attn_q.weight", w, 0, GroupFallback::none, &inputs);
  CHECK(l.matrix.format == g->name());
  CHECK(dequantized(*l.quantizer, l.matrix).allFinite());
  CHECK_THROWS_WITH_AS(parse_quantizer("gptq(none)"), doctest::Contains("gptq wraps a quantizer of one pass"), InputError);
  CHECK_THROWS_WITH_AS(parse_quantizer("gptq(rtn,damp=0)"), doctest::Contains("damp"), InputError);
}

TEST_CASE("tqbench perplexity and generate with gptq: calibrated on the corpus' end, overlap and bad flags refused naming them") {
  const std::string model = (std::filesystem::path(test::kSourceDir) / "tests/fixtures/gguf/qwen2.gguf").string();
  const std::string corpus = (std::filesystem::path(test::kSourceDir) / "README.md").string();
  const std::string base = "perplexity --model '" + model + "' --corpus '" + corpus + "' --ctx 64 --quantizer 'gptq(rtn(bits=4,group=32))' ";
  auto r = test::run_tqbench(base + "--chunks 2 --calibration-chunks 2 --calibration-ctx 64");
  REQUIRE_MESSAGE(r.exit_code == 0, r.output);
  CHECK(r.output.find("calibrated on the last 2 chunks of 64 tokens of") != std::string::npos);
  CHECK(r.output.find(", sequential (") != std::string::npos);
  // Every chunk scored (--chunks 0): no text is left to calibrate on.
  r = test::run_tqbench(base + "--chunks 0");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("calibration: 16 chunks of 512 tokens need 8192 tokens of") != std::string::npos);
  CHECK(r.output.find("the evaluation does not read; it has 0") != std::string::npos);
  // Named as the calibration text, the evaluated corpus is held to the same rule.
  r = test::run_tqbench(base + "--chunks 0 --calibration-corpus '" + corpus + "'");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("the evaluation does not read; it has 0") != std::string::npos);
  r = test::run_tqbench(base + "--chunks 2 --calibration-chunks 0");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("--calibration-chunks") != std::string::npos);
  r = test::run_tqbench("generate --model '" + model + "' --prompt-file /nonexistent/prompt.txt");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("/nonexistent/prompt.txt") != std::string::npos);
  r = test::run_tqbench("generate --model '" + model + "' --quantizer 'gptq(rtn(bits=4,group=32))'");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("needs calibration text (calibration_corpus, --calibration-corpus)") != std::string::npos);
}

TEST_CASE("sequential calibration: block 0 as the independent order's, later blocks after the quantized earlier ones, each quantized once") {
  const Checkpoint ck = load_checkpoint((std::filesystem::path(test::kSourceDir) / "tests/fixtures/hf/llama").string());
  REQUIRE(ck.config.n_layers >= 2);
  const std::size_t ctx = 16;
  const std::vector<int> tokens = test::seeded_tokens(2 * ctx, ck.config.vocab, 9);
  const LayerSelection all(kBlockLinearLayers, "^$");
  const LayerStatisticsMap independent = collect_layer_statistics(ck, tokens, ctx, all);
  // Layers "quantized" to themselves: the sequential order runs the same arithmetic, block by block.
  std::vector<std::string> calls;
  const LayerStatisticsMap same = collect_layer_statistics(ck, tokens, ctx, all, [&](const std::string& name, const Matrix& w, const LayerStatistics&) {
    calls.push_back(name);
    return w;
  });
  REQUIRE(same.size() == independent.size());
  for (const auto& [name, s] : independent) {
    CAPTURE(name);
    CHECK(same.at(name).samples == s.samples);
    CHECK((same.at(name).hessian - s.hessian).cwiseAbs().maxCoeff() <= 1e-9 * s.hessian.cwiseAbs().maxCoeff());
  }
  // Every layer is quantized once, in block order.
  const std::size_t per_block = 7, blocks = static_cast<std::size_t>(ck.config.n_layers);
  CHECK(calls.size() == per_block * blocks);
  for (std::size_t i = 0; i < calls.size(); ++i) CHECK(calls[i].rfind(fmt::format("blk.{}.", i / per_block), 0) == 0);
  // Coarse "quantization" (weights halved): block 0 sees what it saw, the next block's inputs change.
  const LayerStatisticsMap halved = collect_layer_statistics(ck, tokens, ctx, all, [&](const std::string&, const Matrix& w, const LayerStatistics& st) {
    CHECK(st.samples == tokens.size());  // the statistics of the layer being quantized, complete
    CHECK((st.hessian - st.hessian.transpose()).cwiseAbs().maxCoeff() == 0.0);
    // A mean, not a sum: mean |x| ≤ rms(x) per channel (Jensen).
    CHECK((st.mean_abs.array() <= (st.hessian.diagonal().array() / static_cast<double>(st.samples)).sqrt() * (1 + 1e-9)).all());
    return Matrix(w * 0.5f);
  });
  // calibrate_model keeps the layers it quantized on the way; they are what quantize_layer makes from the final statistics.
  const auto g = parse_quantizer("gptq(rtn(bits=3,group=16))");
  const std::string text = (std::filesystem::path(test::kSourceDir) / "README.md").string();
  const Checkpoint qwen = load_checkpoint((std::filesystem::path(test::kSourceDir) / "tests/fixtures/gguf/qwen2.gguf").string());
  const Calibration cal = calibrate_model(qwen, *g, 7, kBlockLinearLayers, "^$", GroupFallback::none, {.corpus = text, .chunks = 2, .ctx = 16});
  CHECK(cal.quantized.size() == per_block * static_cast<std::size_t>(qwen.config.n_layers));
  CHECK(cal.label.find(", sequential") != std::string::npos);
  for (const auto& [name, l] : cal.quantized) {
    CAPTURE(name);
    const QuantizedLayer again = quantize_layer(*g, name, qwen.tensor(name), 7, GroupFallback::none, &cal.layers.at(name));
    CHECK(again.matrix.codes == l.matrix.codes);
    CHECK(again.matrix.scales == l.matrix.scales);
  }
  const auto differs = [&](const char* layer) {
    return (halved.at(layer).hessian - independent.at(layer).hessian).cwiseAbs().maxCoeff() / independent.at(layer).hessian.cwiseAbs().maxCoeff();
  };
  CHECK(differs("blk.0.attn_q.weight") == 0.0);
  CHECK(differs("blk.0.attn_k.weight") == 0.0);
  CHECK(differs("blk.1.attn_q.weight") > 1e-3);
}

TEST_CASE("a layer's output error from its input statistics, gptq's is never above rounding's on its calibration inputs") {
  const Matrix w = test::random_normal_matrix(16, 64, 21), w_hat = test::random_normal_matrix(16, 64, 22);
  const Eigen::MatrixXd X = calibration(200, 64, 23);
  const double direct = ((w - w_hat).cast<double>() * X.transpose()).squaredNorm() / (w.cast<double>() * X.transpose()).squaredNorm();
  CHECK(relative_output_error(w, w_hat, X.transpose() * X) == doctest::Approx(direct).epsilon(1e-8));
  // A real model's layers, each with its own calibration inputs (the independent order: the Hessian is the data's).
  const Checkpoint ck = load_checkpoint((std::filesystem::path(test::kSourceDir) / "tests/fixtures/hf/llama").string());
  const LayerStatisticsMap stats = collect_layer_statistics(ck, test::seeded_tokens(64, ck.config.vocab, 3), 32);
  for (const std::string name : {"rtn(bits=3,group=16)", "turboquant(bits=2,group=16)"}) {
    const auto q = parse_quantizer(name), g = parse_quantizer("gptq(" + name + ")");
    for (const auto& [layer, st] : stats) {
      CAPTURE(name);
      CAPTURE(layer);
      const Matrix& wl = ck.tensor(layer);
      const QuantizedLayer plain = quantize_layer(*q, layer, wl, 0, GroupFallback::none);
      const QuantizedLayer calibrated = quantize_layer(*g, layer, wl, 0, GroupFallback::none, &st);
      const double e_plain = relative_output_error(wl, dequantized(*plain.quantizer, plain.matrix), st.hessian);
      const double e_gptq = relative_output_error(wl, dequantized(*calibrated.quantizer, calibrated.matrix), st.hessian);
      CHECK(e_gptq <= e_plain);
    }
  }
}

TEST_CASE("a model spec with gptq: calibration keys in the data, the calibration column, calibrate_s and layer_output_error") {
  const std::string model = (std::filesystem::path(test::kSourceDir) / "tests/fixtures/gguf/qwen2.gguf").string();
  const std::string corpus = (std::filesystem::path(test::kSourceDir) / "README.md").string();
  test::TempDir dir;
  const std::string spec = dir.file("gptq.yaml"), out = dir.file("gptq.h5");
  test::write_text(spec, "experiment: gptq\ndata: {source: model, model: '" + model + "', corpus: '" + corpus +
                             "', ctx: 64, chunks: 2, calibration_chunks: 3, calibration_ctx: 64, calibration_held_out: 2}\n"
                             "quantizers: ['rtn(bits=3,group=32)', 'gptq(rtn(bits=3,group=32))', 'gptq(rtn(bits=3,group=32),groups=static)']\n"
                             "metrics: [perplexity, delta_ppl, layer_output_error, weight_nmse_mean, calibrate_s, quantize_s]\n");
  const auto r = test::run_tqbench("run '" + spec + "' -o '" + out + "'");
  REQUIRE_MESSAGE(r.exit_code == 0, r.output);
  const ResultTable t = read_result_file(out);
  const int q = t.column_index("quantizer"), cal = t.column_index("calibration"), cs = t.column_index("calibrate_s"),
            err = t.column_index("layer_output_error"), data = t.column_index("data");
  REQUIRE(cal >= 0);
  REQUIRE(t.rows.size() == 3);
  std::vector<double> errors;
  for (const auto& row : t.rows) {
    const std::string name = std::get<std::string>(row[q]), text = std::get<std::string>(row[cal]);
    CAPTURE(name);
    const bool calibrated = name.rfind("gptq", 0) == 0;
    CHECK(std::get<std::string>(row[data]).find("calibration_chunks=3") != std::string::npos);
    CHECK((text.find("the last 3 chunks of 64 tokens of") != std::string::npos) == calibrated);
    CHECK((std::get<double>(row[cs]) > 0) == calibrated);
    errors.push_back(std::get<double>(row[err]));
    CHECK(errors.back() > 0);
    CHECK(errors.back() < 1);
  }
  MESSAGE(fmt::format("layer_output_error on held-out chunks: rtn {:.4g}, gptq {:.4g}, gptq static {:.4g}", errors[0], errors[1], errors[2]));
  // Bad calibration keys are located errors naming the key.
  test::write_text(spec, "experiment: gptq\ndata: {source: model, model: '" + model + "', corpus: '" + corpus +
                             "', calibration_order: backwards}\nquantizers: ['gptq(rtn(bits=3,group=32))']\nmetrics: [perplexity]\n");
  const auto bad = test::run_tqbench("run '" + spec + "' -o '" + dir.file("bad.h5") + "'");
  CHECK(bad.exit_code == 2);
  CHECK(bad.output.find("calibration_order") != std::string::npos);
  CHECK(bad.output.find("sequential") != std::string::npos);
}

TEST_CASE("awq: the α of the grid with the least output error, never worse than Q, better with salient channels, composes over gptq") {
  const std::size_t rows = 32, cols = 128;
  const Matrix w = test::random_normal_matrix(rows, cols, 31);
  // Inputs with a few salient channels (AWQ §3.2: 1% of channels carry large activations).
  Eigen::MatrixXd X = calibration(256, cols, 32);
  for (Eigen::Index c : {3, 40, 77, 100}) X.col(c) *= 12.0;
  const InputStatistics inputs{X.transpose() * X, X.cwiseAbs().colwise().mean().transpose(), 256};
  for (const std::string name : {"rtn(bits=3,group=32)", "rtn(bits=4,group=128,mode=asym)", "turboquant(bits=3,group=32)"}) {
    CAPTURE(name);
    const auto q = parse_quantizer(name), a = parse_quantizer("awq(" + name + ")");
    const QuantizedMatrix plain = q->quantize(w.data(), rows, cols, 5);
    double alpha = -1;
    const QuantizedMatrix scaled = awq_quantize(*q, w.data(), rows, cols, inputs, 5, {}, &alpha);
    const QuantizedMatrix via_registry = a->quantize_calibrated(w.data(), rows, cols, 5, inputs);
    CHECK(via_registry.format == a->name());
    CHECK(via_registry.storage_bytes() == a->storage_bytes(rows, cols));
    CHECK(a->storage_bytes(rows, cols) == q->storage_bytes(rows, cols) + 2 * cols);
    const Matrix w_awq = dequantized(*a, via_registry);
    CHECK((w_awq - dequantized(*a, scaled)).cwiseAbs().maxCoeff() == 0.0f);
    // The grid written out: each α's error, through Q on W·diag(s) as the header says.
    double best = INFINITY, best_alpha = -1;
    for (int i = 0; i < 20; ++i) {
      const double al = i / 20.0;
      Eigen::VectorXd sv = inputs.mean_abs.array().pow(al);
      sv /= std::sqrt(sv.maxCoeff() * sv.minCoeff());
      std::vector<float> s16(cols);
      for (std::size_t c = 0; c < cols; ++c) s16[c] = round_to(FloatFormat::fp16, static_cast<float>(sv(static_cast<Eigen::Index>(c))));
      Matrix ws = w;
      for (std::size_t c = 0; c < cols; ++c) ws.col(static_cast<Eigen::Index>(c)) *= s16[c];
      Matrix back = dequantized(*q, q->quantize(ws.data(), rows, cols, 5));
      for (std::size_t c = 0; c < cols; ++c) back.col(static_cast<Eigen::Index>(c)) /= s16[c];
      if (const double e = relative_output_error(w, back, inputs.hessian); e < best) {
        best = e;
        best_alpha = al;
      }
    }
    const double e_awq = relative_output_error(w, w_awq, inputs.hessian), e_plain = relative_output_error(w, dequantized(*q, plain), inputs.hessian);
    MESSAGE(fmt::format("{}: output error plain {:.4g}, awq {:.4g} (α = {:.2f})", name, e_plain, e_awq, alpha));
    CHECK(alpha == doctest::Approx(best_alpha));
    CHECK(e_awq == doctest::Approx(best).epsilon(1e-9));
    CHECK(e_awq < 0.95 * e_plain);
    // Composed with gptq inside (the scaled layer's statistics): no worse than gptq alone, whose α = 0 it includes.
    if (name.rfind("rtn", 0) == 0) {
      const auto g = parse_quantizer("gptq(" + name + ")"), ag = parse_quantizer("awq(gptq(" + name + "))");
      const double e_gptq = relative_output_error(w, dequantized(*g, g->quantize_calibrated(w.data(), rows, cols, 5, inputs)), inputs.hessian);
      const double e_both = relative_output_error(w, dequantized(*ag, ag->quantize_calibrated(w.data(), rows, cols, 5, inputs)), inputs.hessian);
      MESSAGE(fmt::format("{}: gptq {:.4g}, awq(gptq) {:.4g}", name, e_gptq, e_both));
      CHECK(e_both <= e_gptq * (1 + 1e-9));
    }
  }
  CHECK(parse_quantizer("awq(rtn(bits=4,group=32))")->name() == "awq(quantizer=rtn(bits=4,group=32,mode=sym,scale=fp16),grid=20)");
  CHECK(parse_quantizer("awq(rtn(bits=4,group=32))")->decode_form().empty());  // dequantized_dense reads it, no fused kernel
  CHECK_THROWS_WITH_AS(parse_quantizer("gptq(awq(rtn))"), doctest::Contains("awq(gptq(Q))"), InputError);
  CHECK_THROWS_WITH_AS(parse_quantizer("awq(rtn,grid=0)"), doctest::Contains("grid"), InputError);
  CHECK_THROWS_WITH_AS(parse_quantizer("awq(rtn(bits=4,group=32))")->quantize(w.data(), rows, cols, 0), doctest::Contains("needs calibration"),
                       InputError);
  const InputStatistics short_stats{Eigen::MatrixXd::Identity(64, 64), Eigen::VectorXd::Ones(64), 1};
  CHECK_THROWS_WITH_AS(awq_quantize(*parse_quantizer("rtn(bits=4,group=32)"), w.data(), rows, cols, short_stats, 0),
                       doctest::Contains("for 64 input channels; the layer has 128"), InputError);
}

TEST_CASE("awq scale=shared: one scale for the layers on one input, the least summed error of the grid, each layer its own codes") {
  // q/k/v-like: three layers of different heights on the same inputs, with salient channels.
  const std::size_t cols = 128;
  const std::size_t heights[] = {32, 16, 16};
  Eigen::MatrixXd X = calibration(256, cols, 41);
  for (Eigen::Index c : {5, 60, 99}) X.col(c) *= 10.0;
  InputStatistics inputs{X.transpose() * X, X.cwiseAbs().colwise().mean().transpose(), 256};
  const char* names[] = {"blk.0.attn_k.weight", "blk.0.attn_q.weight", "blk.0.attn_v.weight"};
  for (int m = 0; m < 3; ++m)
    inputs.shared_input.push_back({names[m], std::make_shared<const Matrix>(test::random_normal_matrix(heights[m], cols, 50 + m)), 100u + m});
  const auto q = parse_quantizer("rtn(bits=3,group=32)");
  const auto shared = parse_quantizer("awq(rtn(bits=3,group=32),scale=shared)"), layer = parse_quantizer("awq(rtn(bits=3,group=32))");
  CHECK(shared->name() == "awq(quantizer=rtn(bits=3,group=32,mode=sym,scale=fp16),grid=20,scale=shared)");
  CHECK(parse_quantizer(shared->name())->name() == shared->name());
  CHECK(shared->needs_shared_inputs());
  CHECK_FALSE(layer->needs_shared_inputs());
  AwqOptions shared_options;
  shared_options.shared = true;
  double sum_shared = 0, sum_layer = 0, sum_plain = 0;
  std::vector<std::uint8_t> first_scales;
  double first_alpha = -1;
  for (int m = 0; m < 3; ++m) {
    const SharedInputLayer& l = inputs.shared_input[m];
    const Matrix& w = *l.weights;
    double alpha = -1;
    const QuantizedMatrix a = awq_quantize(*q, w.data(), heights[m], cols, inputs, l.seed, shared_options, &alpha);
    const QuantizedMatrix via_registry = shared->quantize_calibrated(w.data(), heights[m], cols, l.seed, inputs);
    CHECK(via_registry.scales == a.scales);
    if (m == 0) first_scales = a.scales, first_alpha = alpha;
    CHECK(a.scales == first_scales);  // one s for the three
    CHECK(alpha == first_alpha);
    CHECK(a.rows == heights[m]);      // each its own layer
    const auto err = [&](const Matrix& w_hat) {  // tr(E H Eᵀ), the search's objective
      const Eigen::MatrixXd E = w.cast<double>() - w_hat.cast<double>();
      return (E * inputs.hessian).cwiseProduct(E).sum();
    };
    sum_shared += err(dequantized(*shared, via_registry));
    sum_layer += err(dequantized(*layer, layer->quantize_calibrated(w.data(), heights[m], cols, l.seed, inputs)));
    sum_plain += err(dequantized(*q, q->quantize(w.data(), heights[m], cols, l.seed)));
  }
  MESSAGE(fmt::format("summed output error: plain {:.4g}, awq shared {:.4g} (α = {:.2f}), awq per layer {:.4g}", sum_plain, sum_shared, first_alpha,
                      sum_layer));
  CHECK(sum_shared <= sum_plain * (1 + 1e-12));  // α = 0 is on the grid
  CHECK(sum_layer <= sum_shared * (1 + 1e-12));  // each layer's own best sums to no more than the best of the sum
  CHECK(sum_shared < 0.95 * sum_plain);
  // A layer that is not among the listed ones, or a member of another width, is refused.
  const Matrix stranger = test::random_normal_matrix(16, cols, 77);
  CHECK_THROWS_WITH_AS(awq_quantize(*q, stranger.data(), 16, cols, inputs, 999, shared_options), doctest::Contains("not once among"), std::logic_error);
  InputStatistics odd = inputs;
  odd.shared_input[1].weights = std::make_shared<const Matrix>(test::random_normal_matrix(16, 64, 3));
  CHECK_THROWS_WITH_AS(awq_quantize(*q, inputs.shared_input[0].weights->data(), 32, cols, odd, 100, shared_options),
                       doctest::Contains("64 input channels, not 128"), InputError);
}

TEST_CASE("calibration lists the layers sharing an input, with their seeds, only when asked, the sequential order drops them once quantized") {
  const Checkpoint ck = load_checkpoint((std::filesystem::path(test::kSourceDir) / "tests/fixtures/hf/llama").string());
  const std::size_t ctx = 16;
  const std::vector<int> tokens = test::seeded_tokens(2 * ctx, ck.config.vocab, 9);
  const LayerSelection all(kBlockLinearLayers, "^$");
  CHECK(collect_layer_statistics(ck, tokens, ctx, all).at("blk.0.attn_q.weight").shared_input.empty());
  const auto seed_of = [](const std::string& name) { return layer_seed(7, name); };
  const LayerStatisticsMap with = collect_layer_statistics(ck, tokens, ctx, all, {}, "cpu", seed_of);
  const auto& qkv = with.at("blk.1.attn_k.weight").shared_input;
  REQUIRE(qkv.size() == 3);
  CHECK(qkv[0].name == "blk.1.attn_k.weight");
  CHECK(qkv[1].name == "blk.1.attn_q.weight");
  CHECK(qkv[2].name == "blk.1.attn_v.weight");
  CHECK(qkv[1].seed == layer_seed(7, "blk.1.attn_q.weight"));
  CHECK(*qkv[1].weights == ck.tensor("blk.1.attn_q.weight"));
  CHECK(with.at("blk.1.ffn_up.weight").shared_input.size() == 2);
  CHECK(with.at("blk.1.ffn_down.weight").shared_input.empty());    // its own input
  CHECK(with.at("blk.1.attn_output.weight").shared_input.empty());
  // Sequential: a layer's quantization sees them, and they are gone from what is returned.
  std::size_t seen = 0;
  const LayerStatisticsMap seq = collect_layer_statistics(
      ck, tokens, ctx, all,
      [&](const std::string& name, const Matrix& w, const LayerStatistics& s) {
        if (name.find("attn_v") != std::string::npos) seen += s.shared_input.size();
        return w;
      },
      "cpu", seed_of);
  CHECK(seen == 3 * static_cast<std::size_t>(ck.config.n_layers));
  for (const auto& [name, s] : seq) CHECK(s.shared_input.empty());
}

TEST_CASE("awq clip=search: each group's clipping ratio the least error of the grid, never worse than no clipping, better with outliers") {
  const std::size_t rows = 24, cols = 128;
  Matrix w = test::random_normal_matrix(rows, cols, 41);
  for (std::size_t r = 0; r < rows; r += 3) w(static_cast<Eigen::Index>(r), static_cast<Eigen::Index>((7 * r) % cols)) *= 9.0f;  // outliers
  const Eigen::MatrixXd X = calibration(256, cols, 43);
  const InputStatistics inputs{X.transpose() * X, X.cwiseAbs().colwise().mean().transpose(), 256};
  for (const std::string name : {"rtn(bits=3,group=32)", "rtn(bits=4,group=64,mode=asym)", "turboquant(bits=3,group=32)"}) {
    CAPTURE(name);
    const auto q = parse_quantizer(name);
    const auto plain = parse_quantizer("awq(" + name + ")"), clip = parse_quantizer("awq(" + name + ",clip=search)");
    CHECK(clip->name() == plain->name().substr(0, plain->name().size() - 1) + ",clip=search)");
    CHECK(parse_quantizer(clip->name())->name() == clip->name());
    CHECK(clip->storage_bytes(rows, cols) == plain->storage_bytes(rows, cols));
    const Matrix w_plain = dequantized(*plain, plain->quantize_calibrated(w.data(), rows, cols, 5, inputs));
    const QuantizedMatrix qc = clip->quantize_calibrated(w.data(), rows, cols, 5, inputs);
    const Matrix w_clip = dequantized(*clip, qc);
    const double e_plain = relative_output_error(w, w_plain, inputs.hessian), e_clip = relative_output_error(w, w_clip, inputs.hessian);
    MESSAGE(fmt::format("{}: output error awq {:.4g}, awq with the clipping search {:.4g}", name, e_plain, e_clip));
    // Written out: the α is the same (the search follows it), and each group's error is the least over the 20 ratios.
    std::vector<float> sc(cols);
    for (std::size_t c = 0; c < cols; ++c) sc[c] = load_float(FloatFormat::fp16, qc.scales.data() + 2 * c);
    Matrix ws = w;
    for (std::size_t c = 0; c < cols; ++c) ws.col(static_cast<Eigen::Index>(c)) *= sc[c];
    Eigen::MatrixXd hs = inputs.hessian;
    for (std::size_t a = 0; a < cols; ++a)
      for (std::size_t b = 0; b < cols; ++b) hs(static_cast<Eigen::Index>(a), static_cast<Eigen::Index>(b)) /= static_cast<double>(sc[a]) * sc[b];
    const std::size_t g = name.find("group=64") != std::string::npos ? 64 : 32;
    const Matrix chosen = dequantized(*q, qc.passes.front());
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t j = 0; j < cols / g; ++j) {
        const auto err = [&](const Matrix& rec) {
          Eigen::VectorXd d(static_cast<Eigen::Index>(g));
          for (std::size_t k = 0; k < g; ++k)
            d(static_cast<Eigen::Index>(k)) = static_cast<double>(ws(static_cast<Eigen::Index>(r), static_cast<Eigen::Index>(j * g + k))) -
                                              rec(static_cast<Eigen::Index>(r), static_cast<Eigen::Index>(j * g + k));
          const auto J = static_cast<Eigen::Index>(j * g), G = static_cast<Eigen::Index>(g);
          return d.dot(hs.block(J, J, G, G) * d);
        };
        double least = INFINITY;
        for (int i = 0; i < 20; ++i) {
          Matrix cl = ws;
          const float m = ws.row(static_cast<Eigen::Index>(r)).segment(static_cast<Eigen::Index>(j * g), static_cast<Eigen::Index>(g)).cwiseAbs().maxCoeff() *
                          static_cast<float>(1.0 - 0.5 * i / 20);
          for (std::size_t k = 0; k < g; ++k) {
            float& v = cl(static_cast<Eigen::Index>(r), static_cast<Eigen::Index>(j * g + k));
            v = std::clamp(v, -m, m);
          }
          least = std::min(least, err(dequantized(*q, q->quantize(cl.data(), rows, cols, 5))));
        }
        CHECK(err(chosen) == doctest::Approx(least).epsilon(1e-9));
      }
    CHECK(e_clip <= e_plain * (1 + 1e-9));
    // Round-to-nearest's grid follows the outliers; TurboQuant's rotation already spreads them (2.5% gain here).
    if (name.rfind("rtn", 0) == 0) CHECK(e_clip < 0.9 * e_plain);
  }
  CHECK_THROWS_WITH_AS(parse_quantizer("awq(gptq(rtn(bits=4,group=32)),clip=search)"), doctest::Contains("clip=none"), InputError);
  CHECK_THROWS_WITH_AS(parse_quantizer("awq(rtn,clip=yes)"), doctest::Contains("clip"), InputError);
}

TEST_CASE("export of calibrated quantizers: the file's layers give the perplexity of calibrating in memory, no text is an error") {
  const std::string model = (std::filesystem::path(test::kSourceDir) / "tests/fixtures/gguf/qwen2.gguf").string();
  const std::string corpus = (std::filesystem::path(test::kSourceDir) / "README.md").string();
  test::TempDir dir;
  const std::string calibration = " --calibration-corpus '" + corpus + "' --calibration-chunks 2 --calibration-ctx 64";
  for (const std::string q : {"gptq(rtn(bits=3,group=32))", "awq(gptq(turboquant(bits=3,group=32)))"}) {
    CAPTURE(q);
    const std::string out = dir.file("calibrated.safetensors");
    auto r = test::run_tqbench("export --force --model '" + model + "' --quantizer '" + q + "' -o '" + out + "' --seed 4" + calibration);
    REQUIRE_MESSAGE(r.exit_code == 0, r.output);
    const QuantizedModelFile file = read_quantized_safetensors(out);
    CHECK(file.metadata.at("tqbench.calibration").find("the last 2 chunks of 64 tokens of") != std::string::npos);
    const auto ppl = [&](const std::string& args) {
      const auto p = test::run_tqbench("perplexity --model '" + model + "' --corpus '" + corpus + "' --ctx 64 --chunks 2 " + args);
      REQUIRE_MESSAGE(p.exit_code == 0, p.output);
      return p.output.substr(p.output.find("perplexity: "), 24);
    };
    CHECK(ppl("--quantized '" + out + "'") == ppl("--quantizer '" + q + "' --seed 4" + calibration));
  }
  // gptq over a llama.cpp format exports to GGUF as that format's tensors (GPTQ's codes in Q4_0's bytes): the file,
  // read as any Q4_0 GGUF, gives the perplexity of calibrating in memory.
  {
    const std::string q = "gptq(q4_0)", out = dir.file("calibrated.gguf");
    auto r = test::run_tqbench("export --force --model '" + model + "' --quantizer '" + q + "' -o '" + out + "' --seed 4" + calibration);
    REQUIRE_MESSAGE(r.exit_code == 0, r.output);
    const GgufFile file(out);
    std::size_t q4 = 0;
    for (const auto& t : file.tensors()) q4 += t.type == find_ggml_block_format("q4_0")->ggml_type;
    CHECK(q4 == 7 * static_cast<std::size_t>(load_checkpoint(model).config.n_layers));
    const auto ppl = [&](const std::string& m, const std::string& args) {
      const auto p = test::run_tqbench("perplexity --model '" + m + "' --corpus '" + corpus + "' --ctx 64 --chunks 2 " + args);
      REQUIRE_MESSAGE(p.exit_code == 0, p.output);
      return p.output.substr(p.output.find("perplexity: "), 24);
    };
    const std::string exported = ppl(out, ""), in_memory = ppl(model, "--quantizer '" + q + "' --seed 4" + calibration), plain = ppl(model, "--quantizer q4_0");
    CHECK(exported == in_memory);
    CHECK(exported != plain);
  }
  const auto none = test::run_tqbench("export --model '" + model + "' --quantizer 'gptq(rtn)' -o '" + dir.file("x.safetensors") + "'");
  CHECK(none.exit_code == 2);
  CHECK(none.output.find("needs calibration text") != std::string::npos);
}

TEST_CASE("without_rotation: the rotated groups through the twin give the rotated quantizer's grids (gptq's dynamic groups use it)") {
  const std::size_t rows = 16, cols = 128;
  const Matrix w = test::random_normal_matrix(rows, cols, 41);
  for (const std::string name : {"turboquant(bits=3,group=32,rotation=hadamard)", "turboquant(bits=4,group=64,rotation=haar,norm=fp16)",
                                 "rotated(rtn(bits=4,group=32,mode=asym))", "rotated(rtn(bits=3,group=64),rotation=haar)"}) {
    CAPTURE(name);
    const auto q = parse_quantizer(name);
    const auto twin = q->without_rotation();
    REQUIRE(twin);
    const DecodePass want = decode_passes(*q, q->quantize(w.data(), rows, cols, 9)).front();
    REQUIRE(!want.rotations.empty());
    Matrix v = w;  // each group rotated as the quantizer rotates it
    for (std::size_t j = 0; j < want.groups; ++j) want.rotations[j]->forward(v.data() + j * want.g, rows, cols);
    const DecodePass got = decode_passes(*twin, twin->quantize(v.data(), rows, cols, 9)).front();
    CHECK(got.rotations.empty());
    REQUIRE(got.a.size() == want.a.size());
    for (std::size_t i = 0; i < want.a.size(); ++i) {
      CHECK(got.a[i] == doctest::Approx(want.a[i]).epsilon(1e-3));
      if (!want.b.empty()) CHECK(got.b[i] == doctest::Approx(want.b[i]).epsilon(1e-3));
    }
  }
  for (const char* plain : {"rtn(bits=4,group=32)", "turboquant(bits=3,group=32,rotation=none)", "rotated(rtn(bits=4,group=32),rotation=none)"})
    CHECK(parse_quantizer(plain)->without_rotation() == nullptr);
}

TEST_CASE("awq: a stored scale that is not positive and finite is refused naming the channel") {
  const auto a = parse_quantizer("awq(rtn(bits=4,group=32))");
  const Matrix w = test::random_normal_matrix(4, 64, 3);
  const Eigen::MatrixXd X = calibration(64, 64, 4);
  QuantizedMatrix q = a->quantize_calibrated(w.data(), 4, 64, 0, {X.transpose() * X, X.cwiseAbs().colwise().mean().transpose(), 64});
  Matrix out(4, 64);
  CHECK_NOTHROW(a->dequantize(q, out.data()));
  q.scales[2 * 5] = 0;
  q.scales[2 * 5 + 1] = 0;  // channel 5: +0
  CHECK_THROWS_WITH_AS(a->dequantize(q, out.data()), doctest::Contains("input channel 5's scale is 0"), InputError);
}

TEST_CASE("calibration on the GPU forward: cuda-fp32's statistics are the CPU's, cuda's within bf16's rounding, GPTQ's layers as good as the CPU's") {
  if (const std::string why = cuda_forward_unavailable(); !why.empty()) {
    MESSAGE("SKIPPED: calibration on the GPU needs a GPU: " << why);
    return;
  }
  const test::BooksModel books = test::books14m();
  if (!books.present_or_skip()) return;
  const Checkpoint ck = load_checkpoint(books.model);
  const std::size_t ctx = 128;
  std::vector<int> tokens = ck.tokenizer->encode(read_corpus(books.corpus).substr(0, 20000));
  tokens.resize(4 * ctx);
  const LayerSelection all(kBlockLinearLayers, "^$");
  // Relative Frobenius distance of a device's statistics from the CPU's, worst over the layers.
  auto worst_distance = [](const LayerStatisticsMap& got, const LayerStatisticsMap& cpu) {
    double h = 0, a = 0;
    std::string worst;
    for (const auto& [name, s] : cpu) {
      const LayerStatistics& g = got.at(name);
      CHECK(g.samples == s.samples);
      const double dh = (g.hessian - s.hessian).norm() / s.hessian.norm();
      if (dh > h) worst = name;
      h = std::max(h, dh);
      a = std::max(a, (g.mean_abs - s.mean_abs).norm() / s.mean_abs.norm());
    }
    MESSAGE("worst Hessian: " << worst);
    return std::pair{h, a};
  };
  const LayerStatisticsMap cpu = collect_layer_statistics(ck, tokens, ctx, all, {}, "cpu");
  const auto g = parse_quantizer("gptq(rtn(bits=4,group=64))");
  // The sequential order: each layer's GPTQ weights, as calibrate_model makes them.
  auto sequential = [&](const std::string& device, std::map<std::string, Matrix>& w_hat) {
    return collect_layer_statistics(ck, tokens, ctx, all, [&](const std::string& name, const Matrix& w, const LayerStatistics& s) {
      QuantizedLayer l = quantize_layer(*g, name, w, 3, GroupFallback::none, &s);
      Matrix out(w.rows(), w.cols());
      l.quantizer->dequantize(l.matrix, out.data());
      return w_hat[name] = out;
    }, device);
  };
  std::map<std::string, Matrix> cpu_w;
  const LayerStatisticsMap cpu_seq = sequential("cpu", cpu_w);
  for (const std::string device : {"cuda-fp32", "cuda"}) {
    CAPTURE(device);
    const bool exact = device == "cuda-fp32";
    const auto [h, a] = worst_distance(collect_layer_statistics(ck, tokens, ctx, all, {}, device), cpu);
    std::map<std::string, Matrix> w;
    const auto [hs, as] = worst_distance(sequential(device, w), cpu_seq);
    // GPTQ's layers: the share of weights on the CPU's grid point, and each layer's output error (on the CPU's
    // statistics) against the CPU-calibrated layer's.
    std::size_t same = 0, count = 0;
    double worst_ratio = 0;
    for (const auto& [name, wc] : cpu_w) {
      same += static_cast<std::size_t>((w.at(name).array() == wc.array()).count());
      count += static_cast<std::size_t>(wc.size());
      const Matrix& w0 = ck.tensor(name);
      const double e_dev = relative_output_error(w0, w.at(name), cpu.at(name).hessian), e_cpu = relative_output_error(w0, wc, cpu.at(name).hessian);
      worst_ratio = std::max(worst_ratio, std::fabs(e_dev / e_cpu - 1.0));
    }
    const double share = static_cast<double>(same) / static_cast<double>(count);
    MESSAGE(fmt::format("{}: statistics vs CPU, worst layer: Hessian {:.2e}, mean |x| {:.2e}; sequential {:.2e} / {:.2e}; GPTQ weights equal "
                        "to the CPU's {:.4f}, layer output error within {:.2e} of the CPU's",
                        device, h, a, hs, as, share, worst_ratio));
    // One forward's statistics: cuda-fp32 is the CPU's up to the order of its fp32 sums, bf16 within its rounding.
    CHECK(h < (exact ? 1e-5 : 2e-2));
    CHECK(a < (exact ? 1e-5 : 2e-2));
    // The sequential order and GPTQ's layers, in both modes alike: GPTQ's rounding decisions flip on last-bit changes
    // of its statistics and its error feedback carries a flip on along the row (on the CPU alone, books-14m from its
    // GGUF and from its folder differ by 1e-7 in each chunk's NLL and gptq(q4_0) moves the perplexity by 0.02:
    // docs/CALIBRATION.md), and later blocks see the changed layers. So the codes may part (the first GPU run, H100,
    // 2026-12-07: a third of the weights on the CPU's grid point under bf16), the statistics stay close and each
    // layer's output error stays the CPU's within a few percent (3.3% there under bf16; bound 10%).
    CHECK(hs < 5e-2);
    CHECK(as < 5e-2);
    CHECK(share > 0.1);
    CHECK(worst_ratio < 0.1);
  }
}
