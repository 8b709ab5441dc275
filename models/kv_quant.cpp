#include "models/kv_quant.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "common/error.hpp"
#include "common/rng.hpp"
#include "kernels/cpu/dense_blas.hpp"
#include "kernels/cpu/fused_lut.hpp"
#include "kernels/registry.hpp"
#include "models/name_pattern.hpp"
#include "quantizers/registry.hpp"

namespace tqb {
namespace {

std::unique_ptr<Quantizer> parse_or_none(const std::string& name, const char* key) {
  if (name == "none") return nullptr;
  try {
    return parse_quantizer(name);
  } catch (const InputError& e) {
    throw InputError(fmt::format("{} '{}': {}", key, name, e.what()));
  }
}

void require_shape(const Quantizer* q, const char* key, std::size_t rows, std::size_t cols, const std::string& what) {
  if (!q) return;
  const ShapeProblem p = q->check_shape(rows, cols);
  if (!p.message.empty())
    throw InputError(fmt::format("{} '{}' cannot quantize {} ({} x {}): {}", key, q->name(), what, rows, cols, p.message));
}

// Bits per coordinate of one stored vector of `width` coordinates (or of a rows × cols block, per column).
double stored_bits(const Quantizer& q, std::size_t rows, std::size_t cols) {
  Matrix probe = Matrix::Random(static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols));
  return 8.0 * static_cast<double>(q.quantize(probe.data(), rows, cols, 1).storage_bytes());
}

}  // namespace

KvQuantizer::KvQuantizer(const KvQuantSpec& given, const ModelConfig& c, std::uint64_t seed)
    : spec_(given.resolved()), c_(c), seed_(seed) {
  const KvQuantSpec& spec = spec_;
  key_ = parse_or_none(spec.key, "kv_key");
  value_ = parse_or_none(spec.value, "kv_value");
  outlier_key_ = parse_or_none(spec.outlier_key, "kv_outlier_key");
  outlier_value_ = parse_or_none(spec.outlier_value, "kv_outlier_value");
  const std::size_t hd = static_cast<std::size_t>(c.head_dim);
  if (spec.key_axis != "token" && spec.key_axis != "channel")
    throw InputError(fmt::format("kv_key_axis '{}': expected token or channel", spec.key_axis));
  if (spec.scores != "dequantized" && spec.scores != "estimator")
    throw InputError(fmt::format("kv_scores '{}': expected dequantized or estimator", spec.scores));
  if (spec.outliers < 0 || static_cast<std::size_t>(spec.outliers) >= hd)
    throw InputError(fmt::format("kv_outliers {}: must be 0 to head_dim - 1 = {} (this model's heads have {} channels)",
                                 spec.outliers, hd - 1, hd));
  const bool channel = spec.key_axis == "channel";
  if (channel && spec.outliers > 0)
    throw InputError("kv_outliers with kv_key_axis channel: not supported (KIVI's per-channel keys need no outlier channels)");
  if (channel && (spec.block < 2 || spec.block > 4096))
    throw InputError(fmt::format("kv_block {}: expected 2 to 4096 tokens", spec.block));
  if (spec.scores == "estimator") {
    if (!key_) throw InputError("kv_scores estimator: needs a key quantizer (kv_key is none)");
    if (channel || spec.outliers > 0)
      throw InputError("kv_scores estimator: only with kv_key_axis token and no kv_outliers (the estimator reads one code stream per key)");
    if (const std::string why = fused_lut_supports(*key_); !why.empty())
      throw InputError(fmt::format("kv_scores estimator with kv_key '{}': {}", key_->name(), why));
  }
  const std::size_t o = static_cast<std::size_t>(spec.outliers), w = hd - o;
  if (channel) require_shape(key_.get(), "kv_key", hd, static_cast<std::size_t>(spec.block), "a block of keys, channels x tokens");
  else require_shape(key_.get(), "kv_key", 1, w, o ? "the non-outlier channels of a key" : "a key vector");
  require_shape(value_.get(), "kv_value", 1, w, o ? "the non-outlier channels of a value" : "a value vector");
  if (o > 0) {
    require_shape(outlier_key_.get(), "kv_outlier_key", 1, o, "the outlier channels of a key");
    require_shape(outlier_value_.get(), "kv_outlier_value", 1, o, "the outlier channels of a value");
  }
  const NamePattern layers(spec.layers);
  for (int l = 0; l < c.n_layers; ++l) layers_.push_back(layers.full_match(fmt::format("blk.{}", l)));
  // A cache quantized nowhere would report the quantizers' bits for fp32 storage (issue 28).
  if (std::none_of(layers_.begin(), layers_.end(), [](bool b) { return b; }))
    throw InputError(fmt::format("kv_layers '{}' matches none of this model's layers (blk.0 .. blk.{}): nothing would be quantized",
                                 spec.layers, c.n_layers - 1));
  // Exact storage per coordinate. Outlier channels: their codes (or fp32) per token; which channels they
  // are is fixed per head (o indices of a byte, once), nothing per token.
  auto bits_of = [&](const Quantizer* main, const Quantizer* outlier, bool is_key) {
    if (!main) return 32.0;
    double bits = is_key && channel ? stored_bits(*main, hd, static_cast<std::size_t>(spec.block)) / static_cast<double>(spec.block)
                                    : stored_bits(*main, 1, w);
    if (o > 0) bits += outlier ? stored_bits(*outlier, 1, o) : 32.0 * static_cast<double>(o);
    return bits / static_cast<double>(hd);
  };
  key_bits_ = bits_of(key_.get(), outlier_key_.get(), true);
  value_bits_ = bits_of(value_.get(), outlier_value_.get(), false);
  key_outliers_.assign(static_cast<std::size_t>(c.n_layers), {});
  value_outliers_.assign(static_cast<std::size_t>(c.n_layers), {});
}

KvQuantizer::~KvQuantizer() = default;

std::uint64_t KvQuantizer::head_seed(int layer, bool is_key, int head, const char* part) const {
  return derive_seed(seed_, fmt::format("blk.{} {} head {} {}", layer, is_key ? "k" : "v", head, part)) >> 1;
}

bool KvQuantizer::quantizes(int layer) const { return layers_[static_cast<std::size_t>(layer)]; }

double KvQuantizer::bytes_per_token() const {
  double bits = 0;
  for (int l = 0; l < c_.n_layers; ++l) bits += quantizes(l) ? key_bits_ + value_bits_ : 64.0;
  return bits * c_.head_dim * c_.n_kv_heads / 8.0;
}

void KvQuantizer::choose_outliers(int layer, bool is_key, const Matrix& x) {
  auto& dst = (is_key ? key_outliers_ : value_outliers_)[static_cast<std::size_t>(layer)];
  const int hd = c_.head_dim;
  dst.assign(static_cast<std::size_t>(c_.n_kv_heads), {});
  for (int h = 0; h < c_.n_kv_heads; ++h) {
    // The channels of largest mean |x| over the first chunk (keys: RoPE's low-frequency pairs carry them).
    std::vector<double> mean_abs(static_cast<std::size_t>(hd), 0.0);
    for (Eigen::Index t = 0; t < x.rows(); ++t)
      for (int ch = 0; ch < hd; ++ch) mean_abs[static_cast<std::size_t>(ch)] += std::fabs(x(t, h * hd + ch));
    std::vector<int> order(static_cast<std::size_t>(hd));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return mean_abs[a] > mean_abs[b]; });
    std::vector<int> chosen(order.begin(), order.begin() + spec_.outliers);
    std::sort(chosen.begin(), chosen.end());
    dst[static_cast<std::size_t>(h)] = std::move(chosen);
  }
}

void KvQuantizer::quantize_heads(int layer, bool is_key, std::size_t pos0, const Matrix& x, Matrix& out, KvCache* codes_to) {
  const Quantizer* main = is_key ? key_.get() : value_.get();
  const Quantizer* outlier = is_key ? outlier_key_.get() : outlier_value_.get();
  out = x;
  if (!main) return;
  const int hd = c_.head_dim, o = spec_.outliers;
  auto& outliers = (is_key ? key_outliers_ : value_outliers_)[static_cast<std::size_t>(layer)];
  if (o > 0 && outliers.empty()) choose_outliers(layer, is_key, x);
  const std::size_t n = static_cast<std::size_t>(x.rows());
  for (int h = 0; h < c_.n_kv_heads; ++h) {
    std::vector<int> regular, extra;
    if (o > 0) {
      const auto& chosen = outliers[static_cast<std::size_t>(h)];
      for (int ch = 0, k = 0; ch < hd; ++ch)
        if (k < o && chosen[static_cast<std::size_t>(k)] == ch) { extra.push_back(ch); ++k; }
        else regular.push_back(ch);
    } else {
      regular.resize(static_cast<std::size_t>(hd));
      std::iota(regular.begin(), regular.end(), 0);
    }
    auto run = [&](const Quantizer* q, const std::vector<int>& cols, const char* label) {
      Matrix part(static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(cols.size()));
      for (std::size_t j = 0; j < cols.size(); ++j) part.col(static_cast<Eigen::Index>(j)) = x.col(h * hd + cols[j]);
      if (!q) return;  // outlier channels without a quantizer stay fp32
      // One rotation or projection per layer, head and stream, shared by every token (a deployed cache's).
      const QuantizedMatrix qm = q->quantize(part.data(), n, cols.size(), head_seed(layer, is_key, h, label));
      Matrix back(part.rows(), part.cols());
      q->dequantize(qm, back.data());
      for (std::size_t j = 0; j < cols.size(); ++j) out.col(h * hd + cols[j]) = back.col(static_cast<Eigen::Index>(j));
      if (codes_to && q == main)
        codes_to->key_codes[static_cast<std::size_t>(layer)][static_cast<std::size_t>(h)].push_back(
            KeyCodes{pos0, n, make_linear("fused_lut", *q, qm)});
    };
    run(main, regular, "main");
    if (o > 0) run(outlier, extra, "outliers");
  }
}

void KvQuantizer::quantize_key_blocks(int layer, std::size_t end, KvCache& cache) {
  const std::size_t block = static_cast<std::size_t>(spec_.block), hd = static_cast<std::size_t>(c_.head_dim);
  std::size_t& done = cache.keys_quantized[static_cast<std::size_t>(layer)];
  Matrix& k = cache.k[static_cast<std::size_t>(layer)];
  for (; done + block <= end; done += block)
    for (int h = 0; h < c_.n_kv_heads; ++h) {
      // KIVI: each channel's `block` consecutive values share a scale and zero point: a channels × tokens matrix.
      Matrix t = k.block(static_cast<Eigen::Index>(done), h * c_.head_dim, static_cast<Eigen::Index>(block), c_.head_dim).transpose();
      const std::uint64_t seed = derive_seed(seed_, fmt::format("blk.{} k head {} channel", layer, h)) >> 1;
      const QuantizedMatrix qm = key_->quantize(t.data(), hd, block, seed);
      Matrix back(t.rows(), t.cols());
      key_->dequantize(qm, back.data());
      k.block(static_cast<Eigen::Index>(done), h * c_.head_dim, static_cast<Eigen::Index>(block), c_.head_dim) = back.transpose();
    }
}

void KvQuantizer::write(int layer, std::size_t pos0, const Matrix& k, const Matrix& v, KvCache& cache) {
  const std::size_t l = static_cast<std::size_t>(layer), n = static_cast<std::size_t>(k.rows());
  if (cache.keys_quantized.size() != static_cast<std::size_t>(c_.n_layers)) {
    cache.keys_quantized.assign(static_cast<std::size_t>(c_.n_layers), 0);
    cache.key_codes.assign(static_cast<std::size_t>(c_.n_layers), std::vector<std::vector<KeyCodes>>(static_cast<std::size_t>(c_.n_kv_heads)));
  }
  // Rewriting positions (a cache rewound to time decoding): forget what covered them.
  for (auto& chunks : cache.key_codes[l]) std::erase_if(chunks, [&](const KeyCodes& c) { return c.pos0 + c.n > pos0; });
  if (spec_.key_axis == "channel") {
    std::size_t& done = cache.keys_quantized[l];
    if (done > pos0) done = pos0 / static_cast<std::size_t>(spec_.block) * static_cast<std::size_t>(spec_.block);
  }
  Matrix kq, vq;
  if (spec_.key_axis == "channel" && key_) {
    cache.k[l].middleRows(static_cast<Eigen::Index>(pos0), static_cast<Eigen::Index>(n)) = k;
    quantize_key_blocks(layer, pos0 + n, cache);
  } else {
    quantize_heads(layer, true, pos0, k, kq, estimator() ? &cache : nullptr);
    cache.k[l].middleRows(static_cast<Eigen::Index>(pos0), static_cast<Eigen::Index>(n)) = kq;
  }
  quantize_heads(layer, false, pos0, v, vq, nullptr);
  cache.v[l].middleRows(static_cast<Eigen::Index>(pos0), static_cast<Eigen::Index>(n)) = vq;
}

void KvQuantizer::estimator_scores(int layer, int kv_head, const float* q, std::size_t ld_q, std::size_t n, const KvCache& cache,
                                   float* s, std::size_t ld_s, float scale) const {
  const std::size_t hd = static_cast<std::size_t>(c_.head_dim);
  Matrix qh(static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(hd));
  for (std::size_t t = 0; t < n; ++t) std::copy(q + t * ld_q, q + t * ld_q + hd, qh.row(static_cast<Eigen::Index>(t)).data());
  for (const auto& chunk : cache.key_codes[static_cast<std::size_t>(layer)][static_cast<std::size_t>(kv_head)]) {
    Matrix y(static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(chunk.n));
    chunk.scores->forward(qh.data(), n, y.data());
    const std::size_t cols = std::min(chunk.n, ld_s - std::min(ld_s, chunk.pos0));
    for (std::size_t t = 0; t < n; ++t)
      for (std::size_t j = 0; j < cols; ++j) s[t * ld_s + chunk.pos0 + j] = scale * y(static_cast<Eigen::Index>(t), static_cast<Eigen::Index>(j));
  }
}

std::string KvQuantizer::outlier_json() const {
  if (spec_.outliers == 0) return "{}";
  std::string out = "{";
  for (int l = 0; l < c_.n_layers; ++l) {
    if (key_outliers_[static_cast<std::size_t>(l)].empty() && value_outliers_[static_cast<std::size_t>(l)].empty()) continue;
    auto heads = [](const std::vector<std::vector<int>>& v) {
      std::string s = "[";
      for (std::size_t h = 0; h < v.size(); ++h) s += fmt::format("{}[{}]", h ? ", " : "", fmt::join(v[h], ", "));
      return s + "]";
    };
    out += fmt::format("{}\"blk.{}\": {{\"k\": {}, \"v\": {}}}", out.size() > 1 ? ", " : "", l,
                       heads(key_outliers_[static_cast<std::size_t>(l)]), heads(value_outliers_[static_cast<std::size_t>(l)]));
  }
  return out + "}";
}

void accumulate_attention_error(const ModelConfig& c, std::size_t n, const Matrix& q, const Matrix& k, const Matrix& v,
                                const Matrix& k_cached, const Matrix& v_cached, KvAttentionError& e) {
  const std::size_t hd = static_cast<std::size_t>(c.head_dim), nh = static_cast<std::size_t>(c.n_heads),
                    nkv = static_cast<std::size_t>(c.n_kv_heads), group = nh / nkv;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  Matrix se(static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(n)), sq(se.rows(), se.cols());
  std::vector<double> pe(n), pq(n), knorm(n);
  for (std::size_t hh = 0; hh < nh; ++hh) {
    const std::size_t kvh = hh / group;
    for (std::size_t j = 0; j < n; ++j)
      knorm[j] = k.row(static_cast<Eigen::Index>(j)).segment(static_cast<Eigen::Index>(kvh * hd), static_cast<Eigen::Index>(hd)).cast<double>().norm();
    const float* qh = q.data() + hh * hd;
    gemm_xwt(n, n, hd, qh, nh * hd, k.data() + kvh * hd, nkv * hd, se.data(), n, 1.0f);
    gemm_xwt(n, n, hd, qh, nh * hd, k_cached.data() + kvh * hd, nkv * hd, sq.data(), n, 1.0f);
    for (std::size_t t = 0; t < n; ++t) {
      const double qn = q.row(static_cast<Eigen::Index>(t)).segment(static_cast<Eigen::Index>(hh * hd), static_cast<Eigen::Index>(hd)).cast<double>().norm();
      double me = -INFINITY, mq = -INFINITY;
      for (std::size_t j = 0; j <= t; ++j) {
        const double kn = knorm[j];
        const double diff = static_cast<double>(sq(t, j)) - static_cast<double>(se(t, j));
        e.ip_err_sum += diff * scale;  // in attention logits: the scaled score softmax sees
        e.ip_err2_sum += diff * diff * scale * scale;
        if (qn > 0 && kn > 0) e.dprod_sum += diff * diff / (qn * qn * kn * kn);
        e.pairs += 1;
        me = std::max(me, static_cast<double>(se(t, j)) * scale);
        mq = std::max(mq, static_cast<double>(sq(t, j)) * scale);
      }
      double ze = 0, zq = 0;
      for (std::size_t j = 0; j <= t; ++j) {
        pe[j] = std::exp(static_cast<double>(se(t, j)) * scale - me);
        pq[j] = std::exp(static_cast<double>(sq(t, j)) * scale - mq);
        ze += pe[j];
        zq += pq[j];
      }
      double tv = 0;
      Eigen::VectorXd oe = Eigen::VectorXd::Zero(static_cast<Eigen::Index>(hd)), oq = oe;
      for (std::size_t j = 0; j <= t; ++j) {
        pe[j] /= ze;
        pq[j] /= zq;
        tv += std::fabs(pe[j] - pq[j]);
        oe += pe[j] * v.row(static_cast<Eigen::Index>(j)).segment(static_cast<Eigen::Index>(kvh * hd), static_cast<Eigen::Index>(hd)).cast<double>().transpose();
        oq += pq[j] * v_cached.row(static_cast<Eigen::Index>(j)).segment(static_cast<Eigen::Index>(kvh * hd), static_cast<Eigen::Index>(hd)).cast<double>().transpose();
      }
      e.weight_tv_sum += 0.5 * tv;
      if (oe.norm() > 0) e.out_rel_sum += (oq - oe).norm() / oe.norm();
      e.rows += 1;
    }
  }
}

}  // namespace tqb
