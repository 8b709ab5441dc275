// Greedy generation (LlamaModel::generate_greedy): on the CPU, the same tokens as a step-by-step loop of forwards; on the
// GPU, whose decode steps are a CUDA graph with the token and position in device memory and flash-decoding's split
// attention (models/cuda/decode_kernels.cu), the CPU's tokens, where a difference is allowed only at a near-tie of the
// CPU's own logits (bf16 products move logits by a few hundredths). Without a GPU the GPU cases say why and skip.
#include <doctest/doctest.h>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "common/error.hpp"
#include "eval/model_eval.hpp"
#include "models/cuda/cuda_forward.hpp"
#include "models/forward_ops.hpp"
#include "test_util.hpp"

using namespace tqb;
using test::seeded_tokens;
namespace fs = std::filesystem;

namespace {

// The CPU's logits at every generated position, teacher-forced with `generated` after `prompt`: row i is the
// distribution generated[i] was chosen from.
Matrix forced_logits(const LlamaModel& m, const std::vector<int>& prompt, const std::vector<int>& generated) {
  std::vector<int> all = prompt;
  all.insert(all.end(), generated.begin(), generated.end() - 1);
  KvCache cache = m.new_cache(all.size());
  return m.forward(all, cache, generated.size());
}

// Top-1 minus top-2 logit of a row.
float margin(const Matrix& logits, Eigen::Index row) {
  std::vector<float> r(logits.row(row).data(), logits.row(row).data() + logits.cols());
  std::partial_sort(r.begin(), r.begin() + 2, r.end(), std::greater<>());
  return r[0] - r[1];
}

// Index of the first difference (or the common length).
std::size_t agree(const std::vector<int>& a, const std::vector<int>& b) {
  std::size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
  return i;
}

}  // namespace

TEST_CASE("greedy generation equals a loop of one-token forwards, stops after the stop token and leaves the cache continuable") {
  const Checkpoint ck = load_checkpoint((fs::path(test::kSourceDir) / "tests/fixtures/hf/mistral").string());  // a sliding window
  const LlamaModel m(ck);
  const std::vector<int> prompt = seeded_tokens(9, ck.config.vocab, 3);
  const std::size_t n = 60;  // past the fixture's window of 40
  KvCache cache = m.new_cache(prompt.size() + n - 1);
  const LlamaModel::Greedy g = m.generate_greedy(prompt, n, cache);
  REQUIRE(g.tokens.size() == n);
  CHECK(g.step_s.size() == n - 1);
  CHECK(cache.len == prompt.size() + n - 1);
  // The loop tqbench's generate ran before: forward, argmax of the last row, feed it back.
  KvCache loop_cache = m.new_cache(prompt.size() + n - 1);
  Matrix logits = m.forward(prompt, loop_cache);
  std::vector<int> loop;
  for (std::size_t i = 0; i < n; ++i) {
    loop.push_back(greedy_token(logits.data() + (logits.rows() - 1) * logits.cols(), static_cast<std::size_t>(logits.cols())));
    if (i + 1 < n) logits = m.forward({loop.back()}, loop_cache);
  }
  CHECK(g.tokens == loop);
  // Stopping at a token it writes: that token is the last one returned.
  KvCache c2 = m.new_cache(prompt.size() + n - 1);
  const int stop = g.tokens[5];
  const std::vector<int> stopped = m.generate_greedy(prompt, n, c2, stop).tokens;
  const auto at = std::find(g.tokens.begin(), g.tokens.end(), stop) - g.tokens.begin();
  CHECK(stopped == std::vector<int>(g.tokens.begin(), g.tokens.begin() + at + 1));
  CHECK(c2.len == prompt.size() + stopped.size() - 1);
  // Bad calls are errors naming what is wrong.
  KvCache small = m.new_cache(prompt.size());
  CHECK_THROWS_WITH_AS(m.generate_greedy(prompt, 5, small), doctest::Contains("do not fit the KV cache"), InputError);
  CHECK_THROWS_WITH_AS(m.generate_greedy(prompt, 5, cache), doctest::Contains("empty KV cache"), InputError);
  CHECK(greedy_token(std::vector<float>{1, 3, 3, 2}.data(), 4) == 1);  // the first of equal maxima, as Eigen's maxCoeff
  const float nan = std::nanf("");
  CHECK(greedy_token(std::vector<float>{nan, -1, nan}.data(), 3) == 1);
}

TEST_CASE("greedy generation on the GPU (a CUDA graph per step) writes the CPU's tokens: fixtures, stories260K, books-14m") {
  if (const std::string why = cuda_forward_unavailable(); !why.empty()) {
    MESSAGE("SKIPPED: GPU generation needs a GPU: " << why);
    return;
  }
  const fs::path shared = shared_dir(), text = shared / "data/books-heldout/heldout.txt";
  std::vector<std::pair<std::string, bool>> models;  // path, real
  for (const char* f : {"llama", "mistral", "qwen2", "qwen3", "gemma"})
    models.emplace_back((fs::path(test::kSourceDir) / "tests/fixtures/hf" / f).string(), false);
  for (const auto& m : {shared / "models/stories260K/stories260K.gguf", shared / "models/books-14m"})
    if (fs::exists(m) && fs::exists(text)) models.emplace_back(m.string(), true);
  constexpr std::size_t kNew = 64;
  for (const auto& [path, real] : models) {
    CAPTURE(path);
    const Checkpoint ck = load_checkpoint(path);
    std::vector<int> prompt = seeded_tokens(12, ck.config.vocab, 5);
    if (real) {
      prompt = ck.tokenizer->encode(read_corpus(text.string()).substr(0, 160));
      prompt.insert(prompt.begin(), ck.tokenizer->bos());
    }
    const LlamaModel cpu(ck);
    KvCache cc = cpu.new_cache(prompt.size() + kNew - 1);
    const std::vector<int> want = cpu.generate_greedy(prompt, kNew, cc).tokens;
    const Matrix cpu_logits = forced_logits(cpu, prompt, want);
    for (const std::string device : {"cuda-fp32", "cuda"}) {
      CAPTURE(device);
      const auto gpu = make_model(ck, device);
      KvCache gc = gpu->new_cache(prompt.size() + kNew - 1);
      const LlamaModel::Greedy g = gpu->generate_greedy(prompt, kNew, gc);
      REQUIRE(g.tokens.size() == kNew);
      CHECK(g.step_s.size() == kNew - 2);  // the first decode step is the graph's eager warm-up, untimed
      const std::size_t same = agree(g.tokens, want);
      // Where they part, the CPU's choice was a near-tie: fp32 on the GPU differs from the CPU by rounding order
      // (1e-4 of a logit at most here), bf16 products by a few hundredths.
      const float tie = std::string(device) == "cuda-fp32" ? 1e-3f : 0.25f;
      const float at = same < kNew ? margin(cpu_logits, static_cast<Eigen::Index>(same)) : 0.0f;
      MESSAGE(fmt::format("{} {}: {} of {} greedy tokens as the CPU's{}; decode step median {:.3f} ms", fs::path(path).filename().string(),
                          device, same, kNew, same < kNew ? fmt::format(" (the CPU's top-2 margin there: {:.4f})", at) : "",
                          1e3 * g.step_s[g.step_s.size() / 2]));
      if (same < kNew) CHECK(at <= tie);
      // The decode graph against the GPU's own prefill kernels: its tokens teacher-forced through one forward give
      // the same argmaxes (up to near-ties of that forward).
      const Matrix gl = forced_logits(*gpu, prompt, g.tokens);
      for (std::size_t i = 0; i < kNew; ++i) {
        const int best = greedy_token(gl.data() + i * gl.cols(), static_cast<std::size_t>(gl.cols()));
        if (best != g.tokens[i]) {
          CAPTURE(i);
          CHECK(margin(gl, static_cast<Eigen::Index>(i)) <= tie);
        }
      }
    }
  }
}
