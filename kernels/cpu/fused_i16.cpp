#include "kernels/cpu/fused_i16.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "kernels/lut_plan.hpp"
#include "kernels/cpu/integer_kernels.hpp"
#include "kernels/cpu/simd_level.hpp"


namespace tqb {
namespace {

constexpr int kMaxInt = 8191;             // 14-bit magnitudes: see the overflow bound in fused_i16.hpp
// Batch columns per pass over the codes. Measured on the development VM (Zen 3, 2 threads), time per
// column at 4096×4096 and 4096×14336, n = 512: slices of 4 columns 0.23/0.84 ms, 8: 0.24/0.86,
// 12: 0.25/0.86, 16: 0.28/0.97 (sixteen columns of int16 activations outgrow L2), 28: 0.27/1.2.
constexpr std::size_t kSlice = 4;
constexpr std::size_t kMaxGroupCodes = 256;
constexpr std::size_t kBlock = 32;        // group widths are multiples of this
constexpr std::size_t kCols = 4;          // batch columns that share one decode

// The order in which the decode yields a group's weights, as the code index at each position: blocks
// of 64 codes (32 bytes) and, when m is an odd multiple of 32, one block of 32 codes last (16 bytes:
// low nibbles, then high nibbles, split by the in-lane byte interleave into 8 + 8 per 128-bit lane).
// AVX2 splits a 64-code block's low and high nibbles into two 256-bit vectors and interleaves each
// (four vectors of 16 weights); AVX-512 puts both in one 512-bit vector (lanes: low nibbles of bytes
// 0..15, of 16..31, high nibbles of 0..15, of 16..31) and interleaves that (two vectors of 32).
// Activations are quantized in the order of the level that runs, so the inner loop needs no permute;
// the integer sums are the same whatever the order.
enum class Layout { avx2, avx512 };

std::vector<std::uint16_t> decode_order(std::size_t m, Layout layout) {
  std::vector<std::uint16_t> order(m);
  const std::size_t full = m - m % 64;
  for (std::size_t p = 0; p < m; ++p) {
    const std::size_t b = p < full ? p - p % 64 : full, q = p - b;  // block start, position inside
    std::size_t code;
    if (p >= full) {  // 32-code block: [low nibbles | high nibbles] in 256 bits
      const std::size_t v = q / 16, lane = (q % 16) / 8, k = q % 8;
      code = 2 * (8 * v + k) + lane;
    } else if (layout == Layout::avx2) {
      const std::size_t v = q / 16, lane = (q % 16) / 8, k = q % 8;
      code = 32 * lane + 2 * (8 * (v & 1) + k) + (v >> 1);
    } else {
      const std::size_t v = q / 32, lane = (q % 32) / 8, k = q % 8;
      code = 2 * (8 * v + k + 16 * (lane & 1)) + (lane >> 1);
    }
    order[p] = static_cast<std::uint16_t>(b + code);
  }
  return order;
}

struct Tables {
  std::int16_t lut[16];
  std::uint8_t lo[16], hi[16];  // low and high bytes of lut, for the byte shuffles
  float scale;                  // lut value = lut16 · scale
};

Tables make_tables(const DecodePass& s) {
  Tables t{};
  float mx = 0;
  for (float v : s.lut) mx = std::max(mx, std::fabs(v));
  t.scale = mx > 0 ? mx / kMaxInt : 1.0f;
  for (int c = 0; c < 16; ++c) {
    t.lut[c] = static_cast<std::int16_t>(std::lrint(s.lut[c] / t.scale));
    const auto u = static_cast<std::uint16_t>(t.lut[c]);
    t.lo[c] = static_cast<std::uint8_t>(u & 0xff);
    t.hi[c] = static_cast<std::uint8_t>(u >> 8);
  }
  return t;
}

// Batch rows [t0, t0 + n) of one pass: pointers already offset to t0.
struct Job {
  const DecodePass& s;
  const Tables& tb;
  const std::vector<std::uint16_t>& order;
  const std::int16_t* xq;  // n × width
  const float* xs;         // n × groups
  const float* sx;         // n × groups, or unused when the pass has no offsets
  std::size_t n;
  float* y;                // n × rows, accumulated
};

void finish_row(const Job& J, std::size_t r, std::size_t t, float dot_sum) {
  add_row_output(J.s, J.tb.scale, J.sx, r, t, dot_sum, J.y);
}

void rows_scalar(const Job& J, std::size_t r0, std::size_t r1) {
  const DecodePass& s = J.s;
  const std::size_t width = s.groups * s.m;
  for (std::size_t r = r0; r < r1; ++r)
    for (std::size_t t = 0; t < J.n; ++t) {
      float sum = 0;
      for (std::size_t j = 0; j < s.groups; ++j) {
        const std::uint8_t* c = s.codes + (r * s.groups + j) * s.m / 2;
        const std::int16_t* xq = J.xq + t * width + j * s.m;
        std::int32_t acc = 0;
        for (std::size_t p = 0; p < s.m; ++p) {
          const std::size_t i = J.order[p];
          acc += J.tb.lut[(c[i / 2] >> (4 * (i & 1))) & 15] * static_cast<std::int32_t>(xq[p]);
        }
        sum += s.a[r * s.groups + j] * J.xs[t * s.groups + j] * static_cast<float>(acc);
      }
      finish_row(J, r, t, sum);
    }
}

#ifdef TQB_X86
// NB batch columns of one row: each 16-byte block of codes is decoded once into 32 int16 weights
// (two in-lane byte shuffles of the table's low and high bytes, one byte interleave) and
// multiplied-accumulated with every column's activations by pmaddwd. Per group, the int32 sums turn
// into floats scaled by a_rj·xs_tj; one horizontal sum per row and column.
// 16 bytes of codes → 32 int16 weights in the 32-code block order of decode_order: the low nibbles
// in the low lane, the high nibbles in the high lane, looked up in the table's low and high bytes and
// interleaved back into int16.
__attribute__((target("avx2,fma"), always_inline)) inline void decode32_avx2(const std::uint8_t* c, __m256i tab_lo, __m256i tab_hi,
                                                                             __m256i& w0, __m256i& w1) {
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(c));
  const __m256i idx = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(b, 4), b), _mm256_set1_epi8(0x0f));
  const __m256i wl = _mm256_shuffle_epi8(tab_lo, idx), wh = _mm256_shuffle_epi8(tab_hi, idx);
  w0 = _mm256_unpacklo_epi8(wl, wh);
  w1 = _mm256_unpackhi_epi8(wl, wh);
}

// Σ w·x over 32 weights in 8 int32 lanes.
__attribute__((target("avx2,fma"), always_inline)) inline __m256i dot32_avx2(__m256i w0, __m256i w1, const std::int16_t* x) {
  const __m256i* v = reinterpret_cast<const __m256i*>(x);
  return _mm256_add_epi32(_mm256_madd_epi16(w0, _mm256_loadu_si256(v)), _mm256_madd_epi16(w1, _mm256_loadu_si256(v + 1)));
}

// The 14-bit kernel's decode and dot for integer_row_avx2: int16 weights from the table's low and high
// bytes, pmaddwd against int16 activations; the sums start at 0.
struct Int16Codec {
  using Act = std::int16_t;
  __m256i tab_lo, tab_hi, nibble;
  __attribute__((target("avx2,fma"), always_inline)) explicit Int16Codec(const Tables& tb)
      : tab_lo(_mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(tb.lo)))),
        tab_hi(_mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(tb.hi)))),
        nibble(_mm256_set1_epi8(0x0f)) {}
  __attribute__((target("avx2,fma"), always_inline)) __m256i init(std::size_t, std::size_t) const { return _mm256_setzero_si256(); }
  // 64 codes: the low nibbles of 32 bytes, then the high nibbles, each as 32 int16 weights.
  template <std::size_t NB>
  __attribute__((target("avx2,fma"), always_inline)) void step64(const std::uint8_t* c, const Act* x, std::size_t stride,
                                                                 __m256i* acc) const {
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c));
    const __m256i lo = _mm256_and_si256(b, nibble), hi = _mm256_and_si256(_mm256_srli_epi16(b, 4), nibble);
    const __m256i ll = _mm256_shuffle_epi8(tab_lo, lo), lh = _mm256_shuffle_epi8(tab_hi, lo);
    const __m256i hl = _mm256_shuffle_epi8(tab_lo, hi), hh = _mm256_shuffle_epi8(tab_hi, hi);
    const __m256i w0 = _mm256_unpacklo_epi8(ll, lh), w1 = _mm256_unpackhi_epi8(ll, lh);
    const __m256i w2 = _mm256_unpacklo_epi8(hl, hh), w3 = _mm256_unpackhi_epi8(hl, hh);
    for (std::size_t k = 0; k < NB; ++k) {
      const Act* xk = x + k * stride;
      acc[k] = _mm256_add_epi32(acc[k], _mm256_add_epi32(dot32_avx2(w0, w1, xk), dot32_avx2(w2, w3, xk + 32)));
    }
  }
  template <std::size_t NB>
  __attribute__((target("avx2,fma"), always_inline)) void step32(const std::uint8_t* c, const Act* x, std::size_t stride,
                                                                 __m256i* acc) const {
    __m256i w0, w1;
    decode32_avx2(c, tab_lo, tab_hi, w0, w1);
    for (std::size_t k = 0; k < NB; ++k) acc[k] = _mm256_add_epi32(acc[k], dot32_avx2(w0, w1, x + k * stride));
  }
};

// dot[k] += the row's sum for column t0 + k.
template <std::size_t NB>
__attribute__((target("avx2,fma"))) void row_avx2(const Job& J, std::size_t r, std::size_t t0, float* dot) {
  const std::size_t width = J.s.groups * J.s.m;
  integer_row_avx2<NB>(J.s, Int16Codec(J.tb), J.xq + t0 * width, J.xs + t0 * J.s.groups, r, dot);
}

// AVX-512 with VNNI: 64 codes per step into two 512-bit vectors of 32 int16 weights; vpdpwssd fuses
// the multiply-add and the accumulation. The 32-code tail uses 256-bit instructions as AVX2 does.
// CPUs with AVX-512 but without VNNI (Skylake-SP) run the AVX2 kernel.
// GCC 12's own avx512fintrin.h trips -W(maybe-)uninitialized (its _mm512_undefined_* helpers), where
// the templates below are instantiated; the push is popped after kRowsAvx512.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
template <std::size_t NB>
__attribute__((target(TQB_AVX512_TARGET))) void row_avx512(const Job& J, std::size_t r, std::size_t t0,
                                                                                float* dot) {
  const DecodePass& s = J.s;
  const std::size_t width = s.groups * s.m;
  const __m128i tlo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(J.tb.lo));
  const __m128i thi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(J.tb.hi));
  const __m512i tab_lo = _mm512_broadcast_i32x4(tlo), tab_hi = _mm512_broadcast_i32x4(thi);
  const __m256i tab_lo2 = _mm256_broadcastsi128_si256(tlo), tab_hi2 = _mm256_broadcastsi128_si256(thi);
  const __m256i nibble = _mm256_set1_epi8(0x0f);
  const std::uint8_t* c = s.codes + r * width / 2;
  const float* a = s.a.data() + r * s.groups;
  __m512 facc[NB];
  for (std::size_t k = 0; k < NB; ++k) facc[k] = _mm512_setzero_ps();
  for (std::size_t j = 0; j < s.groups; ++j) {
    __m512i acc[NB];
    for (std::size_t k = 0; k < NB; ++k) acc[k] = _mm512_setzero_si512();
    const std::int16_t* xg = J.xq + t0 * width + j * s.m;
    std::size_t i = 0;
    for (; i + 64 <= s.m; i += 64, c += 32) {
      const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c));
      const __m512i idx = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(b, nibble)),
                                             _mm256_and_si256(_mm256_srli_epi16(b, 4), nibble), 1);
      const __m512i wl = _mm512_shuffle_epi8(tab_lo, idx), wh = _mm512_shuffle_epi8(tab_hi, idx);
      const __m512i w0 = _mm512_unpacklo_epi8(wl, wh), w1 = _mm512_unpackhi_epi8(wl, wh);
      for (std::size_t k = 0; k < NB; ++k) {
        const std::int16_t* x = xg + k * width + i;
        const __m512i x0 = _mm512_loadu_si512(x), x1 = _mm512_loadu_si512(x + 32);
        acc[k] = _mm512_dpwssd_epi32(_mm512_dpwssd_epi32(acc[k], w0, x0), w1, x1);
      }
    }
    if (i < s.m) {  // a last block of 32 codes, as AVX2 does it
      __m256i w0, w1;
      decode32_avx2(c, tab_lo2, tab_hi2, w0, w1);
      for (std::size_t k = 0; k < NB; ++k)
        acc[k] = _mm512_add_epi32(acc[k], _mm512_zextsi256_si512(dot32_avx2(w0, w1, xg + k * width + i)));
      c += 16;
    }
    for (std::size_t k = 0; k < NB; ++k)
      facc[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[k]), _mm512_set1_ps(a[j] * J.xs[(t0 + k) * s.groups + j]), facc[k]);
  }
  for (std::size_t k = 0; k < NB; ++k) dot[k] += _mm512_reduce_add_ps(facc[k]);
}

// One SIMD level's row kernels: entry k serves k batch columns (1..kCols) sharing each decode.
using RowKernel = void (*)(const Job&, std::size_t r, std::size_t t0, float* dot);
using RowKernels = RowKernel[kCols + 1];
constexpr RowKernels kRowsAvx2 = {nullptr, row_avx2<1>, row_avx2<2>, row_avx2<3>, row_avx2<4>};
constexpr RowKernels kRowsAvx512 = {nullptr, row_avx512<1>, row_avx512<2>, row_avx512<3>, row_avx512<4>};
#pragma GCC diagnostic pop

// Rows [r0, r1), every column in blocks of kCols. (Measured on Zen 3: tiling the groups so that a
// batch's activations stay in L1, group-major activations, and decoding a row once into an L1 buffer
// for batches over kCols were all slower than this plain loop; see docs/PERF.md.)
void rows_simd(const Job& J, std::size_t r0, std::size_t r1, const RowKernels& row) {
  float dot[kSlice];  // J.n ≤ kSlice: forward() hands the batch over in slices
  for (std::size_t r = r0; r < r1; ++r) {
    std::fill(dot, dot + J.n, 0.0f);
    std::size_t t = 0;
    for (; t + kCols <= J.n; t += kCols) row[kCols](J, r, t, dot + t);
    if (t < J.n) row[J.n - t](J, r, t, dot + t);
    for (t = 0; t < J.n; ++t) finish_row(J, r, t, dot[t]);
  }
}
#endif

bool pass_ok(const DecodePass& s) {
  return s.bits == 4 && s.transform != GroupTransform::gaussian_projection && s.m % kBlock == 0 && s.m <= kMaxGroupCodes;
}

class FusedI16Linear final : public Linear {
 public:
  FusedI16Linear(const Quantizer& quantizer, QuantizedMatrix q) : q_(std::move(q)) {
    passes_ = decode_passes(quantizer, q_);
    for (const auto& s : passes_) {
      if (!pass_ok(s)) throw std::invalid_argument("fused_i16: a pass without 4-bit codes in groups of 32..256");
      tables_.push_back(make_tables(s));
      orders_[0].push_back(decode_order(s.m, Layout::avx2));
      orders_[1].push_back(decode_order(s.m, Layout::avx512));
    }
  }
  std::size_t in() const override { return q_.cols; }
  std::size_t out() const override { return q_.rows; }
  std::size_t weight_bytes() const override { return lut_weight_bytes(q_, passes_); }
  std::string kernel() const override { return std::string("fused_i16_") + to_string(current_integer_variant()); }

  void forward(const float* x, std::size_t n, float* y) const override {
    std::fill(y, y + n * q_.rows, 0.0f);
    const IntegerVariant variant = current_integer_variant();
    const int layout = variant == IntegerVariant::avx512_vnni ? 1 : 0;
    for (std::size_t p = 0; p < passes_.size(); ++p) {
      const DecodePass& s = passes_[p];
      std::vector<float> xt, sx;
      transform_activations(s, x, n, xt, sx);
      const auto xa = quantize_activations<std::int16_t>(s, orders_[layout][p].data(), xt, std::move(sx), n, kMaxInt, 0);
      // The batch goes through in slices of kSlice columns: a slice's int16 activations stay in L1/L2
      // while every row of codes streams past them once, decoded once per slice.
      const std::size_t width = s.groups * s.m, slice = kSlice;
      for (std::size_t t0 = 0; t0 < n; t0 += slice) {
        const std::size_t count = std::min(slice, n - t0);
        const Job job{s, tables_[p], orders_[layout][p], xa.xq.data() + t0 * width, xa.xs.data() + t0 * s.groups,
                      xa.sx.empty() ? nullptr : xa.sx.data() + t0 * s.groups, count, y + t0 * s.rows};
        run_rows(job, variant);
      }
    }
  }

 private:
  static void run_rows(const Job& job, IntegerVariant variant) {
    for_row_chunks(job.s.rows, [&](std::size_t r0, std::size_t r1) {
#ifdef TQB_X86
      if (variant != IntegerVariant::scalar) {
        rows_simd(job, r0, r1, variant == IntegerVariant::avx512_vnni ? kRowsAvx512 : kRowsAvx2);
        return;
      }
#endif
      rows_scalar(job, r0, r1);
    });
  }


  QuantizedMatrix q_;
  std::vector<DecodePass> passes_;
  std::vector<Tables> tables_;
  std::vector<std::vector<std::uint16_t>> orders_[2];  // [Layout][pass]
};

}  // namespace

std::string fused_i16_supports(const Quantizer& quantizer) {
  const auto form = quantizer.decode_form();
  for (const PassForm& f : form)
    if (f.transform == GroupTransform::gaussian_projection)
      return "fused_i16 reads 4-bit codes with a scalar lookup table, not QJL sign sketches of a projection";
  if (form.empty())
    return "fused_i16 does not read " + undescribed_family(quantizer) + " codes (4-bit codes with a per-group decode description: "
           "rtn, turboquant, rotated and their stacks)";
  for (const PassForm& f : form) {
    if (f.bits != 4) return "fused_i16 reads 4-bit codes only";
    if (f.group == 0 || f.group % static_cast<std::int64_t>(kBlock) != 0 || f.group > static_cast<std::int64_t>(kMaxGroupCodes))
      return "fused_i16 needs groups of a multiple of 32 columns, at most 256";
  }
  return "";
}

std::unique_ptr<Linear> make_fused_i16_linear(const Quantizer& quantizer, QuantizedMatrix q) {
  if (auto why = fused_i16_supports(quantizer); !why.empty()) throw std::invalid_argument(why);
  return std::make_unique<FusedI16Linear>(quantizer, std::move(q));
}

}  // namespace tqb
