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

// GCC's __builtin_shuffle and clang's __builtin_shufflevector index two 8-lane operands the same way
// (0-7 the first, 8-15 the second); clang builds the libFuzzer targets (scripts/fuzz.sh).
#if defined(__clang__)
#define TQB_SHUFFLE1(a, ...) __builtin_shufflevector(a, a, __VA_ARGS__)
#define TQB_SHUFFLE2(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#elif defined(__GNUC__)
#define TQB_SHUFFLE1(a, ...) __builtin_shuffle(a, v8i{__VA_ARGS__})
#define TQB_SHUFFLE2(a, b, ...) __builtin_shuffle(a, b, v8i{__VA_ARGS__})
#endif

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
      v8f p = TQB_SHUFFLE1(v, 1, 0, 3, 2, 5, 4, 7, 6);
      v = TQB_SHUFFLE2(v + p, p - v, 0, 9, 2, 11, 4, 13, 6, 15);
      p = TQB_SHUFFLE1(v, 2, 3, 0, 1, 6, 7, 4, 5);
      v = TQB_SHUFFLE2(v + p, p - v, 0, 1, 10, 11, 4, 5, 14, 15);
      p = TQB_SHUFFLE1(v, 4, 5, 6, 7, 0, 1, 2, 3);
      v = TQB_SHUFFLE2(v + p, p - v, 0, 1, 2, 3, 12, 13, 14, 15);
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
