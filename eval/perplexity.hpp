#pragma once
// Perplexity and KL-divergence of a model on a token stream (REFERENCE.md, "Perplexity, the
// llama.cpp way"):
//   llamacpp: exactly llama-perplexity's chunking: when the tokenizer adds BOS, the token stream is BOS
//             followed by the text's tokens (llama.cpp tokenizes the file as one prompt); non-overlapping
//             chunks of ctx tokens are cut from that stream, each run with an empty cache and its first
//             token replaced by BOS; only the second half is scored (logits of positions ctx/2 … ctx−2
//             predict the next token).
//   windowed: non-overlapping windows of ctx tokens of the bare text, every next-token prediction in a
//             window scored, no BOS (the open-source TurboQuant-for-weights evaluation: WikiText, windows of
//             512, all tokens scored), so that its tables compare like with like.
// PPL = exp(mean NLL) ± PPL·sqrt(var(NLL)/(N−1)). KLD compares every scored token's distribution with
// the baseline model's, saved from a first run.
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "models/llama.hpp"

namespace tqb {

struct PerplexityConfig {
  std::string method = "llamacpp";  // llamacpp | windowed
  int ctx = 512;
  int chunks = 20;  // chunks or windows to score; 0 = all the text allows
  bool add_bos = false;
  int bos = -1;
  // The tokens given are already the llamacpp stream (BOS first where the vocabulary adds it): a llama.cpp
  // KL-divergence base file holds it so (eval/llamacpp_kld.hpp).
  bool stream_ready = false;
  // Chunks forwarded together (one GEMM per projection for all of them; the result is the same up to the
  // backend's rounding). 0: automatic, enough chunks for about kAutoBatchTokens tokens on a GPU, one on the CPU
  // (whose results then stay bit for bit those of one chunk at a time).
  int batch = 0;
  static constexpr int kAutoBatchTokens = 8192;
};

// The token stream the llamacpp method cuts its chunks from: BOS, then the text's tokens, when the
// vocabulary adds BOS (llama-perplexity tokenizes the file as one prompt); the text's tokens otherwise.
std::vector<int> llamacpp_token_stream(const std::vector<int>& text, const PerplexityConfig& cfg);

// Log-probabilities of the baseline model at every scored position (scored × vocab, fp32):
// 4·vocab bytes per scored token (SmolLM2, 20 chunks of 512: 1.0 GB).
struct BaselineLogProbs {
  std::size_t vocab = 0;
  std::vector<float> data;
  // Entries at or below this log-probability are left out of the KL sum (−16 for a llama.cpp base file,
  // as llama.cpp does; none for tqbench's own exact base).
  float floor = -INFINITY;
};

struct PerplexityResult {
  double ppl = 0, ppl_stderr = 0;
  std::size_t scored = 0, chunks = 0, batch = 1;  // batch: chunks per forward
  double seconds = 0, tokens_per_second = 0;  // forward throughput over every evaluated token
  bool has_kld = false;
  double kld_mean = 0, kld_median = 0, kld_p99 = 0, top1_agreement = 0;
  // Per chunk, in order: the mean NLL of its scored tokens (and with a base, its mean KLD). Rows evaluated on the
  // same chunks pair over them (eval/paired.hpp): the unit of a perplexity's uncertainty.
  std::vector<double> chunk_nll, chunk_kld, chunk_top1;  // per chunk: mean NLL; with a baseline, mean KLD and top-1 agreement
  std::size_t first_scored = 0;  // position of the first scored logit row in each chunk (tokens first+1 … ctx−1 scored)
};

// Chunks a run scores from a stream of `tokens` tokens: cfg.chunks, at most what the stream holds (0: none fits).
std::size_t perplexity_chunks(const PerplexityConfig& cfg, std::size_t tokens);
// Chunks per forward for that run (cfg.batch, or the automatic choice on a GPU or the CPU); at least 1.
std::size_t perplexity_batch(const PerplexityConfig& cfg, bool gpu, std::size_t tokens);

// progress(chunk, chunks, running ppl) after each chunk. With `save`, the log-probabilities of the
// scored tokens are stored there (the baseline run); with `base`, KLD against them is computed.
// Throws InputError when the text is shorter than one chunk.
PerplexityResult evaluate_perplexity(const LlamaModel& model, const std::vector<int>& tokens, const PerplexityConfig& cfg,
                                     BaselineLogProbs* save = nullptr, const BaselineLogProbs* base = nullptr,
                                     const std::function<void(std::size_t, std::size_t, double)>& progress = {});

}  // namespace tqb
