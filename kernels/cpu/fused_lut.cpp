#include "kernels/cpu/fused_lut.hpp"

#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <stdexcept>

#include "common/float_format.hpp"
#include "kernels/lut_plan.hpp"
#include "kernels/cpu/simd_level.hpp"
#include "quantizers/bitpack.hpp"
#include "quantizers/rotation.hpp"
#include "quantizers/weight_groups.hpp"

namespace tqb {
namespace {

// Decodes the m codes of (row r, group j) into floats via the lookup table.
[[gnu::always_inline]] inline void decode(const DecodePass& s, std::size_t r, std::size_t j, float* buf, std::uint8_t* tmp) {
  const std::size_t first = (r * s.groups + j) * s.m;
#if defined(__GNUC__) && !defined(__clang__)  // GCC's run-time-index __builtin_shuffle (clang: the loop below)
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
[[gnu::always_inline]] inline void rows_body(const DecodePass& s, const float* xt, const float* sx, std::size_t n,
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
[[gnu::always_inline]] inline void decode_row_body(const DecodePass& s, std::size_t r, float* out) {
  std::vector<std::uint8_t> tmp(s.m);
  for (std::size_t j = 0; j < s.groups; ++j) {
    float* o = out + j * s.m;
    decode(s, r, j, o, tmp.data());
    const float a = s.a[r * s.groups + j];
    for (std::size_t i = 0; i < s.m; ++i) o[i] *= a;
  }
}
void decode_row_scalar(const DecodePass& s, std::size_t r, float* out) { decode_row_body(s, r, out); }
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx2,fma"))) void decode_row_avx2(const DecodePass& s, std::size_t r, float* out) {
  decode_row_body(s, r, out);
}
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma"))) void decode_row_avx512(const DecodePass& s, std::size_t r,
                                                                                            float* out) {
  decode_row_body(s, r, out);
}
#endif
void decode_row(const DecodePass& s, std::size_t r, float* out, SimdLevel level) {
#if defined(__x86_64__) && defined(__GNUC__)
  if (level == SimdLevel::avx512) return decode_row_avx512(s, r, out);
  if (level == SimdLevel::avx2) return decode_row_avx2(s, r, out);
#endif
  decode_row_scalar(s, r, out);
}

void rows_scalar(const DecodePass& s, const float* xt, const float* sx, std::size_t n, std::size_t r0, std::size_t r1,
                 float* y, std::size_t out) {
  rows_body(s, xt, sx, n, r0, r1, y, out);
}
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx2,fma"))) void rows_avx2(const DecodePass& s, const float* xt, const float* sx, std::size_t n,
                                                   std::size_t r0, std::size_t r1, float* y, std::size_t out) {
  rows_body(s, xt, sx, n, r0, r1, y, out);
}
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma"))) void rows_avx512(
    const DecodePass& s, const float* xt, const float* sx, std::size_t n, std::size_t r0, std::size_t r1, float* y,
    std::size_t out) {
  rows_body(s, xt, sx, n, r0, r1, y, out);
}
#endif

// Decode 256 rows of transformed-domain weights W̃[r][j·m + i] = a_rj·lut[q] (no inverse rotation is
// needed: the activations are already rotated), then one dense GEMM per tile, Y[:, tile] += X̃ W̃ᵀ, plus
// the offsets' Σ_j b_rj·Σ x̃_j.
void lut_prefill(const DecodePass& s, const std::vector<float>& xt, const std::vector<float>& sx, std::size_t n, float* y) {
  const SimdLevel level = simd_level();
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

// Batches of FusedLutLinear::kPrefillBatch columns or more: Y (n × rows, accumulated) += X Ŵᵀ for a
// whole stack. Passes without a projection are decoded back to weight space (inverse group rotation,
// offsets added) and summed into one 256-row tile, so a stack of any depth costs one GEMM with the raw
// activations, like the dense product; QJL passes keep their own transformed-domain GEMM (lut_prefill).
// x: n × cols.
void lut_prefill_all(const std::vector<DecodePass>& passes, const float* x, std::size_t n, float* y) {
  if (passes.empty()) return;
  const SimdLevel level = simd_level();
  const std::size_t rows = passes.front().rows, cols = passes.front().cols, tile = 256;
  bool any_weight_space = false;
  for (const DecodePass& s : passes) {
    if (s.transform != GroupTransform::gaussian_projection) {
      any_weight_space = true;
      continue;
    }
    std::vector<float> xt, sx;  // a QJL pass: its own GEMM on projected activations
    transform_activations(s, x, n, xt, sx);
    lut_prefill(s, xt, sx, n, y);
  }
  if (!any_weight_space) return;
  const Eigen::Map<const Matrix> X(x, n, cols);
  Eigen::Map<Matrix> Y(y, n, rows);
  Matrix W(tile, cols), part(tile, cols);
  for (std::size_t r0 = 0; r0 < rows; r0 += tile) {
    const std::size_t count = std::min(tile, rows - r0);
    bool first = true;
    for (const DecodePass& s : passes) {
      if (s.transform == GroupTransform::gaussian_projection) continue;
      Matrix& dst = first ? W : part;
#pragma omp parallel for schedule(static)
      for (std::ptrdiff_t i = 0; i < static_cast<std::ptrdiff_t>(count); ++i) {
        float* row = dst.row(i).data();
        decode_row(s, r0 + i, row, level);
        if (!s.b.empty())
          for (std::size_t j = 0; j < s.groups; ++j)
            for (std::size_t k = 0; k < s.g; ++k) row[j * s.g + k] += s.b[(r0 + i) * s.groups + j];
      }
      // Back from the rotated domain: row group ← Π_jᵀ row group. Hadamard runs on the calling thread
      // (parallel over groups); Haar is one GEMM per group that Eigen parallelises.
      if (!s.rotations.empty()) {
        if (s.transform == GroupTransform::haar) {
          for (std::size_t j = 0; j < s.groups; ++j) s.rotations[j]->inverse(dst.data() + j * s.g, count, cols);
        } else {
#pragma omp parallel for schedule(static)
          for (std::ptrdiff_t j = 0; j < static_cast<std::ptrdiff_t>(s.groups); ++j)
            s.rotations[j]->inverse(dst.data() + j * s.g, count, cols);
        }
      }
      if (!first) W.topRows(count) += part.topRows(count);
      first = false;
    }
    Y.middleCols(r0, count).noalias() += X * W.topRows(count).transpose();
  }
}

class FusedLutLinear final : public Linear {
 public:
  FusedLutLinear(const Quantizer& quantizer, QuantizedMatrix q) : q_(std::move(q)) { passes_ = decode_passes(quantizer, q_); }
  std::size_t in() const override { return q_.cols; }
  std::size_t out() const override { return q_.rows; }
  std::size_t weight_bytes() const override { return lut_weight_bytes(q_, passes_); }
  std::string kernel() const override { return "fused_lut_" + to_string(simd_level()); }

  void forward(const float* x, std::size_t n, float* y) const override {
    std::memset(y, 0, n * q_.rows * sizeof(float));
    if (n >= kPrefillBatch) {
      lut_prefill_all(passes_, x, n, y);
      return;
    }
    const SimdLevel level = simd_level();
    for (const DecodePass& s : passes_) {
      // Transformed activations x̃ (n × groups·m) and, for offsets, their per-group sums.
      std::vector<float> xt, sx;
      transform_activations(s, x, n, xt, sx);
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
  static constexpr std::size_t kPrefillBatch = 32;  // from here on, lut_prefill_all's tiles and GEMMs

  QuantizedMatrix q_;
  std::vector<DecodePass> passes_;
};

}  // namespace

std::string fused_lut_supports(const Quantizer& quantizer) {
  if (quantizer.decode_form().empty())
    return "fused_lut does not read " + undescribed_family(quantizer) + " codes (it reads every format with a per-group decode "
           "description: rtn, turboquant, qjl, rotated and stacks of them)";
  return "";
}

std::unique_ptr<Linear> make_fused_lut_linear(const Quantizer& quantizer, QuantizedMatrix q) {
  if (auto why = fused_lut_supports(quantizer); !why.empty()) throw std::invalid_argument(why);
  return std::make_unique<FusedLutLinear>(quantizer, std::move(q));
}

}  // namespace tqb
