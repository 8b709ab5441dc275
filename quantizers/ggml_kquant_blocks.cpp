#include "quantizers/ggml_kquant_blocks.hpp"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/float_format.hpp"

// The searches below follow ggml's reference quantizers step for step (the order of every float operation
// decides the bytes); the names and the structure are tqbench's. Block layouts: ggml-common.h.
namespace tqb::ggml_kquant {
namespace {

constexpr std::size_t QK = kSuperBlock;
constexpr float kAllZero = 1e-15f;  // a sub-block whose largest |x| is below this is stored as zeros

void put_fp16(std::uint8_t* p, float v) {
  const std::uint16_t h = fp16_bits(v);
  std::memcpy(p, &h, 2);
}
float get_fp16(const std::uint8_t* p) {
  std::uint16_t h;
  std::memcpy(&h, p, 2);
  return fp16_value(h);
}

// Round to the nearest integer, ties to even (ggml's nearest_int, for |v| < 2^22).
int round_even(float v) { return static_cast<int>(std::nearbyint(v)); }

// The element of largest magnitude, with its sign, and that magnitude.
void signed_absmax(const float* x, int n, float& max, float& amax) {
  max = 0;
  amax = 0;
  for (int i = 0; i < n; ++i)
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
}

// --- Sub-block scale searches -------------------------------------------------------------------------

// Symmetric codes q in -nmax..nmax-1 (stored + nmax), x ≈ s·q, weighted by x² (q6_K). The grid is pinned
// so that the largest |x| lands on -nmax; 18 stretched grids nmax ± 0.1·k are tried and the one whose
// least-squares scale explains most weighted energy (Σwxq)²/Σwq² wins. Returns s.
float symmetric_search(int n, int nmax, const float* x, std::int8_t* q) {
  float max, amax;
  signed_absmax(x, n, max, amax);
  if (amax < kAllZero) {
    std::fill(q, q + n, std::int8_t{0});
    return 0.0f;
  }
  auto fit = [&](float iscale, float& sumlx, float& suml2) {
    sumlx = suml2 = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::clamp(round_even(iscale * x[i]), -nmax, nmax - 1);
      const float w = x[i] * x[i];
      sumlx += w * x[i] * static_cast<float>(l);
      suml2 += w * static_cast<float>(l) * static_cast<float>(l);
    }
  };
  auto assign = [&](float iscale) {
    for (int i = 0; i < n; ++i) q[i] = static_cast<std::int8_t>(nmax + std::clamp(round_even(iscale * x[i]), -nmax, nmax - 1));
  };
  float iscale = static_cast<float>(-nmax) / max;
  float sumlx, suml2;
  fit(iscale, sumlx, suml2);
  assign(iscale);
  float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int step = -9; step <= 9; ++step) {
    if (step == 0) continue;
    iscale = -(static_cast<float>(nmax) + 0.1f * static_cast<float>(step)) / max;
    fit(iscale, sumlx, suml2);
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      assign(iscale);
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// Symmetric codes in -nmax..nmax-1 (stored + nmax), weighted by x² (q3_K): start on the grid pinned to
// the largest |x|, then up to five rounds of coordinate descent, moving one code at a time when that
// raises (Σwxq)²/Σwq². Returns the least-squares scale.
float symmetric_descent(int n, int nmax, const float* x, std::int8_t* q) {
  float max, amax;
  signed_absmax(x, n, max, amax);
  if (amax < kAllZero) {
    std::fill(q, q + n, std::int8_t{0});
    return 0.0f;
  }
  const float iscale = static_cast<float>(-nmax) / max;
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    const int l = std::clamp(round_even(iscale * x[i]), -nmax, nmax - 1);
    q[i] = static_cast<std::int8_t>(l);
    const float w = x[i] * x[i];
    sumlx += w * x[i] * static_cast<float>(l);
    suml2 += w * static_cast<float>(l) * static_cast<float>(l);
  }
  for (int round = 0; round < 5; ++round) {
    int changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = x[i] * x[i];
      float slx = sumlx - w * x[i] * static_cast<float>(q[i]);
      if (slx <= 0) continue;
      float sl2 = suml2 - w * static_cast<float>(q[i]) * static_cast<float>(q[i]);
      const int l = std::clamp(round_even(x[i] * sl2 / slx), -nmax, nmax - 1);
      if (l == q[i]) continue;
      slx += w * x[i] * static_cast<float>(l);
      sl2 += w * static_cast<float>(l) * static_cast<float>(l);
      if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
        q[i] = static_cast<std::int8_t>(l);
        sumlx = slx;
        suml2 = sl2;
        ++changed;
      }
    }
    if (changed == 0) break;
  }
  for (int i = 0; i < n; ++i) q[i] = static_cast<std::int8_t>(q[i] + nmax);
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// Affine codes q in 0..nmax, x ≈ s·q − m with m ≥ 0 (q2_K, q4_K, q5_K): start on the min..max grid,
// then for nstep + 1 stretched grids (nmax + rmin + rdelta·k) solve the weighted least-squares s and m
// and keep the fit with the smallest weighted error (|e| when abs_error, else e²). Returns s; *offset = m.
float affine_search(int n, int nmax, const float* x, const float* w, std::uint8_t* q, float* offset, float rmin,
                    float rdelta, int nstep, bool abs_error) {
  float min = x[0], max = x[0];
  float sum_w = w[0], sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    sum_w += w[i];
    sum_x += w[i] * x[i];
  }
  if (min > 0) min = 0;
  if (max == min) {
    std::fill(q, q + n, std::uint8_t{0});
    *offset = -min;
    return 0.0f;
  }
  const float fmax_code = static_cast<float>(nmax);
  auto error_of = [&](float e) { return abs_error ? std::fabs(e) : e * e; };
  float iscale = fmax_code / (max - min);
  float scale = 1 / iscale;
  float best_error = 0;
  for (int i = 0; i < n; ++i) {
    q[i] = static_cast<std::uint8_t>(std::clamp(round_even(iscale * (x[i] - min)), 0, nmax));
    best_error += w[i] * error_of(scale * static_cast<float>(q[i]) + min - x[i]);
  }
  std::uint8_t trial[32];
  for (int step = 0; step <= nstep; ++step) {
    iscale = (rmin + rdelta * static_cast<float>(step) + fmax_code) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::clamp(round_even(iscale * (x[i] - min)), 0, nmax);
      trial[i] = static_cast<std::uint8_t>(l);
      const float fl = static_cast<float>(l);
      sum_l += w[i] * fl;
      sum_l2 += w[i] * fl * fl;
      sum_xl += w[i] * fl * x[i];
    }
    const float det = sum_w * sum_l2 - sum_l * sum_l;
    if (det <= 0) continue;
    float this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
    float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
    if (this_min > 0) {
      this_min = 0;
      this_scale = sum_xl / sum_l2;
    }
    float error = 0;
    for (int i = 0; i < n; ++i) error += w[i] * error_of(this_scale * static_cast<float>(trial[i]) + this_min - x[i]);
    if (error < best_error) {
      std::copy(trial, trial + n, q);
      best_error = error;
      scale = this_scale;
      min = this_min;
    }
  }
  *offset = -min;
  return scale;
}

// --- Shared layouts ------------------------------------------------------------------------------------

// Four 2-bit codes per byte: byte l of each 32-byte group holds codes l, l+32, l+64, l+96 of its 128.
void pack_2bit(const std::uint8_t* codes, std::uint8_t* qs) {
  for (std::size_t j = 0; j < QK; j += 128, qs += 32)
    for (int l = 0; l < 32; ++l)
      qs[l] = static_cast<std::uint8_t>(codes[j + l] | codes[j + l + 32] << 2 | codes[j + l + 64] << 4 | codes[j + l + 96] << 6);
}

// q4_K/q5_K: eight 6-bit scales and eight 6-bit minimums in 12 bytes (sub-blocks 4..7 split their top
// two bits into the top bits of bytes 0..7).
void pack_scale_min(int j, std::uint8_t ls, std::uint8_t lm, std::uint8_t* s) {
  if (j < 4) {
    s[j] = ls;
    s[j + 4] = lm;
  } else {
    s[j + 4] = static_cast<std::uint8_t>((ls & 0xF) | (lm & 0xF) << 4);
    s[j - 4] |= static_cast<std::uint8_t>((ls >> 4) << 6);
    s[j] |= static_cast<std::uint8_t>((lm >> 4) << 6);
  }
}
void unpack_scale_min(int j, const std::uint8_t* s, int& sc, int& m) {
  if (j < 4) {
    sc = s[j] & 63;
    m = s[j + 4] & 63;
  } else {
    sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
    m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

// q3_K: sixteen 6-bit signed scales (+32) in 12 bytes: low nibbles in bytes 0..7, high pairs in 8..11.
int unpack_q3_scale(int j, const std::uint8_t* s) {
  const int low = j < 8 ? s[j] & 0xF : s[j - 8] >> 4;
  return (low | ((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4) - 32;
}

// q4_K and q5_K share everything but the code width: 8 sub-blocks of 32, affine codes, weights
// sqrt(mean x²) + |x|, scales and minimums as 6-bit multiples of the fp16 d and dmin.
template <int Bits>
void affine_superblock(const float* x, std::uint8_t* dm, std::uint8_t* scales, std::uint8_t* codes) {
  constexpr int nmax = (1 << Bits) - 1;
  constexpr float rmin = Bits == 4 ? -1.0f : -0.5f;
  constexpr int nstep = Bits == 4 ? 20 : 15;
  float sub_scale[8], sub_min[8], weights[32];
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < 8; ++j) {
    const float* xs = x + 32 * j;
    float sum_x2 = 0;
    for (int l = 0; l < 32; ++l) sum_x2 += xs[l] * xs[l];
    const float av_x = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(xs[l]);
    sub_scale[j] = affine_search(32, nmax, xs, weights, codes + 32 * j, &sub_min[j], rmin, 0.1f, nstep, false);
    if (sub_scale[j] > max_scale) max_scale = sub_scale[j];
    if (sub_min[j] > max_min) max_min = sub_min[j];
  }
  const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
  const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
  std::memset(scales, 0, 12);
  for (int j = 0; j < 8; ++j) {
    const auto ls = std::min<std::uint8_t>(63, static_cast<std::uint8_t>(round_even(inv_scale * sub_scale[j])));
    const auto lm = std::min<std::uint8_t>(63, static_cast<std::uint8_t>(round_even(inv_min * sub_min[j])));
    pack_scale_min(j, ls, lm, scales);
  }
  put_fp16(dm, max_scale / 63.f);
  put_fp16(dm + 2, max_min / 63.f);
  // Requantize every weight against the stored (rounded) scales.
  const float d_all = get_fp16(dm), dmin_all = get_fp16(dm + 2);
  for (int j = 0; j < 8; ++j) {
    int sc, m;
    unpack_scale_min(j, scales, sc, m);
    const float d = d_all * static_cast<float>(sc);
    if (d == 0.0f) continue;
    const float dmin = dmin_all * static_cast<float>(m);
    for (int l = 0; l < 32; ++l) codes[32 * j + l] = static_cast<std::uint8_t>(std::clamp(round_even((x[32 * j + l] + dmin) / d), 0, nmax));
  }
}

// Index of the level nearest to v (the lower one on a tie).
int nearest_level(float v) {
  if (v <= kIq4NlLevels[0]) return 0;
  if (v >= kIq4NlLevels[15]) return 15;
  int lo = 0, hi = 15;
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    (v < kIq4NlLevels[mid] ? hi : lo) = mid;
  }
  return v - static_cast<float>(kIq4NlLevels[hi - 1]) < static_cast<float>(kIq4NlLevels[hi]) - v ? hi - 1 : hi;
}

}  // namespace

// --- q2_K: 16 sub-blocks of 16, 2-bit affine codes, 4-bit scales and minimums (2.625 bits) -------------
// Layout: scales[16] (scale | min << 4), qs[64], fp16 d, fp16 dmin.
void quantize_q2_k(const float* x, std::uint8_t* out, std::size_t n) {
  for (std::size_t b = 0; b < n / QK; ++b, x += QK, out += kQ2KBytes) {
    std::uint8_t* scales = out;
    std::uint8_t* qs = out + 16;
    std::uint8_t* dm = out + 80;
    std::uint8_t codes[QK];
    float sub_scale[16], sub_min[16], weights[16];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 16; ++j) {
      for (int l = 0; l < 16; ++l) weights[l] = std::fabs(x[16 * j + l]);
      sub_scale[j] = affine_search(16, 3, x + 16 * j, weights, codes + 16 * j, &sub_min[j], -0.5f, 0.1f, 15, true);
      if (sub_scale[j] > max_scale) max_scale = sub_scale[j];
      if (sub_min[j] > max_min) max_min = sub_min[j];
    }
    if (max_scale > 0) {
      const float iscale = 15.f / max_scale;
      for (int j = 0; j < 16; ++j) scales[j] = static_cast<std::uint8_t>(round_even(iscale * sub_scale[j]));
      put_fp16(dm, max_scale / 15.f);
    } else {
      std::memset(scales, 0, 16);
      put_fp16(dm, 0.f);
    }
    if (max_min > 0) {
      const float iscale = 15.f / max_min;
      for (int j = 0; j < 16; ++j) scales[j] |= static_cast<std::uint8_t>(round_even(iscale * sub_min[j]) << 4);
      put_fp16(dm + 2, max_min / 15.f);
    } else {
      put_fp16(dm + 2, 0.f);
    }
    const float d_all = get_fp16(dm), dmin_all = get_fp16(dm + 2);
    for (int j = 0; j < 16; ++j) {
      const float d = d_all * static_cast<float>(scales[j] & 0xF);
      if (d == 0.0f) continue;
      const float dmin = dmin_all * static_cast<float>(scales[j] >> 4);
      for (int l = 0; l < 16; ++l) codes[16 * j + l] = static_cast<std::uint8_t>(std::clamp(round_even((x[16 * j + l] + dmin) / d), 0, 3));
    }
    pack_2bit(codes, qs);
  }
}

void dequantize_q2_k(const std::uint8_t* in, float* y, std::size_t n) {
  for (std::size_t b = 0; b < n / QK; ++b, in += kQ2KBytes) {
    const std::uint8_t* scales = in;
    const std::uint8_t* qs = in + 16;
    const float d = get_fp16(in + 80), dmin = get_fp16(in + 82);
    int is = 0;
    for (int half = 0; half < 2; ++half, qs += 32)
      for (int shift = 0; shift < 8; shift += 2)
        for (int part = 0; part < 2; ++part, ++is) {
          const float dl = d * static_cast<float>(scales[is] & 0xF), ml = dmin * static_cast<float>(scales[is] >> 4);
          for (int l = 0; l < 16; ++l) *y++ = dl * static_cast<float>((qs[16 * part + l] >> shift) & 3) - ml;
        }
  }
}

// --- q3_K: 16 sub-blocks of 16, 3-bit symmetric codes, 6-bit signed scales (3.4375 bits) ---------------
// Layout: hmask[32] (the codes' third bits), qs[64] (low two bits), scales[12], fp16 d.
void quantize_q3_k(const float* x, std::uint8_t* out, std::size_t n) {
  for (std::size_t b = 0; b < n / QK; ++b, x += QK, out += kQ3KBytes) {
    std::uint8_t* hmask = out;
    std::uint8_t* qs = out + 32;
    std::uint8_t* scales = out + 96;
    std::uint8_t* d_out = out + 108;
    std::int8_t codes[QK];
    float sub_scale[16];
    for (int j = 0; j < 16; ++j) sub_scale[j] = symmetric_descent(16, 4, x + 16 * j, codes + 16 * j);
    float max_scale, amax;
    signed_absmax(sub_scale, 16, max_scale, amax);  // the sub-scale of largest magnitude, with its sign
    std::memset(scales, 0, 12);
    if (max_scale != 0.0f) {
      const float iscale = -32.f / max_scale;
      for (int j = 0; j < 16; ++j) {
        const int l = std::clamp<int>(static_cast<std::int8_t>(round_even(iscale * sub_scale[j])), -32, 31) + 32;
        if (j < 8)
          scales[j] = static_cast<std::uint8_t>(l & 0xF);
        else
          scales[j - 8] |= static_cast<std::uint8_t>((l & 0xF) << 4);
        scales[j % 4 + 8] |= static_cast<std::uint8_t>((l >> 4) << (2 * (j / 4)));
      }
      put_fp16(d_out, 1 / iscale);
    } else {
      put_fp16(d_out, 0.f);
    }
    const float d_all = get_fp16(d_out);
    for (int j = 0; j < 16; ++j) {
      const float d = d_all * static_cast<float>(static_cast<std::int8_t>(unpack_q3_scale(j, scales)));
      if (d == 0.0f) continue;
      for (int l = 0; l < 16; ++l) codes[16 * j + l] = static_cast<std::int8_t>(std::clamp(round_even(x[16 * j + l] / d), -4, 3) + 4);
    }
    // The third bit of code i goes to bit i / 32 of hmask[i % 32]; the low two bits as q2_K packs them.
    std::memset(hmask, 0, 32);
    std::uint8_t low[QK];
    for (std::size_t i = 0; i < QK; ++i) {
      int c = codes[i];
      if (c > 3) {
        hmask[i % 32] |= static_cast<std::uint8_t>(1u << (i / 32));
        c -= 4;
      }
      low[i] = static_cast<std::uint8_t>(c);
    }
    pack_2bit(low, qs);
  }
}

void dequantize_q3_k(const std::uint8_t* in, float* y, std::size_t n) {
  for (std::size_t b = 0; b < n / QK; ++b, in += kQ3KBytes) {
    const std::uint8_t* hmask = in;
    const std::uint8_t* qs = in + 32;
    const std::uint8_t* scales = in + 96;
    const float d_all = get_fp16(in + 108);
    int is = 0, bit = 0;
    for (int half = 0; half < 2; ++half, qs += 32)
      for (int shift = 0; shift < 8; shift += 2, ++bit)
        for (int part = 0; part < 2; ++part, ++is) {
          const float dl = d_all * static_cast<float>(unpack_q3_scale(is, scales));
          for (int l = 0; l < 16; ++l) {
            const int i = 16 * part + l;
            const int q = ((qs[i] >> shift) & 3) - ((hmask[i] >> bit) & 1 ? 0 : 4);
            *y++ = dl * static_cast<float>(q);
          }
        }
  }
}

// --- q4_K: 8 sub-blocks of 32, 4-bit affine codes (4.5 bits) --------------------------------------------
// Layout: fp16 d, fp16 dmin, scales[12], qs[128] (byte l of each 32: codes l and l + 32 of its 64).
void quantize_q4_k(const float* x, std::uint8_t* out, std::size_t n) {
  for (std::size_t b = 0; b < n / QK; ++b, x += QK, out += kQ4KBytes) {
    std::uint8_t codes[QK];
    affine_superblock<4>(x, out, out + 4, codes);
    std::uint8_t* qs = out + 16;
    for (std::size_t j = 0; j < QK; j += 64, qs += 32)
      for (int l = 0; l < 32; ++l) qs[l] = static_cast<std::uint8_t>(codes[j + l] | codes[j + l + 32] << 4);
  }
}

void dequantize_q4_k(const std::uint8_t* in, float* y, std::size_t n) {
  for (std::size_t b = 0; b < n / QK; ++b, in += kQ4KBytes) {
    const float d = get_fp16(in), dmin = get_fp16(in + 2);
    const std::uint8_t* qs = in + 16;
    for (int j = 0; j < 8; j += 2, qs += 32) {
      int sc, m;
      unpack_scale_min(j, in + 4, sc, m);
      const float d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(m);
      unpack_scale_min(j + 1, in + 4, sc, m);
      const float d2 = d * static_cast<float>(sc), m2 = dmin * static_cast<float>(m);
      for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>(qs[l] & 0xF) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>(qs[l] >> 4) - m2;
    }
  }
}

// --- q5_K: q4_K with a fifth bit per code (5.5 bits) -----------------------------------------------------
// Layout: fp16 d, fp16 dmin, scales[12], qh[32] (bit 2k / 2k+1 of qh[l]: fifth bit of code l / l + 32 of
// the k-th 64), qs[128] as q4_K's.
void quantize_q5_k(const float* x, std::uint8_t* out, std::size_t n) {
  for (std::size_t b = 0; b < n / QK; ++b, x += QK, out += kQ5KBytes) {
    std::uint8_t codes[QK];
    affine_superblock<5>(x, out, out + 4, codes);
    std::uint8_t* qh = out + 16;
    std::uint8_t* qs = out + 48;
    std::memset(qh, 0, 32);
    for (int k = 0; k < 4; ++k, qs += 32)
      for (int l = 0; l < 32; ++l) {
        const int c1 = codes[64 * k + l], c2 = codes[64 * k + l + 32];
        qh[l] |= static_cast<std::uint8_t>((c1 >> 4) << (2 * k) | (c2 >> 4) << (2 * k + 1));
        qs[l] = static_cast<std::uint8_t>((c1 & 0xF) | (c2 & 0xF) << 4);
      }
  }
}

void dequantize_q5_k(const std::uint8_t* in, float* y, std::size_t n) {
  for (std::size_t b = 0; b < n / QK; ++b, in += kQ5KBytes) {
    const float d = get_fp16(in), dmin = get_fp16(in + 2);
    const std::uint8_t* qh = in + 16;
    const std::uint8_t* qs = in + 48;
    for (int k = 0; k < 4; ++k, qs += 32) {
      int sc, m;
      unpack_scale_min(2 * k, in + 4, sc, m);
      const float d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(m);
      unpack_scale_min(2 * k + 1, in + 4, sc, m);
      const float d2 = d * static_cast<float>(sc), m2 = dmin * static_cast<float>(m);
      for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>((qs[l] & 0xF) + ((qh[l] >> (2 * k)) & 1) * 16) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>((qs[l] >> 4) + ((qh[l] >> (2 * k + 1)) & 1) * 16) - m2;
    }
  }
}

// --- q6_K: 16 sub-blocks of 16, 6-bit symmetric codes, int8 scales (6.5625 bits) ------------------------
// Layout: ql[128] (low nibbles), qh[64] (high pairs), scales[16] (int8), fp16 d.
void quantize_q6_k(const float* x, std::uint8_t* out, std::size_t n) {
  for (std::size_t b = 0; b < n / QK; ++b, x += QK, out += kQ6KBytes) {
    std::uint8_t* ql = out;
    std::uint8_t* qh = out + 128;
    auto* scales = reinterpret_cast<std::int8_t*>(out + 192);
    std::uint8_t* d_out = out + 208;
    std::int8_t codes[QK];
    float sub_scale[16];
    for (int j = 0; j < 16; ++j) sub_scale[j] = symmetric_search(16, 32, x + 16 * j, codes + 16 * j);
    float max_scale, max_abs;
    signed_absmax(sub_scale, 16, max_scale, max_abs);
    if (max_abs < kAllZero) {
      std::memset(out, 0, kQ6KBytes);
      continue;
    }
    const float iscale = -128.f / max_scale;
    put_fp16(d_out, 1 / iscale);
    for (int j = 0; j < 16; ++j) scales[j] = static_cast<std::int8_t>(std::min(127, round_even(iscale * sub_scale[j])));
    const float d_all = get_fp16(d_out);
    for (int j = 0; j < 16; ++j) {
      const float d = d_all * static_cast<float>(scales[j]);
      if (d == 0.0f) continue;
      for (int l = 0; l < 16; ++l) codes[16 * j + l] = static_cast<std::int8_t>(std::clamp(round_even(x[16 * j + l] / d), -32, 31) + 32);
    }
    for (std::size_t j = 0; j < QK; j += 128, ql += 64, qh += 32)
      for (int l = 0; l < 32; ++l) {
        const int c[4] = {codes[j + l], codes[j + l + 32], codes[j + l + 64], codes[j + l + 96]};
        ql[l] = static_cast<std::uint8_t>((c[0] & 0xF) | (c[2] & 0xF) << 4);
        ql[l + 32] = static_cast<std::uint8_t>((c[1] & 0xF) | (c[3] & 0xF) << 4);
        qh[l] = static_cast<std::uint8_t>(c[0] >> 4 | (c[1] >> 4) << 2 | (c[2] >> 4) << 4 | (c[3] >> 4) << 6);
      }
  }
}

void dequantize_q6_k(const std::uint8_t* in, float* y, std::size_t n) {
  for (std::size_t b = 0; b < n / QK; ++b, in += kQ6KBytes, y += QK) {
    const std::uint8_t* ql = in;
    const std::uint8_t* qh = in + 128;
    const auto* sc = reinterpret_cast<const std::int8_t*>(in + 192);
    const float d = get_fp16(in + 208);
    float* yb = y;
    for (int half = 0; half < 2; ++half, yb += 128, ql += 64, qh += 32, sc += 8)
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0xF) | ((qh[l] >> 0) & 3) << 4) - 32;
        const int q2 = ((ql[l + 32] & 0xF) | ((qh[l] >> 2) & 3) << 4) - 32;
        const int q3 = ((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32;
        const int q4 = ((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32;
        yb[l] = d * static_cast<float>(sc[is]) * static_cast<float>(q1);
        yb[l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
        yb[l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
        yb[l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
      }
  }
}

// --- iq4_nl: blocks of 32 on the 16 fixed levels, fp16 scale (4.5 bits) ----------------------------------
// Layout: fp16 d, qs[16] (byte j: codes j and j + 16). The scale: pin the largest |x| to the level −127,
// then try 15 grids (−127 + k)/max, k = −7..7, keeping the weighted (x²) least-squares scale that explains
// most energy; the codes are then the nearest levels under the unrounded scale.
void quantize_iq4_nl(const float* x, std::uint8_t* out, std::size_t n) {
  constexpr int ntry = 7;
  for (std::size_t b = 0; b < n / kIq4Block; ++b, x += kIq4Block, out += kIq4NlBytes) {
    float weight[kIq4Block];
    for (std::size_t j = 0; j < kIq4Block; ++j) weight[j] = x[j] * x[j];
    float max, amax;
    signed_absmax(x, static_cast<int>(kIq4Block), max, amax);
    float d = 0;
    if (amax >= kAllZero) {
      const float first = static_cast<float>(kIq4NlLevels[0]);
      auto fit = [&](float id, float& sumqx, float& sumq2) {
        sumqx = sumq2 = 0;
        for (std::size_t j = 0; j < kIq4Block; ++j) {
          const float q = static_cast<float>(kIq4NlLevels[nearest_level(id * x[j])]);
          sumqx += weight[j] * q * x[j];
          sumq2 += weight[j] * q * q;
        }
      };
      float sumqx, sumq2;
      fit(1 / (-max / first), sumqx, sumq2);
      d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
      float best = d * sumqx;
      for (int step = -ntry; step <= ntry; ++step) {
        fit(static_cast<float>(step + kIq4NlLevels[0]) / max, sumqx, sumq2);
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
          d = sumqx / sumq2;
          best = d * sumqx;
        }
      }
    }
    put_fp16(out, d);
    const float id = d != 0.0f ? 1 / d : 0.0f;
    std::uint8_t* qs = out + 2;
    for (std::size_t j = 0; j < 16; ++j)
      qs[j] = static_cast<std::uint8_t>(nearest_level(id * x[j]) | nearest_level(id * x[j + 16]) << 4);
  }
}

void dequantize_iq4_nl(const std::uint8_t* in, float* y, std::size_t n) {
  for (std::size_t b = 0; b < n / kIq4Block; ++b, in += kIq4NlBytes, y += kIq4Block) {
    const float d = get_fp16(in);
    for (std::size_t j = 0; j < 16; ++j) {
      y[j] = d * static_cast<float>(kIq4NlLevels[in[2 + j] & 0xF]);
      y[j + 16] = d * static_cast<float>(kIq4NlLevels[in[2 + j] >> 4]);
    }
  }
}

// --- the k-quants as grids (gptq): the layouts their dequantizers above read ---------------------------------------
// q2_K/q3_K: weight i is in half h = i / 128, at l = i mod 32 and shift 2·((i mod 128) / 32): the 2 low bits of
// qs[h·32 + l] >> shift; q3_K's third bit is bit i / 32 of hmask[l] (set: q = low, clear: q = low − 4, so its code is
// low + 4·bit and its value code − 4). q4_K/q5_K: weight i of a super-block is in 64-weight chunk c = i / 64, at l = i mod 64: byte c·32 + l mod 32 of qs, low
// nibble for l < 32, high nibble above; q5_K's fifth bit is bit 2c + (l ≥ 32) of qh[l mod 32]. q6_K: half h = i / 128,
// quarter k = (i mod 128) / 32, l = i mod 32: the low nibble of ql[h·64 + l + 32·(k odd)] (high nibble for k ≥ 2), the
// top two bits at bit 2k of qh[h·32 + l].
void kquant_grid_scales(int kind, const std::uint8_t* block, float* a, float* b) {
  if (kind == 2) {
    const float d = get_fp16(block + 80), dmin = get_fp16(block + 82);
    for (int j = 0; j < 16; ++j) {
      a[j] = d * static_cast<float>(block[j] & 0xF);
      b[j] = -(dmin * static_cast<float>(block[j] >> 4));
    }
    return;
  }
  if (kind == 3) {
    const float d = get_fp16(block + 108);
    for (int j = 0; j < 16; ++j) a[j] = d * static_cast<float>(unpack_q3_scale(j, block + 96));
    return;
  }
  if (kind == 6) {
    const float d = get_fp16(block + 208);
    const auto* sc = reinterpret_cast<const std::int8_t*>(block + 192);
    for (int j = 0; j < 16; ++j) a[j] = d * static_cast<float>(sc[j]);
    return;
  }
  const float d = get_fp16(block), dmin = get_fp16(block + 2);
  for (int j = 0; j < 8; ++j) {
    int sc, m;
    unpack_scale_min(j, block + 4, sc, m);
    a[j] = d * static_cast<float>(sc);
    b[j] = -(dmin * static_cast<float>(m));
  }
}

unsigned kquant_code(int kind, const std::uint8_t* block, std::size_t i) {
  if (kind == 2 || kind == 3) {
    const unsigned low = (block[(kind == 2 ? 16 : 32) + i / 128 * 32 + i % 32] >> (2 * (i % 128 / 32))) & 3u;
    return kind == 2 ? low : low | ((block[i % 32] >> (i / 32)) & 1u) << 2;
  }
  if (kind == 6) {
    const std::size_t h = i / 128, k = i % 128 / 32, l = i % 32;
    const std::uint8_t low = block[h * 64 + l + 32 * (k % 2)];
    return (k < 2 ? low & 0xFu : low >> 4) | ((block[128 + h * 32 + l] >> (2 * k)) & 3u) << 4;
  }
  const std::size_t c = i / 64, l = i % 64;
  const std::uint8_t* qs = block + (kind == 4 ? 16 : 48);
  unsigned q = l < 32 ? qs[c * 32 + l] & 0xFu : qs[c * 32 + l - 32] >> 4;
  if (kind == 5) q |= ((block[16 + l % 32] >> (2 * c + (l >= 32 ? 1 : 0))) & 1u) << 4;
  return q;
}

void kquant_set_code(int kind, std::uint8_t* block, std::size_t i, unsigned code) {
  const auto nibble = [](std::uint8_t& byte, bool high, unsigned v) {
    byte = high ? static_cast<std::uint8_t>((byte & 0x0Fu) | (v & 0xFu) << 4) : static_cast<std::uint8_t>((byte & 0xF0u) | (v & 0xFu));
  };
  if (kind == 2 || kind == 3) {
    const unsigned shift = static_cast<unsigned>(2 * (i % 128 / 32));
    std::uint8_t& q = block[(kind == 2 ? 16 : 32) + i / 128 * 32 + i % 32];
    q = static_cast<std::uint8_t>((q & ~(3u << shift)) | (code & 3u) << shift);
    if (kind == 3) {
      const unsigned bit = static_cast<unsigned>(i / 32);
      std::uint8_t& h = block[i % 32];
      h = static_cast<std::uint8_t>((h & ~(1u << bit)) | ((code >> 2) & 1u) << bit);
    }
    return;
  }
  if (kind == 6) {
    const std::size_t h = i / 128, k = i % 128 / 32, l = i % 32;
    nibble(block[h * 64 + l + 32 * (k % 2)], k >= 2, code);
    std::uint8_t& hi = block[128 + h * 32 + l];
    hi = static_cast<std::uint8_t>((hi & ~(3u << (2 * k))) | ((code >> 4) & 3u) << (2 * k));
    return;
  }
  const std::size_t c = i / 64, l = i % 64;
  std::uint8_t* qs = block + (kind == 4 ? 16 : 48);
  nibble(qs[c * 32 + l % 32], l >= 32, code);
  if (kind == 5) {
    const unsigned bit = static_cast<unsigned>(2 * c + (l >= 32 ? 1 : 0));
    std::uint8_t& qh = block[16 + l % 32];
    qh = static_cast<std::uint8_t>((qh & ~(1u << bit)) | ((code >> 4) & 1u) << bit);
  }
}

}  // namespace tqb::ggml_kquant
