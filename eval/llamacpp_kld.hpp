#pragma once
// llama-perplexity's KL-divergence base file (`--kl-divergence-base FILE`), read and written, so that a base
// computed by llama.cpp can score a tqbench model and the reverse. The layout, as llama.cpp's perplexity tool
// writes and reads it (little-endian):
//   "_logits_" (8 bytes), uint32 n_ctx, int32 n_vocab, int32 n_chunk,
//   int32 tokens[n_chunk · n_ctx]   the evaluated stream (BOS first when the vocabulary adds it; the chunks'
//                                   first tokens as in the text, replaced by BOS only when evaluated),
//   then for each chunk, for each scored position (ctx/2 … ctx − 2, predicting the next token), a record of
//   nv = 2·⌈n_vocab/2⌉ + 4 uint16: two floats (scale, min_log_prob), then per vocabulary entry
//   q = round((log p − min_log_prob) / scale), 0 for log p ≤ min_log_prob, where min_log_prob is the
//   smallest log-probability but no lower than the largest minus 16, and scale = (max − min_log_prob)/65535.
// A record's log-probabilities are scale·q + min_log_prob; llama.cpp's KLD leaves out entries at or below −16.
#include <cstdint>
#include <string>
#include <vector>

#include "common/atomic_file.hpp"
#include "eval/perplexity.hpp"

namespace tqb {

struct LlamacppKldBase {
  std::uint32_t ctx = 0;
  std::size_t chunks = 0;
  std::vector<int> tokens;  // chunks · ctx
  BaselineLogProbs log_probs;  // dequantized, with floor −16 (llama.cpp's rule)
};

// From a baseline run's log-probabilities (evaluate_perplexity's `save`, llamacpp method): `stream` is the
// token stream the chunks were cut from (llamacpp_token_stream). RunError on a failed write (AtomicFile).
void write_llamacpp_kld_base(const std::string& path, const std::vector<int>& stream, std::uint32_t ctx, std::size_t chunks,
                             const BaselineLogProbs& base);
// The same into a file opened earlier (committed here): a command opens it before its run, so that a path that
// cannot be written fails before the evaluation, not after it.
void write_llamacpp_kld_base(AtomicFile& out, const std::vector<int>& stream, std::uint32_t ctx, std::size_t chunks,
                             const BaselineLogProbs& base);
// ModelFileError naming the file and what is wrong (magic, sizes, truncation, token ids outside the vocabulary).
LlamacppKldBase read_llamacpp_kld_base(const std::string& path, std::size_t vocab);

}  // namespace tqb
