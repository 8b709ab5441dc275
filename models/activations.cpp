#include "models/activations.hpp"

#include <cmath>

#include "common/simd.hpp"

namespace tqb {

TQB_MULTIVERSION void silu_mul(float* g, const float* u, std::size_t n) {
#pragma omp simd
  for (std::size_t i = 0; i < n; ++i) g[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

TQB_MULTIVERSION void gelu_tanh_mul(float* g, const float* u, std::size_t n) {
  constexpr float k = 0.7978845608028654f;  // √(2/π)
#pragma omp simd
  for (std::size_t i = 0; i < n; ++i) {
    const float x = g[i], y = k * (x + 0.044715f * x * x * x);
    // 0.5·x·(1 + tanh y) = x · (1 − 1/(1 + exp(2y))); the argument is clamped so exp stays finite.
    const float e = std::exp(std::fmin(2.0f * y, 80.0f));
    g[i] = x * (1.0f - 1.0f / (1.0f + e)) * u[i];
  }
}

TQB_MULTIVERSION void softmax_row(float* s, std::size_t visible, std::size_t total) {
  float mx = -INFINITY;
  for (std::size_t j = 0; j < visible; ++j) mx = s[j] > mx ? s[j] : mx;
  float sum = 0;
#pragma omp simd reduction(+ : sum)
  for (std::size_t j = 0; j < visible; ++j) {
    s[j] = std::exp(s[j] - mx);
    sum += s[j];
  }
  const float inv = 1.0f / sum;
#pragma omp simd
  for (std::size_t j = 0; j < visible; ++j) s[j] *= inv;
  for (std::size_t j = visible; j < total; ++j) s[j] = 0.0f;
}

}  // namespace tqb
