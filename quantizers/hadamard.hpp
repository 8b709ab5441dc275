#pragma once
// The randomized Hadamard transform as inline code, so that SIMD-multiversioned loops (common/simd.hpp)
// inline it: x ← H D x / √L per power-of-two block (rotation.hpp describes the rotation).
#include <cmath>
#include <cstddef>
#include <utility>
#include <vector>

namespace tqb {

struct HadamardPlan {
  std::vector<float> signs;                                // D: ±1 per coordinate
  std::vector<std::pair<std::size_t, std::size_t>> blocks;  // (start, power-of-two length), covering [0, d)
};

// In-place unnormalised fast Walsh–Hadamard transform of x[0..n), n a power of two.
// The first three butterfly stages (partners 1, 2 and 4 apart) are done on 8-float vectors with
// shuffles (GCC vector extensions, so each SIMD clone gets its own instructions); the later stages
// are plain loops over contiguous halves, which vectorise. Every output is the same sequence of IEEE
// additions as the textbook loop, so results do not depend on the instruction set.
inline void fwht_inline(float* x, std::size_t n) {
  std::size_t h = 1;
#if defined(__GNUC__)
  if (n >= 8) {
    typedef float v8f __attribute__((vector_size(32)));
    typedef int v8i __attribute__((vector_size(32)));
    for (std::size_t i = 0; i < n; i += 8) {
      v8f v;
      __builtin_memcpy(&v, x + i, sizeof(v));
      // lane j < partner: a + b (v = a, p = b); lane j > partner: a - b (v = b, p = a).
      v8f p = __builtin_shuffle(v, v8i{1, 0, 3, 2, 5, 4, 7, 6});
      v = __builtin_shuffle(v + p, p - v, v8i{0, 9, 2, 11, 4, 13, 6, 15});
      p = __builtin_shuffle(v, v8i{2, 3, 0, 1, 6, 7, 4, 5});
      v = __builtin_shuffle(v + p, p - v, v8i{0, 1, 10, 11, 4, 5, 14, 15});
      p = __builtin_shuffle(v, v8i{4, 5, 6, 7, 0, 1, 2, 3});
      v = __builtin_shuffle(v + p, p - v, v8i{0, 1, 2, 3, 12, 13, 14, 15});
      __builtin_memcpy(x + i, &v, sizeof(v));
    }
    h = 8;
  }
#endif
  for (; h < n; h *= 2)
    for (std::size_t i = 0; i < n; i += 2 * h)
      for (std::size_t j = i; j < i + h; ++j) {
        const float a = x[j], b = x[j + h];
        x[j] = a + b;
        x[j + h] = a - b;
      }
}

// v ← Π v.
inline void hadamard_forward(const HadamardPlan& p, float* v) {
  for (std::size_t k = 0; k < p.signs.size(); ++k) v[k] *= p.signs[k];
  for (const auto& [start, len] : p.blocks) {
    fwht_inline(v + start, len);
    const float s = 1.0f / std::sqrt(static_cast<float>(len));
    for (std::size_t k = start; k < start + len; ++k) v[k] *= s;
  }
}

// dst ← Π src (dst and src do not overlap): the sign flips fused with the copy.
inline void hadamard_forward_copy(const HadamardPlan& p, const float* src, float* dst) {
  for (std::size_t k = 0; k < p.signs.size(); ++k) dst[k] = src[k] * p.signs[k];
  for (const auto& [start, len] : p.blocks) {
    fwht_inline(dst + start, len);
    const float s = 1.0f / std::sqrt(static_cast<float>(len));
    for (std::size_t k = start; k < start + len; ++k) dst[k] *= s;
  }
}

// v ← Πᵀ v = D H v / √L (H is symmetric).
inline void hadamard_inverse(const HadamardPlan& p, float* v) {
  for (const auto& [start, len] : p.blocks) {
    fwht_inline(v + start, len);
    const float s = 1.0f / std::sqrt(static_cast<float>(len));
    for (std::size_t k = start; k < start + len; ++k) v[k] *= s;
  }
  for (std::size_t k = 0; k < p.signs.size(); ++k) v[k] *= p.signs[k];
}

}  // namespace tqb
