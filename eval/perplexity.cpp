#include "eval/perplexity.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>

#include "common/error.hpp"
#include "models/log_softmax.hpp"

namespace tqb {

std::vector<int> llamacpp_token_stream(const std::vector<int>& text, const PerplexityConfig& cfg) {
  if (cfg.method == "windowed" || !cfg.add_bos || cfg.bos < 0) return text;
  std::vector<int> s;
  s.reserve(text.size() + 1);
  s.push_back(cfg.bos);
  s.insert(s.end(), text.begin(), text.end());
  return s;
}

std::size_t perplexity_chunks(const PerplexityConfig& cfg, std::size_t tokens) {
  const std::size_t available = tokens / static_cast<std::size_t>(std::max(1, cfg.ctx));
  return cfg.chunks > 0 ? std::min<std::size_t>(cfg.chunks, available) : available;
}

std::size_t perplexity_batch(const PerplexityConfig& cfg, bool gpu, std::size_t tokens) {
  const std::size_t ctx = static_cast<std::size_t>(std::max(1, cfg.ctx)), chunks = perplexity_chunks(cfg, tokens);
  const std::size_t batch = cfg.batch > 0 ? static_cast<std::size_t>(cfg.batch)
                            : gpu         ? std::max<std::size_t>(1, PerplexityConfig::kAutoBatchTokens / ctx)
                                          : 1;
  return std::max<std::size_t>(1, std::min(batch, chunks));
}

PerplexityResult evaluate_perplexity(const LlamaModel& model, const std::vector<int>& text_tokens, const PerplexityConfig& cfg,
                                     BaselineLogProbs* save, const BaselineLogProbs* base,
                                     const std::function<void(std::size_t, std::size_t, double)>& progress) {
  const bool windowed = cfg.method == "windowed";
  // llama-perplexity tokenizes the file as one prompt, so a vocabulary that adds BOS puts it at the start
  // of the stream, and the chunks are cut from that stream: each starts one token earlier than chunks of the
  // bare text would (stories260K: 92.3507 against 91.7339 at ctx 256, 40 chunks). The windowed method
  // (the open-source TurboQuant-for-weights evaluation) cuts the bare text and replaces nothing.
  const bool bos_stream = !windowed && cfg.add_bos && cfg.bos >= 0;
  std::vector<int> with_bos;
  if (bos_stream && !cfg.stream_ready) with_bos = llamacpp_token_stream(text_tokens, cfg);
  const std::vector<int>& tokens = bos_stream && !cfg.stream_ready ? with_bos : text_tokens;
  const std::size_t ctx = static_cast<std::size_t>(cfg.ctx);
  const std::size_t chunks = perplexity_chunks(cfg, tokens.size());
  if (chunks == 0) throw InputError(fmt::format("the corpus has {} tokens, fewer than one chunk of {}", tokens.size(), ctx));
  const std::size_t first = windowed ? 0 : ctx / 2;  // first scored logit row
  const std::size_t vocab = static_cast<std::size_t>(model.config().vocab);
  if (save) {
    save->vocab = vocab;
    save->data.assign(chunks * (ctx - 1 - first) * vocab, 0.0f);
  }
  if (base && base->data.size() != chunks * (ctx - 1 - first) * vocab)
    throw InputError("the baseline log-probabilities do not match this evaluation (chunks, ctx or vocabulary differ)");

  PerplexityResult r;
  double sum = 0, sum2 = 0;
  std::vector<double> kld;
  std::size_t agree = 0, row = 0;
  const auto t0 = std::chrono::steady_clock::now();
  const std::size_t batch = model.kv_quantizer() ? 1 : perplexity_batch(cfg, std::string(model.device()) != "cpu", tokens.size());
  r.batch = batch;  // a quantized cache holds one sequence
  const std::size_t rows = ctx - 1 - first;  // scored positions per chunk: first .. ctx − 2 predict the next token
  for (std::size_t c0 = 0; c0 < chunks; c0 += batch) {
    const std::size_t seqs = std::min(batch, chunks - c0);
    std::vector<int> batch_tokens, targets;  // the chunks one after the other; each chunk's scored next tokens
    batch_tokens.reserve(seqs * ctx);
    for (std::size_t c = c0; c < c0 + seqs; ++c) {
      std::vector<int> chunk(tokens.begin() + c * ctx, tokens.begin() + (c + 1) * ctx);
      if (bos_stream) chunk[0] = cfg.bos;  // as llama-perplexity: every chunk starts with BOS
      batch_tokens.insert(batch_tokens.end(), chunk.begin(), chunk.end());
      targets.insert(targets.end(), chunk.begin() + static_cast<std::ptrdiff_t>(first) + 1, chunk.end());
    }
    KvCache cache = model.new_cache(ctx, seqs);
    // Only positions first .. ctx − 1 are scored: the output head runs for those rows only.
    std::vector<double> nll(seqs * rows), kl(base ? seqs * rows : 0);
    std::vector<char> same(base ? seqs * rows : 0);
    if (!save && !base) {  // perplexity alone: the backend scores its own logits (a GPU's stay on the GPU)
      nll = model.forward_nll(batch_tokens, cache, ctx - first, targets);
    } else {
      // The logits on the host, each scored row on its own (a log-softmax over the vocabulary: 128k wide for
      // Llama 3), in parallel; the sums below run in row order, so the result is the serial one.
      const Matrix logits = model.forward(batch_tokens, cache, ctx - first);
#pragma omp parallel
      {
        std::vector<float> logp(vocab);
#pragma omp for schedule(static)
        for (std::ptrdiff_t i = 0; i < static_cast<std::ptrdiff_t>(seqs * rows); ++i) {
          const std::size_t s = static_cast<std::size_t>(i) / rows, j = static_cast<std::size_t>(i) % rows;
          const float* z = logits.row(static_cast<Eigen::Index>(s * (rows + 1) + j)).data();
          const double lse = log_sum_exp(z, vocab);
          for (std::size_t v = 0; v < vocab; ++v) logp[v] = static_cast<float>(z[v] - lse);
          nll[i] = -logp[targets[i]];
          if (save) std::copy(logp.begin(), logp.end(), save->data.begin() + (row + i) * vocab);
          if (base) {
            const float* lb = base->data.data() + (row + i) * vocab;
            double k = 0;
            for (std::size_t v = 0; v < vocab; ++v)
              if (lb[v] > base->floor) k += std::exp(static_cast<double>(lb[v])) * (lb[v] - logp[v]);
            kl[i] = std::max(0.0, k);
            same[i] = std::max_element(lb, lb + vocab) - lb == std::max_element(logp.begin(), logp.end()) - logp.begin();
          }
        }
      }
    }
    double chunk_sum = 0, chunk_kl = 0, chunk_same = 0;
    for (std::size_t i = 0; i < seqs * rows; ++i, ++row) {
      sum += nll[i];
      sum2 += nll[i] * nll[i];
      chunk_sum += nll[i];
      if (base) {
        kld.push_back(kl[i]);
        agree += same[i] != 0;
        chunk_same += same[i] != 0;
        chunk_kl += kl[i];
      }
      if ((i + 1) % rows == 0) {  // a chunk is complete
        r.chunk_nll.push_back(chunk_sum / static_cast<double>(rows));
        if (base) {
          r.chunk_kld.push_back(chunk_kl / static_cast<double>(rows));
          r.chunk_top1.push_back(chunk_same / static_cast<double>(rows));
        }
        chunk_sum = chunk_kl = chunk_same = 0;
        if (progress) progress(c0 + (i + 1) / rows, chunks, std::exp(sum / static_cast<double>(row + 1)));
      }
    }
    r.scored = row;
  }
  r.chunks = chunks;
  r.first_scored = first;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.tokens_per_second = static_cast<double>(chunks * ctx) / r.seconds;
  const double n = static_cast<double>(r.scored);
  const double mean = sum / n;
  r.ppl = std::exp(mean);
  r.ppl_stderr = n > 1 ? r.ppl * std::sqrt(std::max(0.0, sum2 / n - mean * mean) / (n - 1)) : 0.0;
  if (base) {
    r.has_kld = true;
    double s = 0;
    for (double k : kld) s += k;
    r.kld_mean = s / n;
    std::sort(kld.begin(), kld.end());
    r.kld_median = kld[kld.size() / 2];
    r.kld_p99 = kld[std::min(kld.size() - 1, static_cast<std::size_t>(0.99 * static_cast<double>(kld.size())))];
    r.top1_agreement = static_cast<double>(agree) / n;
  }
  return r;
}

}  // namespace tqb
