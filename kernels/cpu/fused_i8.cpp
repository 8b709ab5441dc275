#include "kernels/cpu/fused_i8.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "kernels/cpu/fused_i16.hpp"
#include "kernels/cpu/integer_kernels.hpp"
#include "kernels/cpu/simd_level.hpp"
#include "kernels/lut_plan.hpp"


namespace tqb {
namespace {

constexpr int kMaxInt8 = 127;
constexpr std::size_t kCols = 8;  // batch columns that share one decode (one slice of the batch)

// Activation position p of a group → the code it multiplies. Codes are packed two per byte (even code
// in the low nibble); a block of 64 codes (32 bytes) decodes as [the 32 even codes | the 32 odd codes],
// a last block of 32 codes (16 bytes) as [16 even | 16 odd]. Every SIMD level uses this order.
std::vector<std::uint16_t> decode_order(std::size_t m) {
  std::vector<std::uint16_t> order(m);
  const std::size_t full = m - m % 64;
  for (std::size_t p = 0; p < m; ++p) {
    const std::size_t b = p < full ? p - p % 64 : full, half = p < full ? 32 : 16, q = p - b;
    order[p] = static_cast<std::uint16_t>(b + (q < half ? 2 * q : 2 * (q - half) + 1));
  }
  return order;
}

struct Table8 {
  alignas(16) std::int8_t lut[16];
  float scale;  // lut value = lut8 · scale
};

Table8 make_table(const DecodePass& s) {
  Table8 t{};
  float mx = 0;
  for (float v : s.lut) mx = std::max(mx, std::fabs(v));
  t.scale = mx > 0 ? mx / kMaxInt8 : 1.0f;
  for (int c = 0; c < 16; ++c) t.lut[c] = static_cast<std::int8_t>(std::lrint(s.lut[c] / t.scale));
  return t;
}

// Σ lut8 over each (row, group)'s codes: removes the +128 of the uint8 activations from the sums.
std::vector<std::int32_t> group_weight_sums(const DecodePass& s, const Table8& t) {
  std::vector<std::int32_t> sums(s.rows * s.groups);
  for (std::size_t i = 0; i < sums.size(); ++i) {
    const std::uint8_t* c = s.codes + i * s.m / 2;
    std::int32_t v = 0;
    for (std::size_t k = 0; k < s.m / 2; ++k) v += t.lut[c[k] & 15] + t.lut[c[k] >> 4];
    sums[i] = v;
  }
  return sums;
}

// The codes of one pass for the VNNI kernel, rows in the vector lanes (llama.cpp's repacked layouts do
// the same): per block of 16 rows, group j and step s of 4 codes, 32 bytes whose low nibbles hold rows
// 0..7 and high nibbles rows 8..15, 4 consecutive codes per row. One byte shuffle turns the 32 bytes into
// 64 int8 weights, int32 lane L holding row L's 4 weights, so vpdpbusd against 4 broadcast activation
// bytes leaves row L's partial dot in lane L: the per-group scaling is one vector FMA for 16 rows, and
// activations need no reordering. Rows past the last are padded with zero scales.
struct RowBlocks {
  std::size_t blocks = 0;                // ceil(rows / 16)
  std::vector<std::uint8_t> codes;       // [block][group][m/4][32]
  std::vector<std::int32_t> offset;      // [block][group][16]: −128 · Σ lut8 of the row's group codes
  std::vector<float> a;                  // [block][group][16]: the group scale a_rj (0 for padding)
};

RowBlocks make_row_blocks(const DecodePass& s, const std::vector<std::int32_t>& wsum) {
  RowBlocks rb;
  rb.blocks = (s.rows + 15) / 16;
  const std::size_t width = s.groups * s.m, steps = s.m / 4;
  rb.codes.assign(rb.blocks * s.groups * steps * 32, 0);
  rb.offset.assign(rb.blocks * s.groups * 16, 0);
  rb.a.assign(rb.blocks * s.groups * 16, 0.0f);
  auto code = [&](std::size_t r, std::size_t k) {
    const std::size_t i = r * width + k;
    return static_cast<std::uint8_t>((s.codes[i / 2] >> (4 * (i & 1))) & 15);
  };
  for (std::size_t R = 0; R < rb.blocks; ++R)
    for (std::size_t j = 0; j < s.groups; ++j) {
      for (std::size_t L = 0; L < 16; ++L) {
        const std::size_t r = R * 16 + L;
        if (r >= s.rows) continue;
        rb.offset[(R * s.groups + j) * 16 + L] = -128 * wsum[r * s.groups + j];
        rb.a[(R * s.groups + j) * 16 + L] = s.a[r * s.groups + j];
      }
      for (std::size_t st = 0; st < steps; ++st) {
        std::uint8_t* out = rb.codes.data() + ((R * s.groups + j) * steps + st) * 32;
        for (std::size_t b = 0; b < 32; ++b) {
          const std::size_t L = b / 4, k = j * s.m + 4 * st + b % 4, lo = R * 16 + L, hi = lo + 8;
          out[b] = static_cast<std::uint8_t>((lo < s.rows ? code(lo, k) : 0) | (hi < s.rows ? code(hi, k) : 0) << 4);
        }
      }
    }
  return rb;
}

// Batch rows [t0, t0 + n) of one pass: pointers already offset to t0.
struct Job {
  const DecodePass& s;
  const Table8& tb;
  const std::int32_t* wsum;  // rows × groups
  const std::uint8_t* xu;    // n × width
  const float* xs;           // n × groups
  const float* sx;           // n × groups, or unused when the pass has no offsets
  std::size_t n;
  float* y;                  // n × rows, accumulated
};

void finish_row(const Job& J, std::size_t r, std::size_t t, float dot_sum) {
  add_row_output(J.s, J.tb.scale, J.sx, r, t, dot_sum, J.y);
}

// The group's exact integer dot Σ (xu − 128)·lut8[code], in decode order.
std::int32_t group_dot_scalar(const std::uint8_t* c, const std::uint8_t* xu, const Table8& tb, std::size_t m,
                              std::int32_t wsum) {
  std::int32_t acc = -128 * wsum;
  for (std::size_t b = 0; b < m;) {
    const std::size_t half = m - b >= 64 ? 32 : 16;
    for (std::size_t k = 0; k < half; ++k) {
      acc += static_cast<std::int32_t>(xu[b + k]) * tb.lut[c[k] & 15];
      acc += static_cast<std::int32_t>(xu[b + half + k]) * tb.lut[c[k] >> 4];
    }
    b += 2 * half;
    c += half;
  }
  return acc;
}

void rows_scalar(const Job& J, std::size_t r0, std::size_t r1) {
  const DecodePass& s = J.s;
  const std::size_t width = s.groups * s.m;
  for (std::size_t r = r0; r < r1; ++r)
    for (std::size_t t = 0; t < J.n; ++t) {
      float sum = 0;
      for (std::size_t j = 0; j < s.groups; ++j) {
        const std::int32_t d = group_dot_scalar(s.codes + (r * s.groups + j) * s.m / 2, J.xu + t * width + j * s.m, J.tb,
                                                s.m, J.wsum[r * s.groups + j]);
        sum += s.a[r * s.groups + j] * J.xs[t * s.groups + j] * static_cast<float>(d);
      }
      finish_row(J, r, t, sum);
    }
}

#ifdef TQB_X86
// AVX2: the int8 weights and uint8 activations widened to int16 and multiplied by pmaddwd — the same
// integers as vpdpbusd, no saturation (pmaddubsw would saturate 255·127·2). A fallback, not fast.
__attribute__((target("avx2,fma"), always_inline)) inline __m256i dot32_u8s8_avx2(__m256i w, const std::uint8_t* x) {
  const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x));
  const __m256i x0 = _mm256_cvtepu8_epi16(_mm256_castsi256_si128(xv)), x1 = _mm256_cvtepu8_epi16(_mm256_extracti128_si256(xv, 1));
  const __m256i w0 = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(w)), w1 = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(w, 1));
  return _mm256_add_epi32(_mm256_madd_epi16(x0, w0), _mm256_madd_epi16(x1, w1));
}
__attribute__((target("avx2,fma"), always_inline)) inline __m256i dot16_u8s8_avx2(__m128i w, const std::uint8_t* x) {
  const __m256i xv = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x)));
  return _mm256_madd_epi16(xv, _mm256_cvtepi8_epi16(w));
}

// The int8 kernel's decode and dot for integer_row_avx2: int8 weights by one byte shuffle, widened with
// the uint8 activations to int16 for pmaddwd; the sums start at −128·Σ weights (the activations' offset).
struct Int8Codec {
  using Act = std::uint8_t;
  const std::int32_t* wsum;
  std::size_t groups;
  __m128i tab;
  __m256i tab2, nibble;
  __attribute__((target("avx2,fma"), always_inline)) Int8Codec(const Job& J)
      : wsum(J.wsum), groups(J.s.groups), tab(_mm_load_si128(reinterpret_cast<const __m128i*>(J.tb.lut))),
        tab2(_mm256_broadcastsi128_si256(tab)), nibble(_mm256_set1_epi8(0x0f)) {}
  __attribute__((target("avx2,fma"), always_inline)) __m256i init(std::size_t r, std::size_t j) const {
    return _mm256_zextsi128_si256(_mm_cvtsi32_si128(-128 * wsum[r * groups + j]));
  }
  template <std::size_t NB>
  __attribute__((target("avx2,fma"), always_inline)) void step64(const std::uint8_t* c, const Act* x, std::size_t stride,
                                                                 __m256i* acc) const {
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c));
    const __m256i we = _mm256_shuffle_epi8(tab2, _mm256_and_si256(b, nibble));
    const __m256i wo = _mm256_shuffle_epi8(tab2, _mm256_and_si256(_mm256_srli_epi16(b, 4), nibble));
    for (std::size_t k = 0; k < NB; ++k) {
      const Act* xk = x + k * stride;
      acc[k] = _mm256_add_epi32(acc[k], _mm256_add_epi32(dot32_u8s8_avx2(we, xk), dot32_u8s8_avx2(wo, xk + 32)));
    }
  }
  template <std::size_t NB>
  __attribute__((target("avx2,fma"), always_inline)) void step32(const std::uint8_t* c, const Act* x, std::size_t stride,
                                                                 __m256i* acc) const {
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(c));
    const __m128i we = _mm_shuffle_epi8(tab, _mm_and_si128(b, _mm256_castsi256_si128(nibble)));
    const __m128i wo = _mm_shuffle_epi8(tab, _mm_and_si128(_mm_srli_epi16(b, 4), _mm256_castsi256_si128(nibble)));
    for (std::size_t k = 0; k < NB; ++k) {
      const Act* xk = x + k * stride;
      acc[k] = _mm256_add_epi32(acc[k], _mm256_add_epi32(dot16_u8s8_avx2(we, xk), dot16_u8s8_avx2(wo, xk + 16)));
    }
  }
};

template <std::size_t NB>
__attribute__((target("avx2,fma"))) void row_avx2(const Job& J, std::size_t r, std::size_t t0, float* dot) {
  const std::size_t width = J.s.groups * J.s.m;
  integer_row_avx2<NB>(J.s, Int8Codec(J), J.xu + t0 * width, J.xs + t0 * J.s.groups, r, dot);
}

// AVX-512 VNNI: the row-interleaved layout (RowBlocks) and vpdpbusd, below.
// GCC 12's avx512fintrin.h trips -W(maybe-)uninitialized in its own helpers where these instantiate.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
// NB batch columns against one block of 16 rows, every group, in the row-interleaved layout; activations
// in natural order. y[t][row] += scale_lut · Σ_j a_rj·xs_tj·D_rjt for the block's real rows.
template <std::size_t NB>
__attribute__((target(TQB_AVX512_TARGET))) void block_avx512(const Job& J, const RowBlocks& rb, std::size_t R,
                                                             std::size_t t0) {
  const DecodePass& s = J.s;
  const std::size_t width = s.groups * s.m, steps = s.m / 4;
  const __m512i tab4 = _mm512_broadcast_i32x4(_mm_load_si128(reinterpret_cast<const __m128i*>(J.tb.lut)));
  const __m256i nibble = _mm256_set1_epi8(0x0f);
  __m512 yacc[NB];
  for (std::size_t k = 0; k < NB; ++k) yacc[k] = _mm512_setzero_ps();
  const std::uint8_t* c = rb.codes.data() + R * s.groups * steps * 32;
  for (std::size_t j = 0; j < s.groups; ++j) {
    const __m512i init = _mm512_loadu_si512(rb.offset.data() + (R * s.groups + j) * 16);
    __m512i acc[NB];
    for (std::size_t k = 0; k < NB; ++k) acc[k] = init;
    const std::uint8_t* xg = J.xu + t0 * width + j * s.m;
    for (std::size_t st = 0; st < steps; ++st, c += 32) {
      const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c));
      const __m512i idx = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(b, nibble)),
                                             _mm256_and_si256(_mm256_srli_epi16(b, 4), nibble), 1);
      const __m512i w = _mm512_shuffle_epi8(tab4, idx);
      for (std::size_t k = 0; k < NB; ++k) {
        std::int32_t x4;
        std::memcpy(&x4, xg + k * width + 4 * st, 4);
        acc[k] = _mm512_dpbusd_epi32(acc[k], _mm512_set1_epi32(x4), w);
      }
    }
    const __m512 av = _mm512_loadu_ps(rb.a.data() + (R * s.groups + j) * 16);
    for (std::size_t k = 0; k < NB; ++k)
      yacc[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[k]), _mm512_mul_ps(av, _mm512_set1_ps(J.xs[(t0 + k) * s.groups + j])), yacc[k]);
  }
  const std::size_t r0 = R * 16, count = std::min<std::size_t>(16, s.rows - r0);
  const __mmask16 mask = static_cast<__mmask16>((1u << count) - 1);
  const __m512 scale = _mm512_set1_ps(J.tb.scale);
  for (std::size_t k = 0; k < NB; ++k) {
    float* y = J.y + (t0 + k) * s.rows + r0;
    _mm512_mask_storeu_ps(y, mask, _mm512_fmadd_ps(yacc[k], scale, _mm512_maskz_loadu_ps(mask, y)));
  }
}

using BlockKernel = void (*)(const Job&, const RowBlocks&, std::size_t R, std::size_t t0);
constexpr BlockKernel kBlocksAvx512[kCols + 1] = {nullptr,          block_avx512<1>, block_avx512<2>, block_avx512<3>,
                                                  block_avx512<4>, block_avx512<5>, block_avx512<6>, block_avx512<7>,
                                                  block_avx512<8>};

// One SIMD level's row kernels: entry k serves k batch columns (1..kCols) sharing each decode.
using RowKernel = void (*)(const Job&, std::size_t r, std::size_t t0, float* dot);
using RowKernels = RowKernel[kCols + 1];
constexpr RowKernels kRowsAvx2 = {nullptr,        row_avx2<1>, row_avx2<2>, row_avx2<3>, row_avx2<4>,
                                  row_avx2<5>, row_avx2<6>, row_avx2<7>, row_avx2<8>};
#pragma GCC diagnostic pop

void rows_simd(const Job& J, std::size_t r0, std::size_t r1, const RowKernels& row) {
  float dot[kCols];  // J.n ≤ kCols: forward() hands the batch over in slices
  for (std::size_t r = r0; r < r1; ++r) {
    std::fill(dot, dot + J.n, 0.0f);
    row[J.n](J, r, 0, dot);
    for (std::size_t t = 0; t < J.n; ++t) finish_row(J, r, t, dot[t]);
  }
}
#endif


class FusedI8Linear final : public Linear {
 public:
  FusedI8Linear(const Quantizer& quantizer, QuantizedMatrix q) : q_(std::move(q)) {
    passes_ = decode_passes(quantizer, q_);
    for (const auto& s : passes_) {
      tables_.push_back(make_table(s));
      wsums_.push_back(group_weight_sums(s, tables_.back()));
      orders_.push_back(decode_order(s.m));
#ifdef TQB_X86
      if (cpu_has_avx512_vnni()) blocks_.push_back(make_row_blocks(s, wsums_.back()));  // the VNNI kernel's layout
#endif
    }
  }
  std::size_t in() const override { return q_.cols; }
  std::size_t out() const override { return q_.rows; }
  std::size_t weight_bytes() const override {
    std::size_t b = lut_weight_bytes(q_, passes_);
    for (const auto& w : wsums_) b += w.size() * sizeof(std::int32_t);
    // The row-interleaved copy of the codes that the VNNI kernel reads (the stored order stays for the
    // other levels): fused_i8 holds the codes twice on a VNNI CPU.
    for (const auto& rb : blocks_) b += rb.codes.size() + (rb.offset.size() + rb.a.size()) * 4;
    return b;
  }
  std::string kernel() const override { return std::string("fused_i8_") + to_string(current_integer_variant()); }

  void forward(const float* x, std::size_t n, float* y) const override {
    std::fill(y, y + n * q_.rows, 0.0f);
    const IntegerVariant variant = current_integer_variant();
    for (std::size_t p = 0; p < passes_.size(); ++p) {
      const DecodePass& s = passes_[p];
      std::vector<float> xt, sx;
      transform_activations(s, x, n, xt, sx);
#ifdef TQB_X86
      if (variant == IntegerVariant::avx512_vnni && !blocks_.empty()) {
        const auto xa = quantize_activations<std::uint8_t>(s, nullptr, xt, std::move(sx), n, kMaxInt8, 128);
        run_blocks(Job{s, tables_[p], wsums_[p].data(), xa.xq.data(), xa.xs.data(), xa.sx.empty() ? nullptr : xa.sx.data(),
                       n, y}, blocks_[p]);
        continue;
      }
#endif
      const auto xa = quantize_activations<std::uint8_t>(s, orders_[p].data(), xt, std::move(sx), n, kMaxInt8, 128);
      // Slices of kCols columns: their uint8 activations (kCols × width bytes) stay in L2 while every
      // row of codes streams past once, decoded once per slice.
      const std::size_t width = s.groups * s.m;
      for (std::size_t t0 = 0; t0 < n; t0 += kCols) {
        const std::size_t count = std::min(kCols, n - t0);
        const Job job{s, tables_[p], wsums_[p].data(), xa.xq.data() + t0 * width, xa.xs.data() + t0 * s.groups,
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
        rows_simd(job, r0, r1, kRowsAvx2);  // the VNNI variant runs run_blocks instead
        return;
      }
#endif
      rows_scalar(job, r0, r1);
    });
  }


#ifdef TQB_X86
  // Every block of 16 rows (spread over the threads) against the batch in slices of kCols columns; the
  // offsets' Σ_j b_rj·sx_tj after, per row (1/m of the multiply-adds).
  static void run_blocks(const Job& job, const RowBlocks& rb) {
    const DecodePass& s = job.s;
#pragma omp parallel for schedule(static)
    for (std::ptrdiff_t R = 0; R < static_cast<std::ptrdiff_t>(rb.blocks); ++R) {
      for (std::size_t t0 = 0; t0 < job.n; t0 += kCols)
        kBlocksAvx512[std::min(kCols, job.n - t0)](job, rb, static_cast<std::size_t>(R), t0);
      if (s.b.empty()) continue;
      for (std::size_t r = static_cast<std::size_t>(R) * 16; r < std::min(s.rows, static_cast<std::size_t>(R) * 16 + 16); ++r)
        for (std::size_t t = 0; t < job.n; ++t) {
          float v = 0;
          for (std::size_t j = 0; j < s.groups; ++j) v += s.b[r * s.groups + j] * job.sx[t * s.groups + j];
          job.y[t * s.rows + r] += v;
        }
    }
  }
#endif

  QuantizedMatrix q_;
  std::vector<DecodePass> passes_;
  std::vector<Table8> tables_;
  std::vector<RowBlocks> blocks_;  // per pass, on CPUs with AVX-512 VNNI
  std::vector<std::vector<std::int32_t>> wsums_;  // per pass: rows × groups
  std::vector<std::vector<std::uint16_t>> orders_;
};

}  // namespace

// The same formats as fused_i16 (4-bit codes, groups of a multiple of 32 up to 256), by the same rules.
std::string fused_i8_supports(const Quantizer& quantizer) {
  std::string why = fused_i16_supports(quantizer);
  for (std::size_t at; (at = why.find("fused_i16")) != std::string::npos;) why.replace(at, 9, "fused_i8");
  return why;
}

std::unique_ptr<Linear> make_fused_i8_linear(const Quantizer& quantizer, QuantizedMatrix q) {
  if (auto why = fused_i8_supports(quantizer); !why.empty()) throw std::invalid_argument(why);
  return std::make_unique<FusedI8Linear>(quantizer, std::move(q));
}

}  // namespace tqb
