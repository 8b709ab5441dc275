#include "models/llama.hpp"

#include <fmt/format.h>

#include <cmath>

#include "common/error.hpp"
#include "kernels/cpu/dense_blas.hpp"
#include "models/activations.hpp"

namespace tqb {
namespace {

// y = x / sqrt(mean(x²) + eps) · w, per row of an n × d block with row stride `stride`.
void rms_norm(const float* x, std::size_t n, std::size_t d, std::size_t stride, const float* w, float eps, float* y,
              std::size_t y_stride) {
  for (std::size_t i = 0; i < n; ++i) {
    const float* xi = x + i * stride;
    double ss = 0;
    for (std::size_t k = 0; k < d; ++k) ss += static_cast<double>(xi[k]) * xi[k];
    const float s = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(d) + eps));
    float* yi = y + i * y_stride;
    for (std::size_t k = 0; k < d; ++k) yi[k] = xi[k] * s * w[k];
  }
}

}  // namespace

LlamaModel::LlamaModel(const Checkpoint& ck, const LinearFactory& linear) : c_(ck.config) {
  const LinearFactory make = linear ? linear : [](const std::string&, const Matrix& w) { return make_dense_linear(w); };
  embed_ = ck.tensor("token_embd.weight");
  out_norm_ = ck.tensor("output_norm.weight");
  // The output head goes through the factory under its tensor's name, tied or not, so that a spec can
  // quantize it (include 'output\.weight' or, when tied, 'token_embd\.weight'). The input embedding
  // lookup keeps the checkpoint's rows: it is a table read, not a product.
  head_ = c_.tied_embeddings ? make("token_embd.weight", embed_) : make("output.weight", ck.tensor("output.weight"));
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
    L.q = make(p + "attn_q.weight", ck.tensor(p + "attn_q.weight"));
    L.k = make(p + "attn_k.weight", ck.tensor(p + "attn_k.weight"));
    L.v = make(p + "attn_v.weight", ck.tensor(p + "attn_v.weight"));
    L.o = make(p + "attn_output.weight", ck.tensor(p + "attn_output.weight"));
    L.gate = make(p + "ffn_gate.weight", ck.tensor(p + "ffn_gate.weight"));
    L.up = make(p + "ffn_up.weight", ck.tensor(p + "ffn_up.weight"));
    L.down = make(p + "ffn_down.weight", ck.tensor(p + "ffn_down.weight"));
    layers_.push_back(std::move(L));
  }
  // RoPE frequencies θ_i = base^(−2i/d), i < d/2, in double (Su et al. 2021), divided by the checkpoint's
  // RoPE scaling (linear, Llama 3's bands, GGUF rope_freqs).
  for (int i = 0; i < c_.head_dim / 2; ++i) {
    double f = std::pow(static_cast<double>(c_.rope_theta), -2.0 * i / c_.head_dim);
    if (!c_.rope_freq_divisors.empty()) f /= c_.rope_freq_divisors[static_cast<std::size_t>(i)];
    inv_freq_.push_back(static_cast<float>(f));
  }
}

KvCache LlamaModel::new_cache(std::size_t capacity) const {
  KvCache c;
  for (int l = 0; l < c_.n_layers; ++l) {
    c.k.emplace_back(capacity, c_.n_kv_heads * c_.head_dim);
    c.v.emplace_back(capacity, c_.n_kv_heads * c_.head_dim);
  }
  return c;
}

void LlamaModel::rope(float* x, int heads, std::size_t n, std::size_t pos0) const {
  const int hd = c_.head_dim, half = hd / 2;
  for (std::size_t t = 0; t < n; ++t) {
    const double pos = static_cast<double>(pos0 + t);
    for (int i = 0; i < half; ++i) {
      const double a = pos * inv_freq_[i];
      const float cs = static_cast<float>(std::cos(a)), sn = static_cast<float>(std::sin(a));
      for (int h = 0; h < heads; ++h) {
        float* v = x + (t * heads + h) * hd;
        // Interleaved (GGUF llama): pairs (2i, 2i+1). Rotate-half (Hugging Face): pairs (i, i + d/2).
        const int a0 = c_.rope_interleaved ? 2 * i : i, a1 = c_.rope_interleaved ? 2 * i + 1 : i + half;
        const float x0 = v[a0], x1 = v[a1];
        v[a0] = x0 * cs - x1 * sn;
        v[a1] = x0 * sn + x1 * cs;
      }
    }
  }
}

Matrix LlamaModel::forward(const std::vector<int>& tokens, KvCache& cache, std::size_t logits_rows) const {
  const std::size_t n = tokens.size(), pos0 = cache.len, total = pos0 + n;
  if (n == 0) return Matrix(0, c_.vocab);
  if (cache.k.empty() || total > static_cast<std::size_t>(cache.k[0].rows()))
    throw InputError(fmt::format("sequence of {} tokens does not fit the KV cache ({} positions)", total,
                                 cache.k.empty() ? 0 : cache.k[0].rows()));
  const int d = c_.dim, hd = c_.head_dim, nh = c_.n_heads, nkv = c_.n_kv_heads, group = nh / nkv;
  Matrix x(n, d);
  for (std::size_t t = 0; t < n; ++t) {
    if (tokens[t] < 0 || tokens[t] >= c_.vocab)
      throw InputError(fmt::format("token id {} is outside the vocabulary (0..{})", tokens[t], c_.vocab - 1));
    x.row(t) = embed_.row(tokens[t]);
  }
  if (c_.embed_scale != 1.0f) x *= c_.embed_scale;
  Matrix h(n, d), q(n, nh * hd), k(n, nkv * hd), v(n, nkv * hd), att(n, nh * hd), tmp(n, d);
  Matrix g(n, c_.hidden), u(n, c_.hidden);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  for (int l = 0; l < c_.n_layers; ++l) {
    const Layer& L = layers_[l];
    rms_norm(x.data(), n, d, d, L.attn_norm.data(), c_.norm_eps, h.data(), d);
    L.q->forward(h.data(), n, q.data());
    L.k->forward(h.data(), n, k.data());
    L.v->forward(h.data(), n, v.data());
    if (c_.qkv_bias) {
      q.rowwise() += L.q_bias.row(0);
      k.rowwise() += L.k_bias.row(0);
      v.rowwise() += L.v_bias.row(0);
    }
    if (c_.qk_norm) {  // Qwen3: RMSNorm over each head's vector
      rms_norm(q.data(), n * nh, hd, hd, L.q_norm.data(), c_.norm_eps, q.data(), hd);
      rms_norm(k.data(), n * nkv, hd, hd, L.k_norm.data(), c_.norm_eps, k.data(), hd);
    }
    rope(q.data(), nh, n, pos0);
    rope(k.data(), nkv, n, pos0);
    const bool kv_quantized = kv_ && kv_->quantizes(l);
    if (kv_quantized) {
      kv_->write(l, pos0, k, v, cache);  // what attention reads: the dequantized cache
      if (probe_ && pos0 == 0 && !probe_->done)
        accumulate_attention_error(c_, n, q, k, v, cache.k[l].topRows(n), cache.v[l].topRows(n), *probe_);
    } else {
      cache.k[l].middleRows(pos0, n) = k;
      cache.v[l].middleRows(pos0, n) = v;
    }
    // Estimator path: every head's scores from the key codes, before the parallel loop (the kernels run
    // their own threads).
    const bool estimated = kv_quantized && kv_->estimator();
    std::vector<float> estimated_scores;
    if (estimated) {
      estimated_scores.resize(static_cast<std::size_t>(nh) * n * total);
      for (int hh = 0; hh < nh; ++hh)
        kv_->estimator_scores(l, hh / group, q.data() + hh * hd, static_cast<std::size_t>(nh) * hd, n, cache,
                              estimated_scores.data() + static_cast<std::size_t>(hh) * n * total, total, scale);
    }
    // Causal attention per head: query t sees keys 0 … pos0 + t (Mistral: only the last sliding_window).
#pragma omp parallel for schedule(static)
    for (int hh = 0; hh < nh; ++hh) {
      const int kvh = hh / group;
      const std::size_t ld_kv = static_cast<std::size_t>(nkv) * hd, ld_q = static_cast<std::size_t>(nh) * hd;
      const float* K = cache.k[l].data() + kvh * hd;  // total × hd, row stride ld_kv
      const float* V = cache.v[l].data() + kvh * hd;
      // scale · Q Kᵀ, n × total, in a per-thread buffer that only grows: a fresh 1 MB matrix per head and
      // layer cost page faults and kernel page zeroing (13% of a SmolLM2 perplexity run in a profile).
      thread_local std::vector<float> scores;
      if (scores.size() < n * total) scores.resize(n * total);
      Eigen::Map<Matrix> S(scores.data(), static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(total));
      if (estimated)
        std::copy_n(estimated_scores.data() + static_cast<std::size_t>(hh) * n * total, n * total, S.data());
      else
        gemm_xwt(n, total, hd, q.data() + hh * hd, ld_q, K, ld_kv, S.data(), total, scale);
      for (std::size_t t = 0; t < n; ++t) {
        const std::size_t visible = pos0 + t + 1, window = static_cast<std::size_t>(c_.sliding_window);
        const std::size_t first = window > 0 && visible > window ? visible - window : 0;
        float* row = S.row(t).data();
        std::fill(row, row + first, 0.0f);
        softmax_row(row + first, visible - first, total - first);
      }
      gemm_xb(n, hd, total, S.data(), total, V, ld_kv, att.data() + hh * hd, ld_q);  // S V
    }
    L.o->forward(att.data(), n, tmp.data());
    x += tmp;
    rms_norm(x.data(), n, d, d, L.ffn_norm.data(), c_.norm_eps, h.data(), d);
    L.gate->forward(h.data(), n, g.data());
    L.up->forward(h.data(), n, u.data());
    // SwiGLU: silu(g) ⊙ u; Gemma's GeGLU: gelu_tanh(g) ⊙ u.
    const bool geglu = c_.ffn_activation == ModelConfig::Activation::gelu_tanh;
#pragma omp parallel for schedule(static)
    for (std::ptrdiff_t t = 0; t < static_cast<std::ptrdiff_t>(n); ++t)
      (geglu ? gelu_tanh_mul : silu_mul)(g.row(t).data(), u.row(t).data(), c_.hidden);
    L.down->forward(g.data(), n, tmp.data());
    x += tmp;
  }
  cache.len = total;
  if (probe_ && pos0 == 0 && kv_) probe_->done = true;
  const std::size_t rows = logits_rows == 0 ? n : std::min(logits_rows, n), first = n - rows;
  rms_norm(x.data() + first * d, rows, d, d, out_norm_.data(), c_.norm_eps, h.data(), d);
  Matrix logits(rows, c_.vocab);
  head_->forward(h.data(), rows, logits.data());
  return logits;
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
