#include "quantizers/qjl.hpp"

#include <Eigen/Core>
#include <cmath>

#include "common/float_format.hpp"
#include "quantizers/bitpack.hpp"
#include "quantizers/rotation.hpp"
#include "quantizers/weight_groups.hpp"

namespace tqb {
namespace {

using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstStrided = Eigen::Map<const RowMatrix, 0, Eigen::OuterStride<>>;
using Strided = Eigen::Map<RowMatrix, 0, Eigen::OuterStride<>>;

class Qjl final : public Quantizer {
 public:
  Qjl(const ParamSchema& schema, const Params& p)
      : Quantizer("qjl", schema, p),
        sketch_(get_int(p, "sketch")),
        group_(get_int(p, "group")),
        norm_format_(*parse_float_format(get_str(p, "norm"))) {}

  ShapeProblem check_shape(std::size_t rows, std::size_t cols) const override {
    return check_group_shape(group_, rows, cols);
  }

  // m/g: k for a sketch of k·d, m/g for an absolute sketch.
  double nominal_bits(std::size_t cols) const override {
    const std::size_t g = group_width(group_, cols);
    return static_cast<double>(sketch_width(g)) / static_cast<double>(g);
  }

  // m sign bits and one norm per (row, group); the projections follow from the seed.
  std::uint64_t storage_bytes(std::size_t rows, std::size_t cols) const override {
    const std::size_t g = group_width(group_, cols), groups = cols / g;
    return packed_size(rows * groups * sketch_width(g), 1) + std::uint64_t{rows} * groups * bytes_of(norm_format_);
  }

  // An m x g Gaussian projection per group (cached), the rows x m products in floats, one byte per
  // sketch bit before packing.
  std::uint64_t working_bytes(std::size_t rows, std::size_t cols) const override {
    const std::uint64_t g = group_width(group_, cols), groups = cols / g, m = sketch_width(g);
    return groups * m * g * 4 + std::uint64_t{rows} * m * 4 * 2 + std::uint64_t{rows} * groups * m * 9 / 8;
  }

  QuantizedMatrix quantize(const float* w, std::size_t rows, std::size_t cols, std::uint64_t seed) const override {
    const std::size_t g = group_width(group_, cols), groups = cols / g, m = sketch_width(g);
    const std::size_t nb = bytes_of(norm_format_);
    QuantizedMatrix q = new_matrix(rows, cols, seed, 1);
    q.side_format = norm_format_;
    q.scales.resize(rows * groups * nb);
    std::vector<std::uint8_t> signs(rows * groups * m);
    for (std::size_t j = 0; j < groups; ++j) {
      const auto s = projection(m, g, seed, j);
      const Eigen::Map<const RowMatrix> S(s->data(), m, g);
      const ConstStrided V(w + j * g, rows, g, Eigen::OuterStride<>(cols));
      // S v for every row, in fixed blocks of rows: each block's product runs on one thread, so the sums (and
      // a sign that a rounding could flip) do not depend on the thread count (Eigen blocks a parallel
      // product by it); a sweep's shards run with other thread counts than a single process.
#pragma omp parallel for schedule(static)
      for (std::ptrdiff_t b = 0; b < static_cast<std::ptrdiff_t>(rows); b += kRowBlock) {
        const Eigen::Index n = std::min<Eigen::Index>(kRowBlock, static_cast<Eigen::Index>(rows) - b);
        const RowMatrix P = V.middleRows(b, n) * S.transpose();  // n x m
        for (Eigen::Index i = 0; i < n; ++i) {
          const std::size_t r = static_cast<std::size_t>(b + i);
          const double n2 = V.row(static_cast<Eigen::Index>(r)).cast<double>().squaredNorm();
          store_float(norm_format_, static_cast<float>(std::sqrt(n2)), q.scales.data() + (r * groups + j) * nb);
          std::uint8_t* out = signs.data() + (r * groups + j) * m;
          for (std::size_t k = 0; k < m; ++k) out[k] = P(i, static_cast<Eigen::Index>(k)) >= 0.0f;
        }
      }
    }
    q.codes.resize(packed_size(signs.size(), 1));
    pack_codes_parallel(signs.data(), signs.size(), 1, q.codes.data());
    return q;
  }

  void dequantize(const QuantizedMatrix& q, float* out) const override {
    const std::size_t g = group_width(group_, q.cols), groups = q.cols / g, m = sketch_width(g);
    const std::size_t nb = bytes_of(q.side_format);
    std::vector<std::uint8_t> bits(q.rows * groups * m);
    unpack_codes(q.codes.data(), bits.size(), 1, bits.data());
    const float c = estimator_scale(m);
    for (std::size_t j = 0; j < groups; ++j) {
      const auto s = projection(m, g, q.seed, j);
      const Eigen::Map<const RowMatrix> S(s->data(), m, g);
      RowMatrix z(q.rows, m);  // ±γ·√(π/2)/m per sketch bit
#pragma omp parallel for schedule(static)
      for (std::ptrdiff_t r = 0; r < static_cast<std::ptrdiff_t>(q.rows); ++r) {
        const float gamma = load_float(q.side_format, q.scales.data() + (r * groups + j) * nb) * c;
        const std::uint8_t* b = bits.data() + (r * groups + j) * m;
        for (std::size_t k = 0; k < m; ++k) z(r, k) = b[k] ? gamma : -gamma;
      }
      Strided dst(out + j * g, q.rows, g, Eigen::OuterStride<>(q.cols));
#pragma omp parallel for schedule(static)  // fixed row blocks, one thread each: as in quantize
      for (std::ptrdiff_t b = 0; b < static_cast<std::ptrdiff_t>(q.rows); b += kRowBlock) {
        const Eigen::Index n = std::min<Eigen::Index>(kRowBlock, static_cast<Eigen::Index>(q.rows) - b);
        dst.middleRows(b, n).noalias() = z.middleRows(b, n) * S;
      }
    }
  }

  std::vector<PassForm> decode_form() const override {
    return {{.bits = 1, .group = group_, .transform = GroupTransform::gaussian_projection, .has_offset = false}};
  }

  // Sign codes ±1 in the projected domain (m per group), scaled by ‖v‖·√(π/2)/m: the QJL estimator
  // ⟨S x, sign(S v)⟩·‖v‖·√(π/2)/m (QJL, Zandieh et al. 2024, Lemma 3.2) as a 1-bit lookup.
  void describe_decode(const QuantizedMatrix& q, std::vector<DecodePass>& out) const override {
    const std::size_t g = group_width(group_, q.cols), groups = q.cols / g, m = sketch_width(g);
    DecodePass s = affine_lut_pass(q, g, {-1.0f, 1.0f});
    s.m = m;
    s.transform = GroupTransform::gaussian_projection;
    const float c = estimator_scale(m);
    for (auto& x : s.a) x *= c;
    for (std::size_t j = 0; j < groups; ++j) s.projections.push_back(projection(m, g, q.seed, j));
    out.push_back(std::move(s));
  }

 private:
  static constexpr std::ptrdiff_t kRowBlock = 64;
  static float estimator_scale(std::size_t m) { return static_cast<float>(std::sqrt(M_PI / 2.0) / static_cast<double>(m)); }
  std::size_t sketch_width(std::size_t g) const {
    return sketch_ < 0 ? static_cast<std::size_t>(-sketch_) * g : static_cast<std::size_t>(sketch_);
  }
  static std::shared_ptr<const std::vector<float>> projection(std::size_t m, std::size_t g, std::uint64_t seed,
                                                               std::size_t j) {
    return cached_gaussian_matrix(m, g, group_seed(seed, "qjl", j));
  }

  std::int64_t sketch_;  // > 0: m; -k: m = k·g (aliases d, 2d, ..., 8d)
  std::int64_t group_;
  FloatFormat norm_format_;
};

}  // namespace

QuantizerFamily qjl_family() {
  using K = ParamSpec::Kind;
  ParamSchema schema({
      {.name = "sketch", .kind = K::integer, .default_value = std::int64_t{-1},
       .description = "sketch size m (sign bits per group); 'd', '2d', ... = multiples of the group dimension "
                      "(m/d bits per weight)",
       .min = 1, .max = 1 << 16,
       .aliases = {{"d", -1}, {"2d", -2}, {"3d", -3}, {"4d", -4}, {"5d", -5}, {"6d", -6}, {"7d", -7}, {"8d", -8}}},
      group_param(0),
      norm_param(),
  });
  return {"qjl", "QJL: 1-bit signs of a Gaussian projection plus the norm, per group (unbiased inner products)",
          schema, [schema](const Params& p) { return std::make_unique<Qjl>(schema, p); }};
}

}  // namespace tqb
