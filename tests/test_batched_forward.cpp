// Several chunks in one forward (KvCache::sequences; PerplexityConfig::batch): each sequence's positions,
// causal mask and cache are its own, so a batch gives every chunk the perplexity it has alone. On the CPU
// backend the products are the same OpenBLAS GEMMs over more rows: equal to 1e-6 (the order of a row's sums
// does not depend on the rows beside it in practice, but BLAS does not promise it).
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>

#include "common/error.hpp"
#include "eval/perplexity.hpp"
#include "test_util.hpp"

using namespace tqb;
using test::seeded_tokens;
namespace fs = std::filesystem;

TEST_CASE("chunks forwarded together score as they do one at a time (causal, window, q/k norm, bias, both methods)") {
  for (const char* fixture : {"llama", "mistral", "qwen3", "qwen2"}) {
    CAPTURE(fixture);
    const Checkpoint ck = load_checkpoint((fs::path(test::kSourceDir) / "tests/fixtures/hf" / fixture).string());
    const LlamaModel m(ck);
    const std::vector<int> tokens = seeded_tokens(5 * 48, ck.config.vocab, 3);
    for (const char* method : {"llamacpp", "windowed"}) {
      CAPTURE(method);
      PerplexityConfig cfg;
      cfg.method = method;
      cfg.ctx = 48;
      cfg.chunks = 5;
      cfg.batch = 1;
      BaselineLogProbs base;
      const PerplexityResult one = evaluate_perplexity(m, tokens, cfg, &base, nullptr);
      for (int batch : {2, 5, 0}) {  // 2: the last forward holds one chunk; 0: automatic (one on the CPU)
        CAPTURE(batch);
        cfg.batch = batch;
        const PerplexityResult together = evaluate_perplexity(m, tokens, cfg);
        CHECK(together.batch == (batch == 0 ? 1u : static_cast<std::size_t>(batch)));
        CHECK(together.scored == one.scored);
        CHECK(std::fabs(together.ppl - one.ppl) <= 1e-6 * one.ppl);
        // The host's scoring with KLD against the one-at-a-time run's log-probabilities: no divergence beyond
        // float rounding (logits equal to 1e-6: OpenBLAS takes another path for the head's fewer rows; the KL
        // sum of float log-probabilities has a floor of ~1e-8 then).
        const PerplexityResult kld = evaluate_perplexity(m, tokens, cfg, nullptr, &base);
        CHECK(std::fabs(kld.ppl - one.ppl) <= 1e-6 * one.ppl);
        CHECK(kld.kld_mean < 1e-6);
        CHECK(kld.top1_agreement == 1.0);
      }
    }
  }
}

TEST_CASE("a batched cache: tokens that do not split into its sequences, and zero sequences, are refused") {
  const Checkpoint ck = load_checkpoint((fs::path(test::kSourceDir) / "tests/fixtures/hf/llama").string());
  LlamaModel m(ck);
  KvCache cache = m.new_cache(16, 3);
  CHECK(cache.capacity() == 16);
  CHECK_THROWS_WITH_AS(m.forward(seeded_tokens(10, ck.config.vocab, 1), cache), doctest::Contains("do not split into the cache's 3 sequences"),
                       InputError);
  CHECK_THROWS_AS(m.new_cache(16, 0), InputError);
}
