#include "kernels/fused_lut.hpp"

#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <stdexcept>

#include "common/float_format.hpp"
#include "kernels/simd_level.hpp"
#include "quantizers/bitpack.hpp"
#include "quantizers/registry.hpp"
#include "quantizers/rotation.hpp"
#include "quantizers/turboquant.hpp"
#include "quantizers/weight_groups.hpp"

namespace tqb {
namespace {

struct Pass {
  std::size_t rows = 0, cols = 0, groups = 0, g = 0, m = 0;  // m: codes per (row, group)
  int bits = 0;
  const std::uint8_t* codes = nullptr;  // into the owned QuantizedMatrix
  std::vector<float> a, b;              // rows × groups; b empty when zero
  std::vector<float> lut;               // 2^bits
  std::vector<std::shared_ptr<const Rotation>> rotations;                 // per group, or empty
  std::vector<std::shared_ptr<const std::vector<float>>> projections;     // per group (m × g), or empty
};

std::vector<float> side_values(const QuantizedMatrix& q, const std::vector<std::uint8_t>& bytes) {
  const std::size_t nb = bytes_of(q.side_format), n = bytes.size() / nb;
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = load_float(q.side_format, bytes.data() + i * nb);
  return v;
}

void build(const Quantizer& quantizer, const QuantizedMatrix& q, std::vector<Pass>& out) {
  const std::string& f = quantizer.family();
  const Params& p = quantizer.params();
  if (f == "residual" || f == "turboquant_prod") {
    for (const auto& pass : q.passes) build(*parse_quantizer(pass.format), pass, out);
    return;
  }
  Pass s;
  s.rows = q.rows;
  s.cols = q.cols;
  s.bits = q.code_bits;
  s.codes = q.codes.data();
  s.g = group_width(get_int(p, "group"), q.cols);
  s.groups = q.cols / s.g;
  s.m = s.g;
  s.a = side_values(q, q.scales);
  if (f == "rtn") {
    const bool sym = get_str(p, "mode") == "sym";
    const int qmax = (1 << (s.bits - 1)) - 1;
    for (int c = 0; c < (1 << s.bits); ++c) s.lut.push_back(static_cast<float>(sym ? c - qmax : c));
    if (!sym) s.b = side_values(q, q.zeros);
  } else if (f == "turboquant") {
    s.lut = turboquant_centroids(get_str(p, "codebook"), s.g, s.bits);
    const RotationKind kind = parse_rotation_kind(get_str(p, "rotation"));
    if (kind != RotationKind::none)
      for (std::size_t j = 0; j < s.groups; ++j) s.rotations.push_back(cached_rotation(kind, s.g, group_seed(q.seed, "rotation", j)));
  } else if (f == "qjl") {
    const std::int64_t sk = get_int(p, "sketch");
    s.m = sk < 0 ? static_cast<std::size_t>(-sk) * s.g : static_cast<std::size_t>(sk);
    s.lut = {-1.0f, 1.0f};
    const float c = static_cast<float>(std::sqrt(M_PI / 2.0) / static_cast<double>(s.m));
    for (auto& x : s.a) x *= c;
    for (std::size_t j = 0; j < s.groups; ++j) s.projections.push_back(cached_gaussian_matrix(s.m, s.g, group_seed(q.seed, "qjl", j)));
  } else {
    throw std::invalid_argument("fused_lut: unsupported format " + quantizer.name());
  }
  out.push_back(std::move(s));
}

// Decodes the m codes of (row r, group j) into floats via the lookup table.
[[gnu::always_inline]] inline void decode(const Pass& s, std::size_t r, std::size_t j, float* buf, std::uint8_t* tmp) {
  const std::size_t first = (r * s.groups + j) * s.m;
#if defined(__GNUC__)
  if (s.bits == 4 && s.m % 8 == 0 && first % 2 == 0) {
    typedef int v8si __attribute__((vector_size(32)));
    typedef float v8sf __attribute__((vector_size(32)));
    v8sf lo, hi;
    std::memcpy(&lo, s.lut.data(), 32);
    std::memcpy(&hi, s.lut.data() + 8, 32);
    const std::uint8_t* c = s.codes + first / 2;
    const v8si shifts = {0, 4, 8, 12, 16, 20, 24, 28};
    for (std::size_t i = 0; i < s.m; i += 8) {
      std::uint32_t w;
      std::memcpy(&w, c + i / 2, 4);
      const v8si idx = (v8si{} + static_cast<int>(w)) >> shifts & 15;  // code k of 8 in lane k
      const v8si low = idx & 7;
      const v8sf v = (idx & 8) != 0 ? __builtin_shuffle(hi, low) : __builtin_shuffle(lo, low);
      std::memcpy(buf + i, &v, 32);
    }
    return;
  }
#endif
  unpack_codes_range(s.codes, first, s.m, s.bits, tmp);
  for (std::size_t i = 0; i < s.m; ++i) buf[i] = s.lut[tmp[i]];
}

// Σ a·b with 8 interleaved partial sums: vectorises without reassociation, and the fixed order keeps
// every SIMD level's result the same function of the inputs. (32 sums in four accumulators measured
// slower for groups of 128: the longer final reduction costs more than the latency it hides.)
[[gnu::always_inline]] inline float dot(const float* a, const float* b, std::size_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) acc[k] += a[i + k] * b[i + k];
  for (; i < n; ++i) acc[i % 8] += a[i] * b[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

// y[t·out + r] += Σ_j a_rj ⟨decoded, xt[t]⟩ + b_rj sx[t][j] for rows [r0, r1). xt: n × groups·m.
[[gnu::always_inline]] inline void rows_body(const Pass& s, const float* xt, const float* sx, std::size_t n,
                                             std::size_t r0, std::size_t r1, float* y, std::size_t out) {
  std::vector<float> buf(s.m);
  std::vector<std::uint8_t> tmp(s.m);
  const std::size_t width = s.groups * s.m;
  for (std::size_t r = r0; r < r1; ++r)
    for (std::size_t j = 0; j < s.groups; ++j) {
      decode(s, r, j, buf.data(), tmp.data());
      const float a = s.a[r * s.groups + j];
      const float b = s.b.empty() ? 0.0f : s.b[r * s.groups + j];
      for (std::size_t t = 0; t < n; ++t) {
        float v = a * dot(buf.data(), xt + t * width + j * s.m, s.m);
        if (b != 0.0f) v += b * sx[t * s.groups + j];
        y[t * out + r] += v;
      }
    }
}

// One row of transformed-domain weights: a_rj·lut[q] for every group (width groups·m).
[[gnu::always_inline]] inline void decode_row_body(const Pass& s, std::size_t r, float* out) {
  std::vector<std::uint8_t> tmp(s.m);
  for (std::size_t j = 0; j < s.groups; ++j) {
    float* o = out + j * s.m;
    decode(s, r, j, o, tmp.data());
    const float a = s.a[r * s.groups + j];
    for (std::size_t i = 0; i < s.m; ++i) o[i] *= a;
  }
}
void decode_row_scalar(const Pass& s, std::size_t r, float* out) { decode_row_body(s, r, out); }
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx2,fma"))) void decode_row_avx2(const Pass& s, std::size_t r, float* out) {
  decode_row_body(s, r, out);
}
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma"))) void decode_row_avx512(const Pass& s, std::size_t r,
                                                                                            float* out) {
  decode_row_body(s, r, out);
}
#endif
void decode_row(const Pass& s, std::size_t r, float* out, SimdLevel level) {
#if defined(__x86_64__) && defined(__GNUC__)
  if (level == SimdLevel::avx512) return decode_row_avx512(s, r, out);
  if (level == SimdLevel::avx2) return decode_row_avx2(s, r, out);
#endif
  decode_row_scalar(s, r, out);
}

void rows_scalar(const Pass& s, const float* xt, const float* sx, std::size_t n, std::size_t r0, std::size_t r1,
                 float* y, std::size_t out) {
  rows_body(s, xt, sx, n, r0, r1, y, out);
}
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx2,fma"))) void rows_avx2(const Pass& s, const float* xt, const float* sx, std::size_t n,
                                                   std::size_t r0, std::size_t r1, float* y, std::size_t out) {
  rows_body(s, xt, sx, n, r0, r1, y, out);
}
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma"))) void rows_avx512(
    const Pass& s, const float* xt, const float* sx, std::size_t n, std::size_t r0, std::size_t r1, float* y,
    std::size_t out) {
  rows_body(s, xt, sx, n, r0, r1, y, out);
}
#endif

class FusedLutLinear final : public Linear {
 public:
  FusedLutLinear(const Quantizer& quantizer, QuantizedMatrix q) : q_(std::move(q)) { build(quantizer, q_, passes_); }
  std::size_t in() const override { return q_.cols; }
  std::size_t out() const override { return q_.rows; }
  std::size_t weight_bytes() const override {
    std::size_t b = q_.storage_bytes();
    for (const auto& s : passes_) b += (s.a.size() + s.b.size()) * sizeof(float);  // side data widened to fp32
    return b;
  }
  std::string kernel() const override { return "fused_lut_" + to_string(simd_level()); }

  void forward(const float* x, std::size_t n, float* y) const override {
    std::memset(y, 0, n * q_.rows * sizeof(float));
    const SimdLevel level = simd_level();
    for (const Pass& s : passes_) {
      // Transformed activations x̃ (n × groups·m) and, for offsets, their per-group sums.
      const std::size_t width = s.groups * s.m;
      std::vector<float> xt(n * width), sx(s.b.empty() ? 0 : n * s.groups);
      for (std::size_t t = 0; t < n; ++t)
        for (std::size_t j = 0; j < s.groups; ++j) {
          const float* src = x + t * s.cols + j * s.g;
          float* dst = xt.data() + t * width + j * s.m;
          if (!s.projections.empty()) {
            const float* S = s.projections[j]->data();
            for (std::size_t k = 0; k < s.m; ++k) dst[k] = dot(S + k * s.g, src, s.g);
          } else {
            std::memcpy(dst, src, s.g * sizeof(float));
            if (!s.rotations.empty()) s.rotations[j]->forward(dst, 1, s.g);
          }
          if (!sx.empty()) {
            double sum = 0;
            for (std::size_t k = 0; k < s.m; ++k) sum += dst[k];
            sx[t * s.groups + j] = static_cast<float>(sum);
          }
        }
      if (n >= kPrefillBatch) {
        prefill(s, xt, sx, n, y, level);
        continue;
      }
      const std::size_t chunk = 16;
      const std::size_t tasks = (s.rows + chunk - 1) / chunk;
#pragma omp parallel for schedule(dynamic, 4)
      for (std::ptrdiff_t task = 0; task < static_cast<std::ptrdiff_t>(tasks); ++task) {
        const std::size_t r0 = task * chunk, r1 = std::min(s.rows, r0 + chunk);
#if defined(__x86_64__) && defined(__GNUC__)
        if (level == SimdLevel::avx512) rows_avx512(s, xt.data(), sx.data(), n, r0, r1, y, s.rows);
        else if (level == SimdLevel::avx2) rows_avx2(s, xt.data(), sx.data(), n, r0, r1, y, s.rows);
        else rows_scalar(s, xt.data(), sx.data(), n, r0, r1, y, s.rows);
#else
        rows_scalar(s, xt.data(), sx.data(), n, r0, r1, y, s.rows);
#endif
      }
    }
  }

 private:
  // Batches this large go through tiles: decode 256 rows of transformed-domain weights
  // W̃[r][j·m + i] = a_rj·lut[q] (no inverse rotation needed: the activations are already rotated),
  // then one dense GEMM per tile, Y[:, tile] += X̃ W̃ᵀ, plus the offsets' Σ_j b_rj·Σ x̃_j.
  static constexpr std::size_t kPrefillBatch = 32;

  static void prefill(const Pass& s, const std::vector<float>& xt, const std::vector<float>& sx, std::size_t n, float* y,
                      SimdLevel level) {
    const std::size_t width = s.groups * s.m, tile = 256;
    const Eigen::Map<const Matrix> X(xt.data(), n, width);
    Eigen::Map<Matrix> Y(y, n, s.rows);
    Matrix W(tile, width);
    for (std::size_t r0 = 0; r0 < s.rows; r0 += tile) {
      const std::size_t rows = std::min(tile, s.rows - r0);
#pragma omp parallel for schedule(static)
      for (std::ptrdiff_t i = 0; i < static_cast<std::ptrdiff_t>(rows); ++i)
        decode_row(s, r0 + i, W.row(i).data(), level);
      Y.middleCols(r0, rows).noalias() += X * W.topRows(rows).transpose();
      if (!s.b.empty()) {
        const Eigen::Map<const Matrix> SX(sx.data(), n, s.groups);
        const Eigen::Map<const Matrix> B(s.b.data() + r0 * s.groups, rows, s.groups);
        Y.middleCols(r0, rows).noalias() += SX * B.transpose();
      }
    }
  }

  QuantizedMatrix q_;
  std::vector<Pass> passes_;
};

}  // namespace

std::string fused_lut_supports(const Quantizer& quantizer) {
  const std::string& f = quantizer.family();
  if (f == "rtn" || f == "turboquant" || f == "qjl" || f == "turboquant_prod") return "";
  if (f == "residual") {
    // Every pass must be supported; passes are named in the stack text.
    const std::string stack = get_str(quantizer.params(), "stack");
    int depth = 0;
    std::string item;
    auto check = [&](const std::string& it) -> std::string {
      if (it.find('(') == std::string::npos) return "";  // bits or 1-qjl: turboquant or qjl passes
      return fused_lut_supports(*parse_quantizer(it));
    };
    for (char c : stack + "+") {
      if (c == '(') ++depth;
      if (c == ')') --depth;
      if (c == '+' && depth == 0) {
        if (auto why = check(item); !why.empty()) return why;
        item.clear();
      } else {
        item += c;
      }
    }
    return "";
  }
  return "fused_lut does not read " + f + " codes (it reads rtn, turboquant, qjl and stacks of them)";
}

std::unique_ptr<Linear> make_fused_lut_linear(const Quantizer& quantizer, QuantizedMatrix q) {
  if (auto why = fused_lut_supports(quantizer); !why.empty()) throw std::invalid_argument(why);
  return std::make_unique<FusedLutLinear>(quantizer, std::move(q));
}

}  // namespace tqb
