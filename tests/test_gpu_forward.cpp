// The forward on the GPU backend (models/cuda) against the CPU reference: the same block over other ops
// (models/forward_ops.hpp). On every HF fixture architecture (bias, q/k norm, sliding window, GeGLU, tied
// head, RoPE scalings), stories260K and books-14m (../shared), perplexity within 2e-3 relative (bf16 weights
// and GEMM inputs against fp32), unquantized and with quantized layers (dequantized to bf16, and the packed
// lut_mma kernels). Without a GPU the GPU cases print why and skip; the refusal itself is checked everywhere.
#include <doctest/doctest.h>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "common/error.hpp"
#include "eval/model_eval.hpp"
#include "eval/perplexity.hpp"
#include "models/cuda/cuda_forward.hpp"
#include "quantizers/registry.hpp"
#include "test_util.hpp"

using namespace tqb;
using test::seeded_tokens;
namespace fs = std::filesystem;

namespace {

double ppl_of(const LlamaModel& m, const std::vector<int>& tokens, int ctx, int chunks) {
  PerplexityConfig cfg;
  cfg.ctx = ctx;
  cfg.chunks = chunks;
  return evaluate_perplexity(m, tokens, cfg, nullptr, nullptr).ppl;
}

}  // namespace

TEST_CASE("--device cuda without a usable GPU is refused, saying why") {
  if (!cuda_forward_unavailable().empty()) {
    const Checkpoint ck = load_checkpoint((fs::path(test::kSourceDir) / "tests/fixtures/hf/llama").string());
    CHECK_THROWS_WITH_AS(make_model(ck, "cuda"), doctest::Contains("needs a CUDA GPU"), InputError);
    // The memory check comes first on the model commands' path: it says the same, not "does not fit ... 0 GB free".
    CHECK_THROWS_WITH_AS(check_fits_gpu(ck, "cuda", 64), doctest::Contains("needs a CUDA GPU"), InputError);
  }
  const Checkpoint ck = load_checkpoint((fs::path(test::kSourceDir) / "tests/fixtures/hf/llama").string());
  CHECK_THROWS_WITH_AS(make_model(ck, "tpu"), doctest::Contains("expected cpu, cuda or cuda-fp32"), InputError);
}

TEST_CASE("a model that does not fit the GPU is refused before loading, naming the bytes needed and free") {
  const Checkpoint ck = load_checkpoint((fs::path(test::kSourceDir) / "tests/fixtures/hf/llama").string());
  check_fits_gpu(ck, "cpu", std::size_t{1} << 40);  // the CPU: no check
  if (const std::string why = cuda_forward_unavailable(); !why.empty()) {
    MESSAGE("SKIPPED: the GPU memory check needs a GPU: " << why);
    return;
  }
  check_fits_gpu(ck, "cuda", 4096);
  // 2^32 positions per forward: terabytes of activations.
  CHECK_THROWS_WITH_AS(check_fits_gpu(ck, "cuda", std::size_t{1} << 32), doctest::Contains("GB free"), InputError);
  CHECK_THROWS_WITH_AS(check_fits_gpu(ck, "cuda", std::size_t{1} << 32), doctest::Contains("does not fit the GPU"), InputError);
}

TEST_CASE("the GPU forward equals the CPU reference: every fixture architecture, stories260K and books-14m") {
  if (const std::string why = cuda_forward_unavailable(); !why.empty()) {
    MESSAGE("SKIPPED: the GPU forward needs a GPU: " << why);
    return;
  }
  // Random tokens for the fixtures (random weights); real text for the real models (a random token stream under a
  // trained model has perplexities of 10^7 and more, where a bf16 rounding moves the exponent's last digits).
  const fs::path shared = shared_dir(), text = shared / "data/books-heldout/heldout.txt";
  std::vector<std::pair<std::string, bool>> models;  // path, real
  for (const auto& e : fs::directory_iterator(fs::path(test::kSourceDir) / "tests/fixtures/hf")) models.emplace_back(e.path().string(), false);
  std::sort(models.begin(), models.end());
  for (const auto& m : {shared / "models/stories260K/stories260K.gguf", shared / "models/books-14m"})
    if (fs::exists(m) && fs::exists(text)) models.emplace_back(m.string(), true);
  for (const auto& [path, real] : models) {
    CAPTURE(path);
    const Checkpoint ck = load_checkpoint(path);
    const int ctx = std::min(128, ck.config.context);
    std::vector<int> tokens = seeded_tokens(static_cast<std::size_t>(ctx) * 3, ck.config.vocab, 7);
    if (real) tokens = ck.tokenizer->encode(read_corpus(text.string()).substr(0, 200000));
    const int chunks = real ? 8 : 3;
    const double cpu = ppl_of(LlamaModel(ck), tokens, ctx, chunks), gpu = ppl_of(*make_model(ck, "cuda"), tokens, ctx, chunks),
                 gpu32 = ppl_of(*make_model(ck, "cuda-fp32"), tokens, ctx, chunks);
    MESSAGE(fmt::format("{}: perplexity cpu {:.6g}, cuda {:.6g} (rel diff {:.2e}), cuda-fp32 {:.6g} ({:.2e})",
                        fs::path(path).filename().string(), cpu, gpu, std::fabs(gpu - cpu) / cpu, gpu32, std::fabs(gpu32 - cpu) / cpu));
    CHECK(std::fabs(gpu32 - cpu) <= 1e-5 * cpu);
    // bf16: within 2e-3 where the weights are stored in bf16 (books-14m) or random, with two exceptions held to
    // 1e-2: stories260K, whose fp32 weights rounded to bf16 move its perplexity by 0.5% on this text (the model
    // is 260K parameters), and llama-tied, whose random tied head makes a degenerate model (perplexity 1.8e20,
    // 46.7 nats per token) where the bf16 rounding of q and k in the tensor-core attention moves the mean NLL by
    // 7e-3 nats (1.75e-3 with the fp32 attention, which cuda-fp32 keeps).
    const bool loose = path.find("stories260K") != std::string::npos || fs::path(path).filename() == "llama-tied";
    CHECK(std::fabs(gpu - cpu) <= (loose ? 1e-2 : 2e-3) * cpu);
  }
  // Quantized layers on books-14m (widths 512 and 1536): dequantized to bf16, and the packed lut_mma codes.
  const fs::path books = shared / "models/books-14m";
  if (!fs::exists(books) || !fs::exists(text)) {
    MESSAGE("books-14m (../shared) is not there: the quantized cases are not run");
    return;
  }
  const Checkpoint ck = load_checkpoint(books.string());
  const std::vector<int> tokens = ck.tokenizer->encode(read_corpus(text.string()).substr(0, 200000));
  for (const std::string name : {"turboquant(bits=4,group=128,rotation=hadamard)", "rotated(rtn(bits=4,group=64))", "q4_K"}) {
    CAPTURE(name);
    const auto q = parse_quantizer(name);
    const double cpu = ppl_of(*quantize_model(ck, *q, 1, {.kernel = "dequantized_dense"}), tokens, 128, 8);
    const double gpu = ppl_of(*quantize_model(ck, *q, 1, {.kernel = "dequantized_dense", .device = "cuda"}), tokens, 128, 8);
    MESSAGE(fmt::format("books-14m {}: cpu {:.6g}, cuda (dequantized bf16) {:.6g}, rel diff {:.2e}", name, cpu, gpu, std::fabs(gpu - cpu) / cpu));
    CHECK(std::fabs(gpu - cpu) <= 2e-3 * cpu);
    if (name != "q4_K") {
      const double packed = ppl_of(*quantize_model(ck, *q, 1, {.kernel = "cuda_lut_mma", .device = "cuda"}), tokens, 128, 8);
      MESSAGE(fmt::format("books-14m {}: cuda_lut_mma {:.6g}, rel diff {:.2e}", name, packed, std::fabs(packed - cpu) / cpu));
      CHECK(std::fabs(packed - cpu) <= 2e-3 * cpu);
    }
  }
  CHECK_THROWS_WITH_AS(quantize_model(ck, *parse_quantizer("q4_K"), 1, {.kernel = "fused_i16", .device = "cuda"}),
                       doctest::Contains("--device cuda runs quantized layers"), InputError);
}

TEST_CASE("perplexity scored where the logits are (ForwardOps::row_nll) equals the host's scoring bit for bit") {
  // The CPU backend: the same log-sum-exp, the same float rounding, the same order of the sums.
  for (const char* fixture : {"llama", "gemma", "mistral"}) {
    CAPTURE(fixture);
    const Checkpoint ck = load_checkpoint((fs::path(test::kSourceDir) / "tests/fixtures/hf" / fixture).string());
    const LlamaModel m(ck);
    const std::vector<int> tokens = seeded_tokens(3 * 64, ck.config.vocab, 11);
    for (const char* method : {"llamacpp", "windowed"}) {
      PerplexityConfig cfg;
      cfg.method = method;
      cfg.ctx = 64;
      cfg.chunks = 3;
      BaselineLogProbs saved;
      const PerplexityResult scored = evaluate_perplexity(m, tokens, cfg, nullptr, nullptr);  // row_nll
      const PerplexityResult host = evaluate_perplexity(m, tokens, cfg, &saved, nullptr);     // logits to the host
      CHECK(scored.ppl == host.ppl);
      CHECK(scored.ppl_stderr == host.ppl_stderr);
      CHECK(scored.scored == host.scored);
    }
  }
}

TEST_CASE("tqbench perplexity --device and --batch: a bad value names the flag (and the valid devices)") {
  const auto r = test::run_tqbench("perplexity --model stories260k --device tpu");
  CHECK(r.exit_code == 2);  // bad usage
  CHECK(r.output.find("--device") != std::string::npos);
  CHECK(r.output.find("cuda-fp32") != std::string::npos);
  const auto batch = test::run_tqbench("perplexity --model stories260k --batch -1");
  CHECK(batch.exit_code == 2);
  CHECK(batch.output.find("--batch") != std::string::npos);
}

TEST_CASE("the GPU attention over several key tiles, a window across tiles, a forward in two pieces and chunks together") {
  if (const std::string why = cuda_forward_unavailable(); !why.empty()) {
    MESSAGE("SKIPPED: the GPU forward needs a GPU: " << why);
    return;
  }
  // The Mistral fixture with a window of 40 over 300 positions: key tiles of 64 that the window starts inside,
  // query tiles cut at 170 (pos0 > 0, partial tiles). Logits against the CPU's on the whole sequence at once.
  Checkpoint ck = load_checkpoint((fs::path(test::kSourceDir) / "tests/fixtures/hf/mistral").string());
  ck.config.sliding_window = 40;
  const std::vector<int> tokens = seeded_tokens(300, ck.config.vocab, 5);
  const std::vector<int> head(tokens.begin(), tokens.begin() + 170), tail(tokens.begin() + 170, tokens.end());
  const LlamaModel cpu(ck);
  KvCache cc = cpu.new_cache(300);
  const Matrix ref = cpu.forward(tokens, cc);
  for (const std::string device : {"cuda", "cuda-fp32"}) {
    CAPTURE(device);
    const auto gpu = make_model(ck, device);
    KvCache gc = gpu->new_cache(300);
    const Matrix a = gpu->forward(head, gc), b = gpu->forward(tail, gc);
    Matrix both(300, ref.cols());
    both << a, b;
    const double rel = (both - ref).norm() / ref.norm();
    MESSAGE(fmt::format("{}: logits in two pieces against the CPU's at once, relative difference {:.2e}", device, rel));
    CHECK(rel <= (std::string(device) == "cuda" ? 2e-2 : 1e-5));
  }
  // Chunks forwarded together on the GPU: the same perplexity as one at a time (up to cuBLAS's choice of GEMM
  // for another row count).
  const std::vector<int> text = seeded_tokens(7 * 48, ck.config.vocab, 9);
  const auto gpu = make_model(ck, "cuda");
  PerplexityConfig cfg;
  cfg.ctx = 48;
  cfg.chunks = 7;
  cfg.batch = 1;
  const PerplexityResult one = evaluate_perplexity(*gpu, text, cfg);
  cfg.batch = 0;  // automatic: all 7 in one forward
  const PerplexityResult together = evaluate_perplexity(*gpu, text, cfg);
  CHECK(together.batch == 7);
  MESSAGE(fmt::format("cuda: 7 chunks together {:.8g}, one at a time {:.8g}", together.ppl, one.ppl));
  CHECK(std::fabs(together.ppl - one.ppl) <= 1e-4 * one.ppl);
}

TEST_CASE("a quantized KV cache on the GPU (coded on the device, or written by the CPU path's quantizer) gives the CPU's perplexity and attention error") {
  if (const std::string why = cuda_forward_unavailable(); !why.empty()) {
    MESSAGE("SKIPPED: the GPU forward needs a GPU: " << why);
    return;
  }
  const fs::path shared = shared_dir(), books = shared / "models/books-14m", text = shared / "data/books-heldout/heldout.txt";
  const bool real = fs::exists(books) && fs::exists(text);
  const Checkpoint ck = load_checkpoint(real ? books.string() : (fs::path(test::kSourceDir) / "tests/fixtures/hf/mistral").string());
  const std::vector<int> tokens = real ? ck.tokenizer->encode(read_corpus(text.string()).substr(0, 100000))
                                       : seeded_tokens(3 * 128, ck.config.vocab, 7);
  auto spec = [](const char* key, const char* axis, int outliers, const char* outlier_key) {
    KvQuantSpec s;
    s.key = key;
    s.value = key;
    s.key_axis = axis;
    s.block = 32;
    s.outliers = outliers;
    s.outlier_key = outlier_key;
    s.outlier_value = outlier_key;
    return s;
  };
  // Hadamard-rotated TurboQuant is coded on the GPU (models/kv_codec.hpp; on books-14m, head_dim 64), the rest on the host.
  for (const KvQuantSpec& s : {spec("turboquant(bits=3,rotation=hadamard)", "token", 0, "none"), spec("turboquant(bits=3)", "token", 0, "none"),
                               spec(real ? "rtn(bits=2,group=32)" : "rtn(bits=2,group=16)", "channel", 0, "none"),  // the fixture's head_dim is 16
                               spec("turboquant(bits=2)", "token", 8, "turboquant(bits=3)")}) {
    CAPTURE(s.key);
    CAPTURE(s.key_axis);
    double ppl[3];
    KvAttentionError err[3];
    int i = 0;
    for (const std::string device : {"cpu", "cuda-fp32", "cuda"}) {
      auto model = make_model(ck, device);
      model->set_kv_quantizer(std::make_shared<KvQuantizer>(s, ck.config, 11));
      model->set_kv_probe(&err[i]);
      ppl[i++] = ppl_of(*model, tokens, 128, 3);
    }
    MESSAGE(fmt::format("KV {} ({} axis, {} outliers): perplexity cpu {:.6g}, cuda-fp32 {:.6g}, cuda {:.6g}; attention output error "
                        "cpu {:.4g}, cuda {:.4g}",
                        s.key, s.key_axis, s.outliers, ppl[0], ppl[1], ppl[2], err[0].out_rel(), err[2].out_rel()));
    // fp32 on both sides: keys that differ in the last bits can fall on another side of a code boundary, rarely.
    CHECK(std::fabs(ppl[1] - ppl[0]) <= 1e-4 * ppl[0]);
    // bf16 (cuda): keys rounded to bf16 before they are quantized land in other cells often enough to re-draw the
    // cache's quantization noise, and 3 chunks score only 192 tokens: on the H200 (2026-12-06) the perplexity moved by
    // 1.3%, 2.2% and 0.4% for these three caches while the attention error stayed within 0.5% of the CPU's. The check
    // that the GPU path quantizes as the CPU does is cuda-fp32's above; bf16's is the attention error, and a loose bound.
    CHECK(std::fabs(ppl[2] - ppl[0]) <= 0.05 * ppl[0]);
    CHECK(std::fabs(err[2].out_rel() - err[0].out_rel()) <= 0.02 * err[0].out_rel());
    CHECK(err[1].rows == err[0].rows);
    CHECK(std::fabs(err[1].out_rel() - err[0].out_rel()) <= 1e-3 * err[0].out_rel() + 1e-6);
  }
  auto model = make_model(ck, "cuda");
  KvQuantSpec est = spec("turboquant_prod(bits=3)", "token", 0, "none");
  est.scores = "estimator";
  model->set_kv_quantizer(std::make_shared<KvQuantizer>(est, ck.config, 11));
  CHECK_THROWS_WITH_AS(ppl_of(*model, tokens, 128, 1), doctest::Contains("--device cpu"), InputError);
}
