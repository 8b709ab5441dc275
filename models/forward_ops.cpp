// The composite steps' defaults: exactly the primitive ops in the order the block was first written (the CPU
// reference runs these).
#include "models/forward_ops.hpp"

#include <chrono>
#include <limits>

namespace tqb {

int greedy_token(const float* logits, std::size_t vocab) {
  float best = -std::numeric_limits<float>::infinity();
  std::size_t at = 0;
  for (std::size_t i = 0; i < vocab; ++i)
    if (logits[i] > best) {
      best = logits[i];
      at = i;
    }
  return static_cast<int>(at);
}

std::vector<int> ForwardOps::greedy_decode(int first, std::size_t, std::size_t n, int stop, const std::function<Acts(int)>& step,
                                           std::vector<double>* step_s) {
  std::vector<int> out;
  int token = first;
  for (std::size_t i = 0; i < n; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    const Matrix logits = to_host(step(token));
    token = greedy_token(logits.data() + (logits.rows() - 1) * logits.cols(), static_cast<std::size_t>(logits.cols()));
    if (step_s) step_s->push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    out.push_back(token);
    if (token == stop) break;
  }
  return out;
}

void ForwardOps::linear_add(const Linear& f, const Acts& x, const Acts& y, const Acts& tmp) {
  linear(f, x, tmp);
  add(y, tmp);
}

void ForwardOps::gated_ffn(const Linear& gate, const Linear& up, const Linear& down, ModelConfig::Activation act, const Acts& h,
                           const Acts& x, const Acts& g, const Acts& u, const Acts& tmp) {
  linear(gate, h, g);
  linear(up, h, u);
  glu(act, g, u);
  linear_add(down, g, x, tmp);
}

void ForwardOps::rope_attention(const ModelConfig& c, int l, const Acts& q, const Acts& k, const Acts& v, const std::vector<float>& inv_freq,
                                KvCache& cache, std::size_t pos0, std::size_t seq_rows, const Acts& out, const AttentionExtras& extras) {
  rope(q, c.n_heads, c, inv_freq, pos0, seq_rows);
  rope(k, c.n_kv_heads, c, inv_freq, pos0, seq_rows);
  attention(c, l, q, k, v, cache, pos0, out, extras);
}

}  // namespace tqb
