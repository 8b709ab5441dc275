#pragma once
// A model row's per-chunk losses (issue 26): what two rows on the same data pair over, and what intervals over
// chunks (and seeds) are computed from. Stored in the row's chunk_losses column as JSON, doubles in shortest
// round-trip form, so what is read back is what was computed.
#include <string>
#include <vector>

#include "eval/perplexity.hpp"

namespace tqb {

struct ChunkLosses {
  // The chunking: two rows pair only when all of it is equal.
  std::string corpus, method;
  int ctx = 0;
  std::size_t first_scored = 0, tokens_per_chunk = 0;
  // Per chunk, in order: the mean NLL of its scored tokens, the mean KL-divergence against the baseline (empty
  // without one), and the baseline's mean NLL on the same tokens (empty in rows written before it was stored).
  std::vector<double> nll, kld, baseline_nll, top1;  // top1: fraction of scored tokens whose top token is the baseline's

  bool same_chunking(const ChunkLosses& o) const {
    return corpus == o.corpus && method == o.method && ctx == o.ctx && first_scored == o.first_scored &&
           tokens_per_chunk == o.tokens_per_chunk && nll.size() == o.nll.size();
  }
  std::string chunking_text() const;  // "N chunks of T scored tokens (corpus, method, ctx)"
};

// [repeat][chunk] of one field over a point's repeats (eval/paired.hpp's LossMatrix); empty when a repeat lacks the
// field (a row without a baseline), so callers report no interval rather than a wrong one.
std::vector<std::vector<double>> loss_matrix(const std::vector<ChunkLosses>& repeats, std::vector<double> ChunkLosses::*field);

ChunkLosses chunk_losses_of(const PerplexityResult& result, const PerplexityResult& baseline, const std::string& corpus,
                            const std::string& method, int ctx);
std::string to_json(const ChunkLosses& c);
// Throws InputError naming `where` when `json` is not what to_json writes.
ChunkLosses chunk_losses_from_json(const std::string& json, const std::string& where);

}  // namespace tqb
