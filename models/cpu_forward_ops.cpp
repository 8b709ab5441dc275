// The CPU backend of the forward (forward_ops.hpp): host fp32 arrays, the reference every other backend is
// compared with. The arithmetic is the forward's as it was written before the ops existed, step for step.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "common/error.hpp"
#include "kernels/cpu/dense_blas.hpp"
#include "models/activations.hpp"
#include "models/forward_ops.hpp"
#include "models/log_softmax.hpp"

namespace tqb {
namespace {

// Eigen's rank update in double (the lower triangle), then mirrored.
class HostInputStatistics final : public InputStatisticsAccumulator {
 public:
  explicit HostInputStatistics(std::size_t d) : d_(static_cast<Eigen::Index>(d)) { reset(); }
  void add(const float* x, std::size_t n) override {
    const Eigen::Map<const Matrix> X(x, static_cast<Eigen::Index>(n), d_);
    const Eigen::MatrixXd Xd = X.cast<double>();
    s_.hessian.selfadjointView<Eigen::Lower>().rankUpdate(Xd.transpose());
    s_.mean_abs += Xd.cwiseAbs().colwise().sum().transpose();  // a sum until finish()
    s_.samples += n;
  }
  InputStatistics finish() override {
    InputStatistics out = std::move(s_);
    out.hessian.triangularView<Eigen::StrictlyUpper>() = out.hessian.transpose();
    if (out.samples) out.mean_abs /= static_cast<double>(out.samples);
    reset();
    return out;
  }

 private:
  void reset() { s_ = InputStatistics{Eigen::MatrixXd::Zero(d_, d_), Eigen::VectorXd::Zero(d_), 0}; }
  Eigen::Index d_;
  InputStatistics s_;
};

class CpuForwardOps final : public ForwardOps {
 public:
  const char* device() const override { return "cpu"; }
  Acts alloc(std::size_t rows, std::size_t cols) override {
    std::shared_ptr<float[]> buffer(new float[rows * cols]);
    return {buffer.get(), rows, cols, buffer};
  }
  const float* param(const Matrix& host) override { return host.data(); }
  KvCache new_cache(const ModelConfig& c, std::size_t capacity, std::size_t sequences, const KvQuantizer*) override {
    KvCache cache;
    cache.sequences = sequences;
    const auto rows = static_cast<Eigen::Index>(capacity * sequences);
    for (int l = 0; l < c.n_layers; ++l) {
      cache.k.emplace_back(rows, c.n_kv_heads * c.head_dim);
      cache.v.emplace_back(rows, c.n_kv_heads * c.head_dim);
    }
    return cache;
  }

  void embed(const std::vector<int>& tokens, const Matrix& table, float scale, const Acts& x) override {
    if (tokens.empty()) return;
    Eigen::Map<Matrix> X(x.data, static_cast<Eigen::Index>(x.rows), static_cast<Eigen::Index>(x.cols));
    for (std::size_t t = 0; t < tokens.size(); ++t) X.row(static_cast<Eigen::Index>(t)) = table.row(tokens[t]);
    if (scale != 1.0f) X *= scale;
  }

  void rms_norm(const float* x, std::size_t vectors, std::size_t d, const float* w, float eps, float* y) override {
    for (std::size_t i = 0; i < vectors; ++i) {
      const float* xi = x + i * d;
      double ss = 0;
      for (std::size_t k = 0; k < d; ++k) ss += static_cast<double>(xi[k]) * xi[k];
      const float s = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(d) + eps));
      float* yi = y + i * d;
      for (std::size_t k = 0; k < d; ++k) yi[k] = xi[k] * s * w[k];
    }
  }

  void linear(const Linear& f, const Acts& x, const Acts& y) override { f.forward(x.data, x.rows, y.data); }

  void add_row(const Acts& x, const float* b) override {
    map(x).rowwise() += Eigen::Map<const Eigen::RowVectorXf>(b, static_cast<Eigen::Index>(x.cols));
  }

  void add(const Acts& x, const Acts& y) override { map(x) += map(y); }
  void copy(const Acts& from, const Acts& to) override { map(to) = map(from); }
  std::unique_ptr<InputStatisticsAccumulator> input_statistics(std::size_t d) override { return std::make_unique<HostInputStatistics>(d); }

  void rope(const Acts& x, int heads, const ModelConfig& c, const std::vector<float>& inv_freq, std::size_t pos0,
            std::size_t seq_rows) override {
    const int hd = c.head_dim, half = hd / 2;
    for (std::size_t t = 0; t < x.rows; ++t) {
      const double pos = static_cast<double>(pos0 + t % seq_rows);
      for (int i = 0; i < half; ++i) {
        const double a = pos * inv_freq[i];
        const float cs = static_cast<float>(std::cos(a)), sn = static_cast<float>(std::sin(a));
        for (int h = 0; h < heads; ++h) {
          float* v = x.data + (t * heads + h) * hd;
          // Interleaved (GGUF llama): pairs (2i, 2i+1). Rotate-half (Hugging Face): pairs (i, i + d/2).
          const int a0 = c.rope_interleaved ? 2 * i : i, a1 = c.rope_interleaved ? 2 * i + 1 : i + half;
          const float x0 = v[a0], x1 = v[a1];
          v[a0] = x0 * cs - x1 * sn;
          v[a1] = x0 * sn + x1 * cs;
        }
      }
    }
  }

  void attention(const ModelConfig& c, int l, const Acts& qa, const Acts& ka, const Acts& va, KvCache& cache, std::size_t pos0,
                 const Acts& out, const AttentionExtras& extras) override {
    if (cache.sequences == 1) return attend(c, l, qa, ka, va, cache, 0, pos0, out, extras);
    if (extras.kv || extras.probe) throw InputError("a quantized KV cache holds one sequence; forward the chunks one at a time");
    const std::size_t n = qa.rows / cache.sequences;
    for (std::size_t s = 0; s < cache.sequences; ++s)
      attend(c, l, rows(qa, s * n, n), rows(ka, s * n, n), rows(va, s * n, n), cache, s * cache.capacity(), pos0, rows(out, s * n, n), extras);
  }

  // One sequence, whose cache rows start at `base`.
  void attend(const ModelConfig& c, int l, const Acts& qa, const Acts& ka, const Acts& va, KvCache& cache, std::size_t base,
              std::size_t pos0, const Acts& out, const AttentionExtras& extras) {
    const std::size_t n = qa.rows, total = pos0 + n;
    const int hd = c.head_dim, nh = c.n_heads, nkv = c.n_kv_heads, group = nh / nkv;
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    const Eigen::Map<Matrix> q = map(qa), k = map(ka), v = map(va);
    KvQuantizer* kv = extras.kv;
    const bool kv_quantized = kv && kv->quantizes(l);
    if (kv_quantized) {
      kv->write(l, pos0, k, v, cache);  // what attention reads: the dequantized cache
      if (extras.probe && pos0 == 0 && !extras.probe->done)
        accumulate_attention_error(c, n, q, k, v, cache.k[l].topRows(n), cache.v[l].topRows(n), *extras.probe);
    } else {
      cache.k[l].middleRows(static_cast<Eigen::Index>(base + pos0), static_cast<Eigen::Index>(n)) = k;
      cache.v[l].middleRows(static_cast<Eigen::Index>(base + pos0), static_cast<Eigen::Index>(n)) = v;
    }
    // Estimator path: every head's scores from the key codes, before the parallel loop (the kernels run
    // their own threads).
    const bool estimated = kv_quantized && kv->estimator();
    std::vector<float> estimated_scores;
    if (estimated) {
      estimated_scores.resize(static_cast<std::size_t>(nh) * n * total);
      for (int hh = 0; hh < nh; ++hh)
        kv->estimator_scores(l, hh / group, q.data() + hh * hd, static_cast<std::size_t>(nh) * hd, n, cache,
                             estimated_scores.data() + static_cast<std::size_t>(hh) * n * total, total, scale);
    }
    // Causal attention per head: query t sees keys 0 … pos0 + t (Mistral: only the last sliding_window).
#pragma omp parallel for schedule(static)
    for (int hh = 0; hh < nh; ++hh) {
      const int kvh = hh / group;
      const std::size_t ld_kv = static_cast<std::size_t>(nkv) * hd, ld_q = static_cast<std::size_t>(nh) * hd;
      const float* K = cache.k[l].data() + base * ld_kv + kvh * hd;  // total × hd, row stride ld_kv
      const float* V = cache.v[l].data() + base * ld_kv + kvh * hd;
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
        const std::size_t visible = pos0 + t + 1, window = static_cast<std::size_t>(c.sliding_window);
        const std::size_t first = window > 0 && visible > window ? visible - window : 0;
        float* row = S.row(t).data();
        std::fill(row, row + first, 0.0f);
        softmax_row(row + first, visible - first, total - first);
      }
      gemm_xb(n, hd, total, S.data(), total, V, ld_kv, out.data + hh * hd, ld_q);  // S V
    }
  }

  void glu(ModelConfig::Activation act, const Acts& g, const Acts& u) override {
    const bool geglu = act == ModelConfig::Activation::gelu_tanh;
#pragma omp parallel for schedule(static)
    for (std::ptrdiff_t t = 0; t < static_cast<std::ptrdiff_t>(g.rows); ++t)
      (geglu ? gelu_tanh_mul : silu_mul)(g.data + t * g.cols, u.data + t * u.cols, g.cols);
  }

  Matrix to_host(const Acts& x) override { return map(x); }

  std::vector<double> row_nll(const Acts& logits, const std::vector<int>& targets) override {
    std::vector<double> nll(targets.size());
    const std::size_t vocab = logits.cols;
#pragma omp parallel for schedule(static)
    for (std::ptrdiff_t i = 0; i < static_cast<std::ptrdiff_t>(targets.size()); ++i) {
      const float* z = logits.data + static_cast<std::size_t>(i) * vocab;
      nll[i] = targets[i] < 0 ? 0.0 : -static_cast<float>(z[targets[i]] - log_sum_exp(z, vocab));
    }
    return nll;
  }

 private:
  static Acts rows(const Acts& x, std::size_t first, std::size_t n) { return {x.data + first * x.cols, n, x.cols, x.owner}; }
  static Eigen::Map<Matrix> map(const Acts& x) {
    return Eigen::Map<Matrix>(x.data, static_cast<Eigen::Index>(x.rows), static_cast<Eigen::Index>(x.cols));
  }
};

}  // namespace

std::unique_ptr<ForwardOps> make_cpu_forward_ops() { return std::make_unique<CpuForwardOps>(); }

}  // namespace tqb
