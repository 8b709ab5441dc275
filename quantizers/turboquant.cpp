#include "quantizers/turboquant.hpp"

#include <algorithm>
#include <cmath>

#include "common/float_format.hpp"
#include "common/simd.hpp"
#include "quantizers/bitpack.hpp"
#include "quantizers/codebook.hpp"
#include "quantizers/rotation.hpp"
#include "quantizers/weight_groups.hpp"

namespace tqb {
namespace {

// Index of the nearest centroid = the number of decision boundaries below y. The codebooks are
// symmetric (Lloyd-Max of a symmetric density: b_k = −b_{K−2−k}, the middle one 0), so only |y| is
// compared with the K/2 − 1 positive boundaries and the sign picks the half: half the comparisons.
// HALF known at compile time for b <= 4 so the comparisons unroll and vectorise across a group.
template <int HALF>
[[gnu::always_inline]] inline void encode_symmetric(const float* y, std::size_t n, float scale, const float* pos,
                                                    std::uint8_t* codes) {
  float b[HALF > 0 ? HALF : 1];
  for (int k = 0; k < HALF; ++k) b[k] = pos[k] * scale;
  for (std::size_t i = 0; i < n; ++i) {
    const float a = std::fabs(y[i]);
    int m = 0;
    for (int k = 0; k < HALF; ++k) m += a > b[k];
    codes[i] = static_cast<std::uint8_t>(y[i] > 0.0f ? HALF + 1 + m : HALF - m);
  }
}

// bnd: all 2^b − 1 boundaries of a unit-vector codebook, ascending; scale: the group's norm.
[[gnu::always_inline]] inline void encode(const float* y, std::size_t n, float scale, const std::vector<float>& bnd,
                                          std::uint8_t* codes) {
  const float* pos = bnd.data() + bnd.size() / 2 + 1;  // the positive boundaries
  switch (bnd.size()) {
    case 1: return encode_symmetric<0>(y, n, scale, pos, codes);
    case 3: return encode_symmetric<1>(y, n, scale, pos, codes);
    case 7: return encode_symmetric<3>(y, n, scale, pos, codes);
    case 15: return encode_symmetric<7>(y, n, scale, pos, codes);
    default: {
      // y/scale against unscaled boundaries, by binary search.
      const float inv = scale > 0 ? 1.0f / scale : 0.0f;
      for (std::size_t i = 0; i < n; ++i)
        codes[i] = static_cast<std::uint8_t>(std::lower_bound(bnd.begin(), bnd.end(), y[i] * inv) - bnd.begin());
    }
  }
}

// Σ x², in double with 8 interleaved partial sums: a fixed summation order (the same result in every
// SIMD clone) that still vectorises, instead of one serial chain of dependent additions.
inline double sum_of_squares(const float* x, std::size_t n) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) acc[k] += static_cast<double>(x[i + k]) * x[i + k];
  for (; i < n; ++i) acc[i % 8] += static_cast<double>(x[i]) * x[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

// Everything the per-row encoder needs: shape, codebook boundaries for unit vectors, the group
// rotations' Hadamard plans (nullptr: rotate nothing here), and where norms and codes go.
struct RowEncoder {
  std::size_t cols, g;
  int bits;
  FloatFormat norm_format;
  const std::vector<float>& boundaries;
  std::vector<const HadamardPlan*> plans;  // per group
  std::uint8_t* norms;                     // [rows][groups], norm_format
  std::uint8_t* packed;                    // the code stream (used when g % 8 == 0)
  std::uint8_t* unpacked;                  // one code per byte (when g % 8 != 0), else nullptr
};

// One row: per group, rotate (Hadamard), take the norm, encode against the norm-scaled boundaries and
// pack. buf: g floats, codes: g bytes of scratch.
TQB_MULTIVERSION void encode_row(const RowEncoder& e, const float* row, std::size_t r, float* buf,
                                 std::uint8_t* codes) {
  const std::size_t groups = e.cols / e.g, nb = bytes_of(e.norm_format);
  for (std::size_t j = 0; j < groups; ++j) {
    if (e.plans[j]) {
      hadamard_forward_copy(*e.plans[j], row + j * e.g, buf);
    } else {
      for (std::size_t i = 0; i < e.g; ++i) buf[i] = row[j * e.g + i];
    }
    const float norm = static_cast<float>(std::sqrt(sum_of_squares(buf, e.g)));
    store_float(e.norm_format, norm, e.norms + (r * groups + j) * nb);
    const std::size_t first = r * e.cols + j * e.g;
    if (e.unpacked) {
      encode(buf, e.g, norm, e.boundaries, e.unpacked + first);
    } else {
      encode(buf, e.g, norm, e.boundaries, codes);
      pack_codes(codes, e.g, e.bits, e.packed + first * e.bits / 8);
    }
  }
}

class TurboQuantMse final : public Quantizer {
 public:
  TurboQuantMse(const ParamSchema& schema, const Params& p)
      : Quantizer("turboquant", schema, p),
        bits_(static_cast<int>(get_int(p, "bits"))),
        group_(get_int(p, "group")),
        rotation_(parse_rotation_kind(get_str(p, "rotation"))),
        codebook_(get_str(p, "codebook") == "beta" ? CodebookDistribution::beta : CodebookDistribution::gaussian),
        norm_format_(*parse_float_format(get_str(p, "norm"))) {}

  ShapeProblem check_shape(std::size_t rows, std::size_t cols) const override {
    ShapeProblem p = check_group_shape(group_, rows, cols);
    if (p.message.empty() && codebook_ == CodebookDistribution::beta && group_width(group_, cols) < 2)
      return {"group", "the beta codebook needs groups of at least 2 columns"};
    return p;
  }

  double nominal_bits(std::size_t cols) const override { return bits_; }

  std::unique_ptr<Quantizer> without_rotation() const override {
    if (rotation_ == RotationKind::none) return nullptr;
    Params p = params();
    p["rotation"] = std::string("none");
    return make_quantizer(family(), p);
  }

  // Packed codes and one norm per group; the codebook and rotations follow from the name and seed.
  std::uint64_t storage_bytes(std::size_t rows, std::size_t cols) const override {
    return packed_size(rows * cols, bits_) + std::uint64_t{rows} * (cols / group_width(group_, cols)) * bytes_of(norm_format_);
  }

  // Haar: a d x d float rotation per group (cached), its QR in doubles while it is made (three d x d),
  // a rotated copy of the matrix and Eigen's product temporary; codes unpacked when g % 8 != 0.
  std::uint64_t working_bytes(std::size_t rows, std::size_t cols) const override {
    const std::uint64_t g = group_width(group_, cols), groups = cols / g, n = std::uint64_t{rows} * cols;
    std::uint64_t b = Quantizer::working_bytes(rows, cols);
    if (rotation_ == RotationKind::haar) b += groups * g * g * 4 + 3 * g * g * 8 + 2 * n * 4;
    return b;
  }

  QuantizedMatrix quantize(const float* w, std::size_t rows, std::size_t cols, std::uint64_t seed) const override {
    const std::size_t g = group_width(group_, cols), groups = cols / g;
    const Codebook cb = codebook(g);
    const auto rot = rotations(g, groups, seed);
    QuantizedMatrix q = new_matrix(rows, cols, seed, bits_);
    q.side_format = norm_format_;
    q.scales.resize(rows * groups * bytes_of(norm_format_));
    q.codes.resize(packed_size(rows * cols, bits_));

    // Haar: rotate every group's column block by one GEMM first. Hadamard: rotate inside the row loop.
    std::vector<float> rotated;
    const float* src = w;
    if (rotation_ == RotationKind::haar) {
      rotated.assign(w, w + rows * cols);
      for (std::size_t j = 0; j < groups; ++j) rot[j]->forward(rotated.data() + j * g, rows, cols);
      src = rotated.data();
    }
    RowEncoder enc{cols, g, bits_, norm_format_, cb.boundaries, {}, q.scales.data(), q.codes.data(), nullptr};
    for (const auto& r : rot) enc.plans.push_back(r->hadamard_plan());
    // Groups of a multiple of 8 codes start on byte boundaries and are packed in place; others go
    // through one code per byte and a final pack.
    std::vector<std::uint8_t> all_codes;
    if (g % 8 != 0) {
      all_codes.resize(rows * cols);
      enc.unpacked = all_codes.data();
    }
#pragma omp parallel
    {
      std::vector<float> buf(g);
      std::vector<std::uint8_t> codes(g);
#pragma omp for schedule(static)
      for (std::ptrdiff_t r = 0; r < static_cast<std::ptrdiff_t>(rows); ++r)
        encode_row(enc, src + r * cols, static_cast<std::size_t>(r), buf.data(), codes.data());
    }
    if (!all_codes.empty()) pack_codes_parallel(all_codes.data(), all_codes.size(), bits_, q.codes.data());
    return q;
  }

  void dequantize(const QuantizedMatrix& q, float* out) const override {
    // v̂ = ‖v‖ Π_jᵀ c[idx]: centroids times norms, then each group's inverse rotation.
    const std::size_t g = group_width(group_, q.cols), groups = q.cols / g;
    dequantize_affine_lut(q, g, codebook(g).centroids, out);
    rotate_groups(rotations(g, groups, q.seed), out, q.rows, q.cols, /*inverse=*/true);
  }

  std::vector<PassForm> decode_form() const override {
    return {{.bits = bits_, .group = group_, .transform = group_transform_of(rotation_), .has_offset = false}};
  }

  // Codes index the unit-vector codebook scaled by the group's norm, in the rotated domain.
  void describe_decode(const QuantizedMatrix& q, std::vector<DecodePass>& out) const override {
    const std::size_t g = group_width(group_, q.cols), groups = q.cols / g;
    DecodePass s = affine_lut_pass(q, g, codebook(g).centroids);
    s.transform = group_transform_of(rotation_);
    if (rotation_ != RotationKind::none) s.rotations = rotations(g, groups, q.seed);
    out.push_back(std::move(s));
  }

 private:
  // Centroids and boundaries for unit vectors in g dimensions, as floats.
  struct Codebook {
    std::vector<float> centroids, boundaries;
  };
  Codebook codebook(std::size_t g) const {
    const char* name = codebook_ == CodebookDistribution::beta ? "beta" : "gaussian";
    return {turboquant_centroids(name, g, bits_), turboquant_boundaries(name, g, bits_)};
  }

  std::vector<std::shared_ptr<const Rotation>> rotations(std::size_t g, std::size_t groups, std::uint64_t seed) const {
    return group_rotations(rotation_, g, groups, seed);
  }

  int bits_;
  std::int64_t group_;
  RotationKind rotation_;
  CodebookDistribution codebook_;
  FloatFormat norm_format_;
};

}  // namespace

std::vector<float> turboquant_centroids(const std::string& codebook, std::size_t g, int bits) {
  const auto dist = codebook == "beta" ? CodebookDistribution::beta : CodebookDistribution::gaussian;
  const LloydMaxCodebook& lm = lloyd_max_codebook(dist, static_cast<int>(g), bits);
  const double s = dist == CodebookDistribution::gaussian ? 1.0 / std::sqrt(static_cast<double>(g)) : 1.0;
  std::vector<float> c;
  for (double x : lm.centroids) c.push_back(static_cast<float>(x * s));
  return c;
}

std::vector<float> turboquant_boundaries(const std::string& codebook, std::size_t g, int bits) {
  const auto dist = codebook == "beta" ? CodebookDistribution::beta : CodebookDistribution::gaussian;
  const LloydMaxCodebook& lm = lloyd_max_codebook(dist, static_cast<int>(g), bits);
  const double s = dist == CodebookDistribution::gaussian ? 1.0 / std::sqrt(static_cast<double>(g)) : 1.0;
  std::vector<float> b;
  for (double x : lm.boundaries) b.push_back(static_cast<float>(x * s));
  return b;
}

QuantizerFamily turboquant_family() {
  using K = ParamSpec::Kind;
  ParamSchema schema({
      {.name = "bits", .kind = K::integer, .default_value = std::int64_t{4}, .description = "bits per coordinate",
       .min = 1, .max = 8},
      codebook_param(),
      rotation_param(),
      group_param(0),
      norm_param(),
  });
  return {"turboquant", "TurboQuant_mse (Algorithm 1): random rotation + Lloyd-Max scalar codebook, per group",
          schema, [schema](const Params& p) { return std::make_unique<TurboQuantMse>(schema, p); }};
}

}  // namespace tqb
