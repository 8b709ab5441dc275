#include "quantizers/rtn.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "common/error.hpp"
#include "quantizers/bitpack.hpp"
#include "quantizers/weight_groups.hpp"

namespace tqb {
namespace {

class RtnQuantizer final : public Quantizer {
 public:
  RtnQuantizer(const ParamSchema& schema, const Params& p)
      : Quantizer("rtn", schema, p),
        bits_(static_cast<int>(get_int(p, "bits"))),
        group_(static_cast<std::size_t>(get_int(p, "group"))),
        symmetric_(get_str(p, "mode") == "sym"),
        scale_format_(*parse_float_format(get_str(p, "scale"))) {}

  ShapeProblem check_shape(std::size_t rows, std::size_t cols) const override {
    return check_group_shape(static_cast<std::int64_t>(group_), rows, cols);
  }

  bool uses_seed() const override { return false; }  // deterministic: same bytes for every seed

  double nominal_bits(std::size_t cols) const override { return bits_; }

  // Packed codes, and per group a scale (and a zero point when asymmetric).
  std::uint64_t storage_bytes(std::size_t rows, std::size_t cols) const override {
    const std::uint64_t side = std::uint64_t{rows} * (cols / group_size(cols)) * bytes_of(scale_format_);
    return packed_size(rows * cols, bits_) + side * (symmetric_ ? 1 : 2);
  }

  QuantizedMatrix quantize(const float* w, std::size_t rows, std::size_t cols, std::uint64_t seed) const override {
    const std::size_t g = group_size(cols);
    const std::size_t groups = cols / g;
    const std::size_t sb = bytes_of(scale_format_);
    QuantizedMatrix q = new_matrix(rows, cols, seed, bits_);
    q.side_format = scale_format_;
    q.scales.resize(rows * groups * sb);
    if (!symmetric_) q.zeros.resize(rows * groups * sb);
    std::vector<std::uint8_t> codes(rows * cols);
    bool overflow = false;

#pragma omp parallel for schedule(static) reduction(|| : overflow)
    for (std::ptrdiff_t r = 0; r < static_cast<std::ptrdiff_t>(rows); ++r) {
      for (std::size_t j = 0; j < groups; ++j) {
        const float* x = w + r * cols + j * g;
        std::uint8_t* c = codes.data() + r * cols + j * g;
        const std::size_t slot = r * groups + j;
        if (symmetric_) {
          overflow |= !quantize_group_sym(x, g, c, q.scales.data() + slot * sb);
        } else {
          overflow |= !quantize_group_asym(x, g, c, q.scales.data() + slot * sb, q.zeros.data() + slot * sb);
        }
      }
    }
    if (overflow)
      throw RunError(fmt::format("{}: a group's scale does not fit in {} (weights too large or not finite); "
                                 "use scale=fp32", name(), to_string(scale_format_)));
    q.codes.resize(packed_size(rows * cols, bits_));
    pack_codes(codes.data(), codes.size(), bits_, q.codes.data());
    return q;
  }

  void dequantize(const QuantizedMatrix& q, float* out) const override {
    dequantize_affine_lut(q, group_size(q.cols), lut(), out);
  }

  std::vector<PassForm> decode_form() const override {
    return {{.bits = bits_, .group = static_cast<std::int64_t>(group_), .transform = GroupTransform::identity,
             .has_offset = !symmetric_}};
  }

  void describe_decode(const QuantizedMatrix& q, std::vector<DecodePass>& out) const override {
    out.push_back(affine_lut_pass(q, group_size(q.cols), lut()));
  }

 private:
  std::size_t group_size(std::size_t cols) const { return group_ == 0 ? cols : group_; }

  // Symmetric: x̂ = (code − qmax)·s; asymmetric: x̂ = m + code·s (the minimum m is the pass's offset b).
  std::vector<float> lut() const {
    const int qmax = (1 << (bits_ - 1)) - 1;
    std::vector<float> t;
    for (int c = 0; c < (1 << bits_); ++c) t.push_back(static_cast<float>(symmetric_ ? c - qmax : c));
    return t;
  }

  // Returns false when the scale is not finite in the scale format.
  bool quantize_group_sym(const float* x, std::size_t n, std::uint8_t* codes, std::uint8_t* scale_out) const {
    const int qmax = (1 << (bits_ - 1)) - 1;
    float absmax = 0.0f;
    for (std::size_t i = 0; i < n; ++i) absmax = std::max(absmax, std::fabs(x[i]));
    float s = round_to(scale_format_, absmax / qmax);
    if (absmax > (qmax + 0.5f) * s) s = round_up_to(scale_format_, absmax / qmax);
    if (!std::isfinite(s)) return false;
    store_float(scale_format_, s, scale_out);
    const float inv = s > 0.0f ? 1.0f / s : 0.0f;
    for (std::size_t i = 0; i < n; ++i) {
      const int v = static_cast<int>(std::nearbyint(x[i] * inv));
      codes[i] = static_cast<std::uint8_t>(std::clamp(v, -qmax, qmax) + qmax);
    }
    return true;
  }

  bool quantize_group_asym(const float* x, std::size_t n, std::uint8_t* codes, std::uint8_t* scale_out,
                           std::uint8_t* min_out) const {
    const int maxq = (1 << bits_) - 1;
    float lo = x[0], hi = x[0];
    for (std::size_t i = 1; i < n; ++i) {
      lo = std::min(lo, x[i]);
      hi = std::max(hi, x[i]);
    }
    const float m = round_down_to(scale_format_, lo);
    const float range = hi - m;
    float s = round_to(scale_format_, range / maxq);
    if (range > (maxq + 0.5f) * s) s = round_up_to(scale_format_, range / maxq);
    if (!std::isfinite(s) || !std::isfinite(m)) return false;
    store_float(scale_format_, s, scale_out);
    store_float(scale_format_, m, min_out);
    const float inv = s > 0.0f ? 1.0f / s : 0.0f;
    for (std::size_t i = 0; i < n; ++i) {
      const int v = static_cast<int>(std::nearbyint((x[i] - m) * inv));
      codes[i] = static_cast<std::uint8_t>(std::clamp(v, 0, maxq));
    }
    return true;
  }

  int bits_;
  std::size_t group_;  // 0 = whole row
  bool symmetric_;
  FloatFormat scale_format_;
};

}  // namespace

QuantizerFamily rtn_family() {
  using K = ParamSpec::Kind;
  ParamSchema schema({
      {.name = "bits", .kind = K::integer, .default_value = std::int64_t{4},
       .description = "bits per code (mode=sym needs 2 or more)", .min = 1, .max = 8},
      group_param(128),
      {.name = "mode", .kind = K::choice, .default_value = std::string("sym"),
       .description = "sym: absmax scale, levels -qmax..qmax; asym: min/max scale and minimum",
       .choices = {"sym", "asym"}},
      {.name = "scale", .kind = K::choice, .default_value = std::string("fp16"),
       .description = "storage format of scales and minimums", .choices = float_format_names()},
  });
  return {"rtn", "round-to-nearest on a uniform grid per group (symmetric absmax or asymmetric min/max)",
          schema, [schema](const Params& p) -> std::unique_ptr<Quantizer> {
            if (get_str(p, "mode") == "sym" && get_int(p, "bits") < 2)
              throw InputError("rtn: mode=sym needs bits >= 2 (its levels are -qmax..qmax with qmax = 2^(bits-1) - 1); "
                               "use mode=asym for 1 bit");
            return std::make_unique<RtnQuantizer>(schema, p);
          }};
}

}  // namespace tqb
