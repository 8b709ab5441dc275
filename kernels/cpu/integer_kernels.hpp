#pragma once
// What the integer kernels (fused_i16: 14-bit activations, fused_i8: int8) share: the variant that runs
// at the current SIMD level, per-group activation quantization, and the per-row output with offsets.
// Internal to kernels/cpu.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "kernels/lut_plan.hpp"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define TQB_X86 1
// The AVX-512 VNNI variants' target (vpdpwssd, vpdpbusd and the byte shuffles they decode with).
#define TQB_AVX512_TARGET "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma"
#endif

namespace tqb {

#ifdef TQB_X86
// Σ of the 8 lanes, for a row's float accumulator at the end of the AVX2 variants.
__attribute__((target("avx2,fma"), always_inline)) inline float hsum_avx2(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
#endif

#ifdef TQB_X86
// The AVX2 row loop of both integer kernels (fused_i16, fused_i8), written once: NB batch columns of row r;
// per group, the codes stream 64 at a time (32 bytes) and then a last block of 32 (16 bytes), each block
// decoded once by the codec and multiply-accumulated into NB int32 sums; per group the sums become floats
// scaled by a_rj·xs_tj; one horizontal sum per column at the end, added to dot[k]. The codec is a kernel's
// decode and integer dot:
//   using Act;                                               activation integers (int16, uint8)
//   __m256i init(std::size_t r, std::size_t j) const;        the group's starting sums
//   template <std::size_t NB> void step64(const std::uint8_t* c, const Act* x, std::size_t stride, __m256i* acc) const;
//   template <std::size_t NB> void step32(const std::uint8_t* c, const Act* x, std::size_t stride, __m256i* acc) const;
// (column k's activations at x + k·stride). xq and xs are the batch's first column's, width and groups apart.
template <std::size_t NB, class Codec>
__attribute__((target("avx2,fma"), always_inline)) inline void integer_row_avx2(const DecodePass& s, const Codec& codec,
                                                                                const typename Codec::Act* xq, const float* xs,
                                                                                std::size_t r, float* dot) {
  const std::size_t width = s.groups * s.m;
  const std::uint8_t* c = s.codes + r * width / 2;
  const float* a = s.a.data() + r * s.groups;
  __m256 facc[NB];
  for (std::size_t k = 0; k < NB; ++k) facc[k] = _mm256_setzero_ps();
  for (std::size_t j = 0; j < s.groups; ++j) {
    const __m256i init = codec.init(r, j);
    __m256i acc[NB];
    for (std::size_t k = 0; k < NB; ++k) acc[k] = init;
    const typename Codec::Act* xg = xq + j * s.m;
    std::size_t i = 0;
    for (; i + 64 <= s.m; i += 64, c += 32) codec.template step64<NB>(c, xg + i, width, acc);
    if (i < s.m) {  // a last block of 32 codes
      codec.template step32<NB>(c, xg + i, width, acc);
      c += 16;
    }
    for (std::size_t k = 0; k < NB; ++k)
      facc[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[k]), _mm256_set1_ps(a[j] * xs[k * s.groups + j]), facc[k]);
  }
  for (std::size_t k = 0; k < NB; ++k) dot[k] += hsum_avx2(facc[k]);
}
#endif

// AVX-512 without VNNI (Skylake-SP) runs the AVX2 variant.
enum class IntegerVariant { scalar, avx2, avx512_vnni };
IntegerVariant current_integer_variant();
const char* to_string(IntegerVariant v);
bool cpu_has_avx512_vnni();

// One pass's activations for a batch of n: per (batch row t, group j) x̃ ≈ xs[t][j] · (xq − offset), in the
// order `order` gives within each group (position p holds activation order[p]; nullptr: natural order).
template <class Int>
struct IntegerActivations {
  std::vector<Int> xq;    // n × width
  std::vector<float> xs;  // n × groups
  std::vector<float> sx;  // n × groups: Σ x̃ per group (offsets only)
};

// out[p] = rint(v[order[p]] · inv) + offset for p < m (order nullptr: the identity), rounding to nearest
// even as lrint does. Compiled per ISA level with -fno-math-errno, so the identity case vectorizes
// (integer_kernels.cpp); the activation quantization was 6% of fused_i8 at n = 512 as a scalar loop.
void quantize_span(const float* v, const std::uint16_t* order, std::size_t m, float inv, int offset, std::int16_t* out);
void quantize_span(const float* v, const std::uint16_t* order, std::size_t m, float inv, int offset, std::uint8_t* out);

// Scale max|x̃|/max_int per group. A non-finite activation makes the group's scale NaN (outputs NaN, as
// the reference gives, never plausible numbers) and its integers `offset`.
template <class Int>
IntegerActivations<Int> quantize_activations(const DecodePass& s, const std::uint16_t* order,
                                             const std::vector<float>& xt, std::vector<float> sx, std::size_t n,
                                             int max_int, int offset) {
  const std::size_t width = s.groups * s.m;
  IntegerActivations<Int> a{std::vector<Int>(n * width), std::vector<float>(n * s.groups), std::move(sx)};
  const std::ptrdiff_t tasks = static_cast<std::ptrdiff_t>(n * s.groups);
#pragma omp parallel for schedule(static) if (tasks >= 32)
  for (std::ptrdiff_t task = 0; task < tasks; ++task) {
    const std::size_t t = static_cast<std::size_t>(task) / s.groups, j = static_cast<std::size_t>(task) % s.groups;
    const float* v = xt.data() + t * width + j * s.m;
    float mx = 0;
    bool finite = true;
    for (std::size_t i = 0; i < s.m; ++i) {
      mx = std::max(mx, std::fabs(v[i]));
      finite = finite && std::isfinite(v[i]);
    }
    Int* out = a.xq.data() + t * width + j * s.m;
    if (!finite) {
      a.xs[t * s.groups + j] = std::numeric_limits<float>::quiet_NaN();
      std::fill(out, out + s.m, static_cast<Int>(offset));
      continue;
    }
    const float scale = mx > 0 ? mx / static_cast<float>(max_int) : 1.0f, inv = 1.0f / scale;
    a.xs[t * s.groups + j] = scale;
    quantize_span(v, order, s.m, inv, offset, out);
  }
  return a;
}

// y[t][r] += lut_scale · dot_sum + Σ_j b_rj·sx_tj (the offsets, when the pass has them).
inline void add_row_output(const DecodePass& s, float lut_scale, const float* sx, std::size_t r, std::size_t t, float dot_sum,
                           float* y) {
  float v = lut_scale * dot_sum;
  if (!s.b.empty())
    for (std::size_t j = 0; j < s.groups; ++j) v += s.b[r * s.groups + j] * sx[t * s.groups + j];
  y[t * s.rows + r] += v;
}

// f(r0, r1) over chunks of 16 rows spread over the threads.
template <class F>
void for_row_chunks(std::size_t rows, F&& f) {
  const std::size_t chunk = 16, tasks = (rows + chunk - 1) / chunk;
#pragma omp parallel for schedule(static)
  for (std::ptrdiff_t task = 0; task < static_cast<std::ptrdiff_t>(tasks); ++task) {
    const std::size_t r0 = static_cast<std::size_t>(task) * chunk;
    f(r0, std::min(rows, r0 + chunk));
  }
}

}  // namespace tqb
