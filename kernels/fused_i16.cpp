#include "kernels/fused_i16.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "kernels/fused_lut.hpp"
#include "kernels/lut_plan.hpp"
#include "kernels/simd_level.hpp"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define TQB_X86 1
#endif

namespace tqb {
namespace {

constexpr int kMaxInt = 8191;             // 14-bit magnitudes: 16 pmaddwd steps stay below 2^31
constexpr std::size_t kMaxBatch = 31;     // n >= 32 takes lut_prefill
constexpr std::size_t kMaxGroupCodes = 256;

struct Tables {
  std::int16_t lut[16];
  std::uint8_t lo[16], hi[16];  // low and high bytes of lut, for the byte shuffles
  float scale;                  // lut value = lut16 · scale
};

Tables make_tables(const LutPass& s) {
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

// Σ lut16[q_i]·xq_i over one (row, group): the exact integer sum every level computes.
std::int32_t dot_scalar(const std::uint8_t* codes, const Tables& tb, const std::int16_t* xq, std::size_t m) {
  std::int32_t acc = 0;
  for (std::size_t i = 0; i < m; ++i) acc += tb.lut[(codes[i / 2] >> (4 * (i & 1))) & 15] * static_cast<std::int32_t>(xq[i]);
  return acc;
}

struct Job {
  const LutPass& s;
  const Tables& tb;
  const std::int16_t* xq;  // n × width
  const float* xs;         // n × groups: activation scales
  const float* sx;         // n × groups: Σ x̃ (offsets only)
  std::size_t n;
  float* y;
};

void finish(const Job& J, std::size_t r, std::size_t j, std::size_t t, std::int32_t sum) {
  const LutPass& s = J.s;
  float v = s.a[r * s.groups + j] * J.tb.scale * J.xs[t * s.groups + j] * static_cast<float>(sum);
  if (!s.b.empty()) v += s.b[r * s.groups + j] * J.sx[t * s.groups + j];
  J.y[t * s.rows + r] += v;
}

void rows_scalar(const Job& J, std::size_t r0, std::size_t r1) {
  const LutPass& s = J.s;
  const std::size_t width = s.groups * s.m;
  for (std::size_t r = r0; r < r1; ++r)
    for (std::size_t j = 0; j < s.groups; ++j) {
      const std::uint8_t* c = s.codes + (r * s.groups + j) * s.m / 2;
      for (std::size_t t = 0; t < J.n; ++t) finish(J, r, j, t, dot_scalar(c, J.tb, J.xq + t * width + j * s.m, s.m));
    }
}

#ifdef TQB_X86
__attribute__((target("avx2,fma"))) void rows_avx2(const Job& J, std::size_t r0, std::size_t r1) {
  const LutPass& s = J.s;
  const std::size_t width = s.groups * s.m;
  const __m128i tab_lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(J.tb.lo));
  const __m128i tab_hi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(J.tb.hi));
  const __m128i nibble = _mm_set1_epi8(0x0f);
  __m256i acc[kMaxBatch];
  for (std::size_t r = r0; r < r1; ++r)
    for (std::size_t j = 0; j < s.groups; ++j) {
      const std::uint8_t* c = s.codes + (r * s.groups + j) * s.m / 2;
      for (std::size_t t = 0; t < J.n; ++t) acc[t] = _mm256_setzero_si256();
      for (std::size_t i = 0; i < s.m; i += 16) {
        // 8 bytes = 16 codes, low nibble first: interleave the low and high nibbles into code order,
        // look up the int16 table's low and high bytes, and interleave them into 16 int16 weights.
        const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(c + i / 2));
        const __m128i idx = _mm_unpacklo_epi8(_mm_and_si128(b, nibble), _mm_and_si128(_mm_srli_epi16(b, 4), nibble));
        const __m128i wl = _mm_shuffle_epi8(tab_lo, idx), wh = _mm_shuffle_epi8(tab_hi, idx);
        const __m256i w = _mm256_set_m128i(_mm_unpackhi_epi8(wl, wh), _mm_unpacklo_epi8(wl, wh));
        for (std::size_t t = 0; t < J.n; ++t) {
          const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(J.xq + t * width + j * s.m + i));
          acc[t] = _mm256_add_epi32(acc[t], _mm256_madd_epi16(w, x));
        }
      }
      for (std::size_t t = 0; t < J.n; ++t) {
        __m128i v = _mm_add_epi32(_mm256_castsi256_si128(acc[t]), _mm256_extracti128_si256(acc[t], 1));
        v = _mm_add_epi32(v, _mm_shuffle_epi32(v, 0x4e));
        v = _mm_add_epi32(v, _mm_shuffle_epi32(v, 0xb1));
        finish(J, r, j, t, _mm_cvtsi128_si32(v));
      }
    }
}
#endif

bool pass_ok(const LutPass& s) {
  return s.bits == 4 && s.projections.empty() && s.m % 16 == 0 && s.m <= kMaxGroupCodes;
}

class FusedI16Linear final : public Linear {
 public:
  FusedI16Linear(const Quantizer& quantizer, QuantizedMatrix q) : q_(std::move(q)) {
    build_lut_passes(quantizer, q_, passes_);
    for (const auto& s : passes_) {
      if (!pass_ok(s)) throw std::invalid_argument("fused_i16: a pass without 4-bit codes in groups of 16..256");
      tables_.push_back(make_tables(s));
    }
  }
  std::size_t in() const override { return q_.cols; }
  std::size_t out() const override { return q_.rows; }
  std::size_t weight_bytes() const override {
    std::size_t b = q_.storage_bytes();
    for (const auto& s : passes_) b += (s.a.size() + s.b.size()) * sizeof(float);
    return b;
  }
  std::string kernel() const override { return "fused_i16_" + to_string(std::min(simd_level(), SimdLevel::avx2)); }

  void forward(const float* x, std::size_t n, float* y) const override {
    std::fill(y, y + n * q_.rows, 0.0f);
    const bool avx2 = simd_level() >= SimdLevel::avx2;
    for (std::size_t p = 0; p < passes_.size(); ++p) {
      const LutPass& s = passes_[p];
      std::vector<float> xt, sx;
      transform_activations(s, x, n, xt, sx);
      if (n > kMaxBatch) {
        lut_prefill(s, xt, sx, n, y);
        continue;
      }
      // 14-bit activations per (row of X, group), scale = max|x̃| / 8191.
      const std::size_t width = s.groups * s.m;
      std::vector<std::int16_t> xq(n * width);
      std::vector<float> xs(n * s.groups);
      for (std::size_t t = 0; t < n; ++t)
        for (std::size_t j = 0; j < s.groups; ++j) {
          const float* v = xt.data() + t * width + j * s.m;
          float mx = 0;
          for (std::size_t i = 0; i < s.m; ++i) mx = std::max(mx, std::fabs(v[i]));
          const float scale = mx > 0 ? mx / kMaxInt : 1.0f;
          xs[t * s.groups + j] = scale;
          for (std::size_t i = 0; i < s.m; ++i)
            xq[t * width + j * s.m + i] = static_cast<std::int16_t>(std::lrint(v[i] / scale));
        }
      const Job job{s, tables_[p], xq.data(), xs.data(), sx.data(), n, y};
      const std::size_t chunk = 16, tasks = (s.rows + chunk - 1) / chunk;
#pragma omp parallel for schedule(dynamic, 4)
      for (std::ptrdiff_t task = 0; task < static_cast<std::ptrdiff_t>(tasks); ++task) {
        const std::size_t r0 = task * chunk, r1 = std::min(s.rows, r0 + chunk);
#ifdef TQB_X86
        if (avx2) {
          rows_avx2(job, r0, r1);
          continue;
        }
#endif
        rows_scalar(job, r0, r1);
      }
    }
  }

 private:
  QuantizedMatrix q_;
  std::vector<LutPass> passes_;
  std::vector<Tables> tables_;
};

}  // namespace

std::string fused_i16_supports(const Quantizer& quantizer) {
  if (const auto passes = quantizer.passes(); !passes.empty()) {  // a stack: every pass must qualify
    for (const Quantizer* p : passes)
      if (auto why = fused_i16_supports(*p); !why.empty()) return why;
    return "";
  }
  const std::string& f = quantizer.family();
  if (f == "qjl") return "fused_i16 reads 4-bit rtn and turboquant codes, not QJL sign sketches";
  if (f != "rtn" && f != "turboquant") return "fused_i16 does not read " + f + " codes (4-bit rtn and turboquant only)";
  const Params& p = quantizer.params();
  if (get_int(p, "bits") != 4) return "fused_i16 reads 4-bit codes only";
  const std::int64_t g = get_int(p, "group");
  if (g == 0 || g % 16 != 0 || g > static_cast<std::int64_t>(kMaxGroupCodes))
    return "fused_i16 needs groups of a multiple of 16 columns, at most 256";
  return "";
}

std::unique_ptr<Linear> make_fused_i16_linear(const Quantizer& quantizer, QuantizedMatrix q) {
  if (auto why = fused_i16_supports(quantizer); !why.empty()) throw std::invalid_argument(why);
  return std::make_unique<FusedI16Linear>(quantizer, std::move(q));
}

}  // namespace tqb
