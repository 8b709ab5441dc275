#include "quantizers/awq.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

#include "common/error.hpp"
#include "common/float_format.hpp"
#include "quantizers/calibrated_modifier.hpp"

namespace tqb {
namespace {

// W·diag(s) (rows × cols, row-major).
std::vector<float> scaled_weights(const float* w, std::size_t rows, std::size_t cols, const std::vector<float>& s) {
  std::vector<float> scaled(rows * cols);
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t c = 0; c < cols; ++c) scaled[r * cols + c] = w[r * cols + c] * s[c];
  return scaled;
}

// diag(s)⁻¹ as doubles: the scaled layer's inputs are x' = x·diag(s)⁻¹, its statistics S⁻¹ H S⁻¹.
Eigen::VectorXd inverse_scales(const std::vector<float>& s) {
  return Eigen::Map<const Eigen::VectorXf>(s.data(), static_cast<Eigen::Index>(s.size())).cast<double>().cwiseInverse();
}

// Q on W·diag(s), with the scaled layer's statistics when Q is calibrated.
QuantizedMatrix quantize_scaled(const Quantizer& inner, const float* w, std::size_t rows, std::size_t cols, const std::vector<float>& s,
                                const InputStatistics& inputs, std::uint64_t seed) {
  const std::vector<float> scaled = scaled_weights(w, rows, cols, s);
  if (!inner.needs_calibration()) return inner.quantize(scaled.data(), rows, cols, seed);
  InputStatistics x;
  const Eigen::VectorXd inv = inverse_scales(s);
  x.hessian = inv.asDiagonal() * inputs.hessian * inv.asDiagonal();
  x.mean_abs = inputs.mean_abs.cwiseProduct(inv);
  x.samples = inputs.samples;
  return inner.quantize_calibrated(scaled.data(), rows, cols, seed, x);
}

void dequantize_scaled(const Quantizer& inner, const QuantizedMatrix& q, const std::vector<float>& s, float* out) {
  inner.dequantize(q, out);
  for (std::size_t r = 0; r < q.rows; ++r)
    for (std::size_t c = 0; c < q.cols; ++c) out[r * q.cols + c] /= s[c];
}

// The per-channel scales as stored; a file's record whose scale is not a positive finite number (awq never writes
// one) would turn the weights into infinities, so it is refused naming the channel.
std::vector<float> stored_scales(const QuantizedMatrix& q) {
  std::vector<float> s(q.cols);
  for (std::size_t c = 0; c < q.cols; ++c) {
    s[c] = load_float(FloatFormat::fp16, q.scales.data() + 2 * c);
    if (!(std::isfinite(s[c]) && s[c] > 0))
      throw InputError(fmt::format("{}: input channel {}'s scale is {}; awq stores positive finite scales", q.format, c, s[c]));
  }
  return s;
}

// AWQ's clipping search on the scaled weights ws (rows × cols) with the scaled layer's statistics h: per (row, group of
// Q), the ratio of the group's max |w| it is clipped to, from 1 down to 0.525, for the least δ h_gg δᵀ; then Q on the
// weights clipped as chosen.
QuantizedMatrix clip_search(const Quantizer& inner, const std::vector<float>& ws, std::size_t rows, std::size_t cols, const Eigen::MatrixXd& h,
                            std::uint64_t seed, const QuantizedMatrix& unclipped) {
  if (inner.needs_calibration())
    throw InputError(fmt::format("awq({}, clip=search): the clipping search quantizes with Q directly; a calibrated Q chooses its own codes "
                                 "(use clip=none, or awq(Q, clip=search) with an uncalibrated Q)", inner.name()));
  std::vector<DecodePass> passes;
  try {
    inner.describe_decode(unclipped, passes);
  } catch (const std::invalid_argument&) {
    passes.clear();
  }
  if (passes.size() != 1 || passes.front().g == 0 || cols % passes.front().g != 0)
    throw InputError(fmt::format("awq({}, clip=search): the search clips per group of one pass of codes (rtn, turboquant, rotated(rtn)); "
                                 "this quantizer has {}", inner.name(), passes.empty() ? "no decode description" : "another layout"));
  const std::size_t g = passes.front().g, groups = cols / g;
  constexpr int kRatios = 20;
  constexpr double kShrink = 0.5;
  std::vector<float> max_abs(rows * groups, 0.0f), clipped(rows * cols), back(rows * cols), chosen(rows * cols);
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t c = 0; c < cols; ++c) max_abs[r * groups + c / g] = std::max(max_abs[r * groups + c / g], std::fabs(ws[r * cols + c]));
  std::vector<double> best;  // per (row, group): the least error so far
  std::vector<float> best_ratio(rows * groups, 1.0f);
  // The group's output error of a reconstruction (rows × cols): per (row, group) δ h_gg δᵀ.
  const auto group_errors = [&](const std::vector<float>& rec, std::vector<double>& err) {
    err.assign(rows * groups, 0.0);
#pragma omp parallel for schedule(static)
    for (std::ptrdiff_t j = 0; j < static_cast<std::ptrdiff_t>(groups); ++j) {
      const Eigen::MatrixXd hg = h.block(j * static_cast<Eigen::Index>(g), j * static_cast<Eigen::Index>(g), static_cast<Eigen::Index>(g),
                                         static_cast<Eigen::Index>(g));
      Eigen::VectorXd d(static_cast<Eigen::Index>(g));
      for (std::size_t r = 0; r < rows; ++r) {
        for (std::size_t k = 0; k < g; ++k) d(static_cast<Eigen::Index>(k)) = static_cast<double>(ws[r * cols + j * g + k]) - rec[r * cols + j * g + k];
        err[r * groups + static_cast<std::size_t>(j)] = d.dot(hg * d);
      }
    }
  };
  // ws with group k clipped to ±ratio(k)·max|w|.
  const auto clip = [&](const auto& ratio, std::vector<float>& out) {
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t c = 0; c < cols; ++c) {
        const float m = max_abs[r * groups + c / g] * ratio(r * groups + c / g);
        out[r * cols + c] = std::clamp(ws[r * cols + c], -m, m);
      }
  };
  // Ratio 1 clips nothing: its errors are those of the unclipped result.
  std::vector<double> err;
  inner.dequantize(unclipped, back.data());
  group_errors(back, best);
  for (int i = 1; i < kRatios; ++i) {
    const float ratio = static_cast<float>(1.0 - kShrink * i / kRatios);
    clip([&](std::size_t) { return ratio; }, clipped);
    inner.dequantize(inner.quantize(clipped.data(), rows, cols, seed), back.data());
    group_errors(back, err);
    for (std::size_t k = 0; k < rows * groups; ++k)
      if (err[k] < best[k]) {  // ties keep the larger ratio (less clipping)
        best[k] = err[k];
        best_ratio[k] = ratio;
      }
  }
  clip([&](std::size_t k) { return best_ratio[k]; }, chosen);
  QuantizedMatrix q = inner.quantize(chosen.data(), rows, cols, seed);
  // Each group was chosen on its own: Q on the assembled weights must give each group the error it was chosen for.
  inner.dequantize(q, back.data());
  group_errors(back, err);
  for (std::size_t k = 0; k < rows * groups; ++k)
    if (std::fabs(err[k] - best[k]) > 1e-9 * std::max(1.0, std::fabs(best[k])))
      throw std::logic_error(fmt::format("awq({}, clip=search): a group's quantization depends on more than its own weights (row {}, group {})",
                                         inner.name(), k / groups, k % groups));
  return q;
}

}  // namespace

QuantizedMatrix awq_quantize(const Quantizer& inner, const float* w, std::size_t rows, std::size_t cols, const InputStatistics& inputs,
                             std::uint64_t seed, const AwqOptions& o, double* alpha) {
  if (o.grid < 1) throw InputError(fmt::format("awq: grid {} must be at least 1 point", o.grid));
  const auto C = static_cast<Eigen::Index>(cols);
  if (inputs.hessian.rows() != C || inputs.hessian.cols() != C || inputs.mean_abs.size() != C)
    throw InputError(fmt::format("awq: the statistics are for {} input channels; the layer has {}", inputs.mean_abs.size(), cols));
  if (!inputs.hessian.allFinite() || !inputs.mean_abs.allFinite()) throw InputError("awq: the calibration statistics have a non-finite entry");
  if (const ShapeProblem p = inner.check_shape(rows, cols); !p.message.empty())
    throw InputError(fmt::format("awq({}): {}", inner.name(), p.message));
  // Channels never seen active get the smallest active channel's activation scale (their weights matter least).
  const double top = inputs.mean_abs.maxCoeff();
  double floor = top;
  for (Eigen::Index c = 0; c < C; ++c)
    if (inputs.mean_abs(c) > 0) floor = std::min(floor, inputs.mean_abs(c));
  if (!(top > 0)) floor = 1;
  // The layers the scale is chosen for: this one, or (scale=shared) every layer reading the same inputs, each quantized
  // with its own seed, their output errors summed; every member's call makes the same choice, and returns its own layer.
  struct Member {
    const float* w;
    std::size_t rows;
    std::uint64_t seed;
    bool self;
  };
  std::vector<Member> members;
  if (o.shared && inputs.shared_input.size() > 1) {
    for (const SharedInputLayer& m : inputs.shared_input) {
      if (!m.weights || static_cast<std::size_t>(m.weights->cols()) != cols)
        throw InputError(fmt::format("awq(scale=shared): layer {} shares this layer's inputs but has {} input channels, not {}", m.name,
                                     m.weights ? m.weights->cols() : 0, cols));
      const auto r = static_cast<std::size_t>(m.weights->rows());
      const bool self = m.seed == seed && r == rows && std::equal(w, w + rows * cols, m.weights->data());
      members.push_back({m.weights->data(), r, m.seed, self});
    }
    if (std::count_if(members.begin(), members.end(), [](const Member& m) { return m.self; }) != 1)
      throw std::logic_error("awq(scale=shared): the layer is not once among the layers listed as sharing its inputs");
  } else {
    members.push_back({w, rows, seed, true});
  }
  std::vector<float> w_hat;
  double best_loss = INFINITY, best_alpha = 0;
  QuantizedMatrix best;
  std::vector<float> best_s;
  for (int i = 0; i < o.grid; ++i) {
    const double a = static_cast<double>(i) / o.grid;
    std::vector<double> sd(cols);
    double lo = INFINITY, hi = 0;
    for (std::size_t c = 0; c < cols; ++c) {
      sd[c] = std::pow(std::max(inputs.mean_abs(static_cast<Eigen::Index>(c)), floor), a);
      lo = std::min(lo, sd[c]);
      hi = std::max(hi, sd[c]);
    }
    // Normalized (the reference's s / sqrt(max · min)), then as stored: fp16, so that W·diag(s) and the division agree.
    std::vector<float> s(cols);
    for (std::size_t c = 0; c < cols; ++c) s[c] = round_to(FloatFormat::fp16, static_cast<float>(sd[c] / std::sqrt(hi * lo)));
    double loss = 0;
    QuantizedMatrix q;
    for (const Member& m : members) {
      QuantizedMatrix qm = quantize_scaled(inner, m.w, m.rows, cols, s, inputs, m.seed);
      w_hat.resize(m.rows * cols);
      dequantize_scaled(inner, qm, s, w_hat.data());
      using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
      const auto R = static_cast<Eigen::Index>(m.rows);
      const Eigen::MatrixXd E = Eigen::Map<const RowMajor>(m.w, R, C).cast<double>() - Eigen::Map<const RowMajor>(w_hat.data(), R, C).cast<double>();
      loss += (E * inputs.hessian).cwiseProduct(E).sum();
      if (m.self) q = std::move(qm);
    }
    if (!std::isfinite(loss)) continue;
    if (loss < best_loss) {
      best_loss = loss;
      best_alpha = a;
      best = std::move(q);
      best_s = std::move(s);
    }
  }
  if (best_s.empty()) throw InputError(fmt::format("awq({}): every scaling gave a non-finite output error", inner.name()));
  if (o.clip) {
    const Eigen::VectorXd inv = inverse_scales(best_s);
    best = clip_search(inner, scaled_weights(w, rows, cols, best_s), rows, cols, inv.asDiagonal() * inputs.hessian * inv.asDiagonal(), seed,
                       best);
  }
  QuantizedMatrix out;
  out.rows = rows;
  out.cols = cols;
  out.seed = seed;
  out.side_format = FloatFormat::fp16;
  out.scales.resize(2 * cols);
  for (std::size_t c = 0; c < cols; ++c) store_float(FloatFormat::fp16, best_s[c], out.scales.data() + 2 * c);
  out.passes.push_back(std::move(best));
  if (alpha) *alpha = best_alpha;
  return out;
}

namespace {

class Awq final : public CalibratedModifier {
 public:
  Awq(const ParamSchema& schema, const Params& p, std::unique_ptr<Quantizer> inner) : CalibratedModifier("awq", schema, p, std::move(inner)) {
    options_.grid = static_cast<int>(std::get<std::int64_t>(p.at("grid")));
    options_.clip = get_str(p, "clip") == "search";
    options_.shared = get_str(p, "scale") == "shared";
    if (options_.clip && inner_->needs_calibration())
      throw InputError(fmt::format("awq(clip=search): the clipping search quantizes with Q directly, and {} is calibrated (its codes are "
                                   "its own choice); use clip=none with it", inner_->name()));
  }
  std::uint64_t storage_bytes(std::size_t rows, std::size_t cols) const override { return inner_->storage_bytes(rows, cols) + 2 * cols; }
  bool needs_shared_inputs() const override { return options_.shared; }
  // The inner quantizer's at each point of the grid, the scaled copy, the dequantized one, and the error in double.
  std::uint64_t working_bytes(std::size_t rows, std::size_t cols) const override {
    return 2 * inner_->working_bytes(rows, cols) + 2 * std::uint64_t{rows} * cols * 4 + 2 * std::uint64_t{rows} * cols * 8 +
           (options_.clip ? 5 * std::uint64_t{rows} * cols * 4 : 0);  // the search's clipped, dequantized, chosen and scaled copies
  }
  QuantizedMatrix quantize_calibrated(const float* w, std::size_t rows, std::size_t cols, std::uint64_t seed,
                                      const InputStatistics& inputs) const override {
    QuantizedMatrix q = awq_quantize(*inner_, w, rows, cols, inputs, seed, options_);
    q.format = name();
    return q;
  }
  QuantizedMatrix zero_layout(std::size_t rows, std::size_t cols, std::uint64_t seed) const override {
    QuantizedMatrix q;
    q.rows = rows;
    q.cols = cols;
    q.seed = seed;
    q.format = name();
    q.side_format = FloatFormat::fp16;
    q.scales.assign(2 * cols, 0);
    q.passes.push_back(inner_->zero_layout(rows, cols, seed));
    return q;
  }
  void dequantize(const QuantizedMatrix& q, float* out) const override {
    if (q.passes.size() != 1 || q.scales.size() != 2 * q.cols)
      throw InputError(fmt::format("{}: the matrix is not an awq result (one pass and {} scale bytes)", name(), 2 * q.cols));
    dequantize_scaled(*inner_, q.passes.front(), stored_scales(q), out);
  }
  // No decode description: the per-channel scales would have to be folded into the layer's input first.
  std::vector<PassForm> decode_form() const override { return {}; }
  void describe_decode(const QuantizedMatrix&, std::vector<DecodePass>&) const override {
    throw std::invalid_argument(fmt::format("{} has no decode description (per-input-channel scales; dequantized_dense reads it)", name()));
  }

 private:
  AwqOptions options_;
};

}  // namespace

QuantizerFamily awq_family() {
  using K = ParamSpec::Kind;
  const ParamSchema schema({
      {.name = "quantizer", .kind = K::text, .default_value = std::string("rtn"),
       .description = "the quantizer of the scaled weights (a one-line name; may be given first without its key: awq(rtn(bits=4,group=128)); "
                      "gptq composes inside: awq(gptq(rtn(bits=4,group=128))))"},
      {.name = "grid", .kind = K::integer, .default_value = std::int64_t{20},
       .description = "points of the α search in [0, 1) (α = 0: no scaling)", .min = 1, .max = 1000},
      {.name = "clip", .kind = K::choice, .default_value = std::string("none"),
       .description = "search: each group of Q clipped to the ratio of its max |w| (1 … 0.525) with the least output error, after the "
                      "scaling (AWQ's auto_clip); none: no clipping", .choices = {"none", "search"}, .named_when_set = true},
      {.name = "scale", .kind = K::choice, .default_value = std::string("layer"),
       .description = "shared: one per-channel scale for the layers reading the same input (a block's q/k/v, its gate/up), searched for "
                      "their summed output error, as deployed (folded into the norm); layer: each layer its own", .choices = {"layer", "shared"},
       .named_when_set = true},
  });
  return {"awq", "AWQ's activation-aware per-channel scaling (Lin et al. 2023) before any quantizer; needs a model's calibration", schema,
          [schema](const Params& given) -> std::unique_ptr<Quantizer> {
            Params p = given;
            auto inner = parse_quantizer(get_str(p, "quantizer"));
            p["quantizer"] = inner->name();
            return std::make_unique<Awq>(schema, p, std::move(inner));
          }};
}

}  // namespace tqb
