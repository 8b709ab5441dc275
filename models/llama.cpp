#include "models/llama.hpp"

#include <fmt/format.h>

#include <chrono>
#include <cmath>

#include "common/error.hpp"

namespace tqb {

std::vector<std::string> linear_layer_names(const ModelConfig& c) {
  std::vector<std::string> out{c.tied_embeddings ? "token_embd.weight" : "output.weight"};
  for (int l = 0; l < c.n_layers; ++l)
    for (const char* t : kBlockProjections)
      out.push_back(fmt::format("blk.{}.{}.weight", l, t));
  return out;
}

LlamaModel::LlamaModel(const Checkpoint& ck, const LinearFactory& linear, std::unique_ptr<ForwardOps> ops)
    : c_(ck.config), ops_(ops ? std::move(ops) : make_cpu_forward_ops()) {
  const LinearFactory make = linear ? linear : [](const std::string&, const Matrix& w) { return make_dense_linear(w); };
  embed_ = ck.tensor("token_embd.weight");
  out_norm_ = ck.tensor("output_norm.weight");
  // The output head goes through the factory under its tensor's name, tied or not, so that a spec can
  // quantize it (include 'output\.weight' or, when tied, 'token_embd\.weight'). The input embedding
  // lookup keeps the checkpoint's rows: it is a table read, not a product.
  // A projection's weight: the checkpoint's copy, or (a streamed checkpoint) read from the file for the factory and
  // dropped once it has made the layer.
  auto projection = [&](const std::string& name) {
    if (ck.streamed(name)) return make(name, ck.read(name));
    return make(name, ck.tensor(name));
  };
  head_ = c_.tied_embeddings ? make("token_embd.weight", embed_) : projection("output.weight");
  for (int l = 0; l < c_.n_layers; ++l) {
    const std::string p = fmt::format("blk.{}.", l);
    Layer L;
    L.attn_norm = ck.tensor(p + "attn_norm.weight");
    L.ffn_norm = ck.tensor(p + "ffn_norm.weight");
    if (c_.qk_norm) {
      L.q_norm = ck.tensor(p + "attn_q_norm.weight");
      L.k_norm = ck.tensor(p + "attn_k_norm.weight");
    }
    if (c_.qkv_bias) {
      L.q_bias = ck.tensor(p + "attn_q.bias");
      L.k_bias = ck.tensor(p + "attn_k.bias");
      L.v_bias = ck.tensor(p + "attn_v.bias");
    }
    L.q = projection(p + "attn_q.weight");
    L.k = projection(p + "attn_k.weight");
    L.v = projection(p + "attn_v.weight");
    L.o = projection(p + "attn_output.weight");
    L.gate = projection(p + "ffn_gate.weight");
    L.up = projection(p + "ffn_up.weight");
    L.down = projection(p + "ffn_down.weight");
    layers_.push_back(std::move(L));
  }
  // RoPE frequencies θ_i = base^(−2i/d), i < d/2, in double (Su et al. 2021), divided by the checkpoint's
  // RoPE scaling (linear, Llama 3's bands, GGUF rope_freqs).
  for (int i = 0; i < c_.head_dim / 2; ++i) {
    double f = std::pow(static_cast<double>(c_.rope_theta), -2.0 * i / c_.head_dim);
    if (!c_.rope_freq_divisors.empty()) f /= c_.rope_freq_divisors[static_cast<std::size_t>(i)];
    inv_freq_.push_back(static_cast<float>(f));
  }
  // Every parameter in the backend's memory now (a GPU's upload belongs to loading, not to the first forward).
  ops_->embed({}, embed_, c_.embed_scale, Acts{});
  ops_->param(out_norm_);
  for (const auto& L : layers_)
    for (const Matrix* p : {&L.attn_norm, &L.ffn_norm, &L.q_norm, &L.k_norm, &L.q_bias, &L.k_bias, &L.v_bias})
      if (p->size() > 0) ops_->param(*p);
}

LlamaModel::~LlamaModel() = default;

KvCache LlamaModel::new_cache(std::size_t capacity, std::size_t sequences) const {
  if (sequences == 0) throw InputError("a KV cache needs at least one sequence");
  if (sequences > 1 && kv_) throw InputError("a quantized KV cache holds one sequence; forward the chunks one at a time");
  return ops_->new_cache(c_, capacity, sequences, kv_.get());
}

Matrix LlamaModel::forward(const std::vector<int>& tokens, KvCache& cache, std::size_t logits_rows) const {
  if (tokens.empty()) return Matrix(0, c_.vocab);
  return ops_->to_host(logits(tokens, cache, logits_rows));
}

std::vector<double> LlamaModel::forward_nll(const std::vector<int>& tokens, KvCache& cache, std::size_t logits_rows,
                                            const std::vector<int>& targets) const {
  const std::size_t seqs = cache.sequences, n = tokens.size() / seqs;
  if (tokens.empty() || targets.size() % seqs != 0 || targets.size() / seqs > std::min(logits_rows, n))
    throw InputError("forward_nll: more targets than scored positions");
  check_tokens(targets);
  const Acts out = logits(tokens, cache, logits_rows);
  if (seqs == 1) return ops_->row_nll(out, targets);
  // Each sequence's logits rows that have a target (negative: not scored), then its scored values in order.
  const std::size_t per = targets.size() / seqs, rows = out.rows / seqs;
  std::vector<int> padded(out.rows, -1);
  for (std::size_t s = 0; s < seqs; ++s) std::copy_n(targets.begin() + s * per, per, padded.begin() + s * rows);
  const std::vector<double> all = ops_->row_nll(out, padded);
  std::vector<double> nll(targets.size());
  for (std::size_t s = 0; s < seqs; ++s) std::copy_n(all.begin() + s * rows, per, nll.begin() + s * per);
  return nll;
}

Acts LlamaModel::logits(const std::vector<int>& tokens, KvCache& cache, std::size_t logits_rows) const {
  const std::size_t seqs = cache.sequences, n = tokens.size() / seqs, pos0 = cache.len, total = pos0 + n;
  if (tokens.size() % seqs != 0)
    throw InputError(fmt::format("{} tokens do not split into the cache's {} sequences", tokens.size(), seqs));
  if (cache.capacity() < total)
    throw InputError(fmt::format("sequence of {} tokens does not fit the KV cache ({} positions)", total, cache.capacity()));
  check_tokens(tokens);
  ForwardOps& ops = *ops_;
  const int d = c_.dim;
  const std::size_t all = seqs * n;  // rows: every sequence's n positions, one sequence after the other
  const Acts x = ops.alloc(all, d);
  ops.embed(tokens, embed_, c_.embed_scale, x);
  const Acts h = ops.alloc(all, d);  // the normed stream: each block's input, then the head's
  run_blocks(x, h, seqs, n, 0, c_.n_layers, cache, pos0);
  cache.len = total;
  if (probe_ && pos0 == 0 && kv_) probe_->done = true;
  const std::size_t rows = logits_rows == 0 ? n : std::min(logits_rows, n), first = n - rows;
  const Acts last{h.data, seqs * rows, static_cast<std::size_t>(d), h.owner};
  for (std::size_t s = 0; s < seqs; ++s)  // each sequence's last rows, gathered for one head GEMM
    ops.rms_norm(x.data + (s * n + first) * d, rows, d, ops.param(out_norm_), c_.norm_eps, h.data + s * rows * d);
  const Acts out = ops.alloc(seqs * rows, c_.vocab);
  ops.linear(*head_, last, out);
  return out;
}

void LlamaModel::run_blocks(const Acts& x, const Acts& h, std::size_t seqs, std::size_t n, int first, int last, KvCache& cache,
                            std::size_t pos0) const {
  ForwardOps& ops = *ops_;
  const int d = c_.dim, hd = c_.head_dim, nh = c_.n_heads, nkv = c_.n_kv_heads;
  const std::size_t all = seqs * n;
  const Acts q = ops.alloc(all, nh * hd), k = ops.alloc(all, nkv * hd), v = ops.alloc(all, nkv * hd),
             att = ops.alloc(all, nh * hd), tmp = ops.alloc(all, d), g = ops.alloc(all, c_.hidden), u = ops.alloc(all, c_.hidden);
  const AttentionExtras extras{kv_.get(), probe_};
  for (int l = first; l < last; ++l) {
    const Layer& L = layers_[l];
    ops.rms_norm(x.data, all, d, ops.param(L.attn_norm), c_.norm_eps, h.data);
    ops.linear(*L.q, h, q);
    ops.linear(*L.k, h, k);
    ops.linear(*L.v, h, v);
    if (c_.qkv_bias) {
      ops.add_row(q, ops.param(L.q_bias));
      ops.add_row(k, ops.param(L.k_bias));
      ops.add_row(v, ops.param(L.v_bias));
    }
    if (c_.qk_norm) {  // Qwen3: RMSNorm over each head's vector
      ops.rms_norm(q.data, all * nh, hd, ops.param(L.q_norm), c_.norm_eps, q.data);
      ops.rms_norm(k.data, all * nkv, hd, ops.param(L.k_norm), c_.norm_eps, k.data);
    }
    ops.rope_attention(c_, l, q, k, v, inv_freq_, cache, pos0, n, att, extras);
    ops.linear_add(*L.o, att, x, tmp);
    ops.rms_norm(x.data, all, d, ops.param(L.ffn_norm), c_.norm_eps, h.data);
    // SwiGLU: x += down(silu(h gateᵀ) ⊙ h upᵀ); Gemma's GeGLU: gelu_tanh
    ops.gated_ffn(*L.gate, *L.up, *L.down, c_.ffn_activation, h, x, g, u, tmp);
  }
}


void LlamaModel::check_tokens(const std::vector<int>& tokens) const {
  for (int token : tokens)
    if (token < 0 || token >= c_.vocab)
      throw InputError(fmt::format("token id {} is outside the vocabulary (0..{})", token, c_.vocab - 1));
}

Acts LlamaModel::embed_tokens(const std::vector<int>& tokens) const {
  check_tokens(tokens);
  const Acts x = ops_->alloc(tokens.size(), static_cast<std::size_t>(c_.dim));
  ops_->embed(tokens, embed_, c_.embed_scale, x);
  return x;
}

void LlamaModel::run_blocks(const Acts& x, std::size_t sequences, int first, int last) const {
  if (first < 0 || first > last || last > c_.n_layers)
    throw InputError(fmt::format("run_blocks: blocks [{}, {}) of a model of {}", first, last, c_.n_layers));
  if (sequences == 0 || x.cols != static_cast<std::size_t>(c_.dim) || x.rows % sequences != 0)
    throw InputError(fmt::format("run_blocks: {} x {} rows do not hold {} sequences of width {}", x.rows, x.cols, sequences, c_.dim));
  const std::size_t n = x.rows / sequences;
  KvCache cache = new_cache(n, sequences);
  const Acts h = ops_->alloc(x.rows, static_cast<std::size_t>(c_.dim));
  run_blocks(x, h, sequences, n, first, last, cache, 0);
}

LlamaModel::Greedy LlamaModel::generate_greedy(const std::vector<int>& prompt, std::size_t max_new, KvCache& cache, int stop) const {
  Greedy g;
  if (max_new == 0) return g;
  if (prompt.empty()) throw InputError("greedy generation needs a prompt of at least one token");
  if (cache.len != 0) throw InputError("greedy generation starts from an empty KV cache");
  if (cache.sequences != 1) throw InputError("greedy generation decodes one sequence");
  if (cache.capacity() < prompt.size() + max_new - 1)
    throw InputError(fmt::format("a prompt of {} tokens and {} new ones do not fit the KV cache ({} positions)", prompt.size(), max_new,
                                 cache.capacity()));
  const auto t0 = std::chrono::steady_clock::now();
  const Matrix last = ops_->to_host(logits(prompt, cache, 1));
  g.tokens.push_back(greedy_token(last.data(), static_cast<std::size_t>(last.cols())));
  g.prefill_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (g.tokens.back() == stop || max_new == 1) return g;
  const std::size_t pos0 = cache.len;
  const auto step = [&](int token) { return logits({token}, cache, 1); };
  // A quantized KV cache written by the host's quantizer (models/kv_quant.hpp) takes the host loop, which every backend
  // runs; one the backend codes itself (a GPU's, models/kv_codec.hpp) the backend's own decode.
  const std::vector<int> rest = kv_ && !cache.coded_on_device
                                    ? ops_->ForwardOps::greedy_decode(g.tokens.back(), pos0, max_new - 1, stop, step, &g.step_s)
                                    : ops_->greedy_decode(g.tokens.back(), pos0, max_new - 1, stop, step, &g.step_s);
  g.tokens.insert(g.tokens.end(), rest.begin(), rest.end());
  cache.len = pos0 + rest.size();  // each returned token's predecessor was forwarded (a GPU's replays do not count on the host)
  return g;
}

std::size_t LlamaModel::linear_weight_bytes() const {
  // A tied head that stayed dense shares the embedding's storage (counted in other_weight_bytes).
  std::size_t b = c_.tied_embeddings && head_->kernel() == "dense_fp32" ? 0 : head_->weight_bytes();
  for (const auto& L : layers_)
    for (const Linear* p : {L.q.get(), L.k.get(), L.v.get(), L.o.get(), L.gate.get(), L.up.get(), L.down.get()})
      b += p->weight_bytes();
  return b;
}

std::size_t LlamaModel::other_weight_bytes() const {
  std::size_t n = embed_.size() + out_norm_.size();
  for (const auto& L : layers_)
    n += L.attn_norm.size() + L.ffn_norm.size() + L.q_norm.size() + L.k_norm.size() + L.q_bias.size() +
         L.k_bias.size() + L.v_bias.size();
  return n * sizeof(float);
}

}  // namespace tqb
