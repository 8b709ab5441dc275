#include "quantizers/turboquant.hpp"

#include <algorithm>
#include <cmath>

#include "common/float_format.hpp"
#include "quantizers/bitpack.hpp"
#include "quantizers/codebook.hpp"
#include "quantizers/rotation.hpp"
#include "quantizers/weight_groups.hpp"

namespace tqb {
namespace {

// Index of the nearest centroid: the number of decision boundaries below y. NB boundaries known at
// compile time for b <= 4 so the comparisons unroll and vectorise across a group.
template <int NB>
void encode_fixed(const float* y, std::size_t n, float scale, const float* bnd, std::uint8_t* codes) {
  float b[NB];
  for (int k = 0; k < NB; ++k) b[k] = bnd[k] * scale;
  for (std::size_t i = 0; i < n; ++i) {
    int c = 0;
    for (int k = 0; k < NB; ++k) c += y[i] > b[k];
    codes[i] = static_cast<std::uint8_t>(c);
  }
}

void encode(const float* y, std::size_t n, float scale, const std::vector<float>& bnd, std::uint8_t* codes) {
  switch (bnd.size()) {
    case 1: return encode_fixed<1>(y, n, scale, bnd.data(), codes);
    case 3: return encode_fixed<3>(y, n, scale, bnd.data(), codes);
    case 7: return encode_fixed<7>(y, n, scale, bnd.data(), codes);
    case 15: return encode_fixed<15>(y, n, scale, bnd.data(), codes);
    default: {
      // y/scale against unscaled boundaries, by binary search.
      const float inv = scale > 0 ? 1.0f / scale : 0.0f;
      for (std::size_t i = 0; i < n; ++i)
        codes[i] = static_cast<std::uint8_t>(std::upper_bound(bnd.begin(), bnd.end(), y[i] * inv) - bnd.begin());
    }
  }
}

class TurboQuantMse final : public Quantizer {
 public:
  explicit TurboQuantMse(const Params& p)
      : Quantizer("turboquant", p),
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

  QuantizedMatrix quantize(const float* w, std::size_t rows, std::size_t cols, std::uint64_t seed) const override {
    const std::size_t g = group_width(group_, cols), groups = cols / g, nb = bytes_of(norm_format_);
    const Codebook cb = codebook(g);
    const auto rot = rotations(g, groups, seed);
    QuantizedMatrix q;
    q.rows = rows;
    q.cols = cols;
    q.format = name();
    q.seed = seed;
    q.code_bits = bits_;
    q.side_format = norm_format_;
    q.scales.resize(rows * groups * nb);

    std::vector<float> x(w, w + rows * cols);
    if (rotation_ == RotationKind::haar)  // one GEMM per group over all rows
      for (std::size_t j = 0; j < groups; ++j) rot[j]->forward(x.data() + j * g, rows, cols);
    std::vector<std::uint8_t> codes(rows * cols);
#pragma omp parallel for schedule(static)
    for (std::ptrdiff_t r = 0; r < static_cast<std::ptrdiff_t>(rows); ++r) {
      for (std::size_t j = 0; j < groups; ++j) {
        float* v = x.data() + r * cols + j * g;
        if (rotation_ == RotationKind::hadamard) rot[j]->forward(v, 1, g);
        double n2 = 0;
        for (std::size_t i = 0; i < g; ++i) n2 += static_cast<double>(v[i]) * v[i];
        const float norm = static_cast<float>(std::sqrt(n2));
        store_float(norm_format_, norm, q.scales.data() + (r * groups + j) * nb);
        // Compare v against the unit-vector boundaries scaled by the norm (no division per element).
        encode(v, g, norm, cb.boundaries, codes.data() + r * cols + j * g);
      }
    }
    q.codes.resize(packed_size(rows * cols, bits_));
    pack_codes_parallel(codes.data(), codes.size(), bits_, q.codes.data());
    return q;
  }

  void dequantize(const QuantizedMatrix& q, float* out) const override {
    const std::size_t g = group_width(group_, q.cols), groups = q.cols / g, nb = bytes_of(q.side_format);
    const Codebook cb = codebook(g);
    const auto rot = rotations(g, groups, q.seed);
#pragma omp parallel
    {
      std::vector<std::uint8_t> codes(q.cols);
#pragma omp for schedule(static)
      for (std::ptrdiff_t r = 0; r < static_cast<std::ptrdiff_t>(q.rows); ++r) {
        unpack_codes_range(q.codes.data(), r * q.cols, q.cols, bits_, codes.data());
        for (std::size_t j = 0; j < groups; ++j) {
          const float norm = load_float(q.side_format, q.scales.data() + (r * groups + j) * nb);
          float* v = out + r * q.cols + j * g;
          for (std::size_t i = 0; i < g; ++i) v[i] = cb.centroids[codes[j * g + i]] * norm;
          if (rotation_ == RotationKind::hadamard) rot[j]->inverse(v, 1, g);
        }
      }
    }
    if (rotation_ == RotationKind::haar)
      for (std::size_t j = 0; j < groups; ++j) rot[j]->inverse(out + j * g, q.rows, q.cols);
  }

 private:
  // Centroids and boundaries for unit vectors in g dimensions, as floats.
  struct Codebook {
    std::vector<float> centroids, boundaries;
  };
  Codebook codebook(std::size_t g) const {
    const LloydMaxCodebook& lm = lloyd_max_codebook(codebook_, static_cast<int>(g), bits_);
    const double s = codebook_ == CodebookDistribution::gaussian ? 1.0 / std::sqrt(static_cast<double>(g)) : 1.0;
    Codebook cb;
    for (double c : lm.centroids) cb.centroids.push_back(static_cast<float>(c * s));
    for (double b : lm.boundaries) cb.boundaries.push_back(static_cast<float>(b * s));
    return cb;
  }

  std::vector<std::shared_ptr<const Rotation>> rotations(std::size_t g, std::size_t groups, std::uint64_t seed) const {
    std::vector<std::shared_ptr<const Rotation>> rot(groups);
    for (std::size_t j = 0; j < groups; ++j) rot[j] = cached_rotation(rotation_, g, group_seed(seed, "rotation", j));
    return rot;
  }

  int bits_;
  std::int64_t group_;
  RotationKind rotation_;
  CodebookDistribution codebook_;
  FloatFormat norm_format_;
};

}  // namespace

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
          std::move(schema), [](const Params& p) { return std::make_unique<TurboQuantMse>(p); }};
}

}  // namespace tqb
