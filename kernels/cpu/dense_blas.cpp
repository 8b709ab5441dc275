#include "kernels/cpu/dense_blas.hpp"

#include <cblas.h>

#include <algorithm>
#include <cctype>

#include "common/simd.hpp"

namespace tqb {

// OpenBLAS's OpenMP build runs a call on one thread when it is made inside an OpenMP parallel region
// (attention's per-head loop), and on OMP_NUM_THREADS threads otherwise.
void gemm_xwt(std::size_t n, std::size_t m, std::size_t k, const float* x, std::size_t ldx, const float* w,
              std::size_t ldw, float* y, std::size_t ldy, float alpha, float beta) {
  if (n == 0 || m == 0) return;
  if (n == 1) {  // GEMV: y = alpha · W x + beta · y
    cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<blasint>(m), static_cast<blasint>(k), alpha, w,
                static_cast<blasint>(ldw), x, 1, beta, y, 1);
    return;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<blasint>(n), static_cast<blasint>(m),
              static_cast<blasint>(k), alpha, x, static_cast<blasint>(ldx), w, static_cast<blasint>(ldw), beta, y,
              static_cast<blasint>(ldy));
}

void gemm_xb(std::size_t n, std::size_t m, std::size_t k, const float* x, std::size_t ldx, const float* b,
             std::size_t ldb, float* y, std::size_t ldy, float alpha, float beta) {
  if (n == 0 || m == 0) return;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<blasint>(n), static_cast<blasint>(m),
              static_cast<blasint>(k), alpha, x, static_cast<blasint>(ldx), b, static_cast<blasint>(ldb), beta, y,
              static_cast<blasint>(ldy));
}

namespace {

typedef float v8f __attribute__((vector_size(32)));

inline float hsum(v8f v) {
  float s = 0;
  for (int i = 0; i < 8; ++i) s += v[i];
  return s;
}

// C columns of X against 4 rows of W: acc[i][c] over k in steps of 8, the k % 8 tail in scalar.
template <int C>
[[gnu::always_inline]] inline void block4(std::size_t k, const float* x, std::size_t ldx, const float* w,
                                          std::size_t ldw, float* y, std::size_t ldy) {
  v8f acc[4][C] = {};
  std::size_t kk = 0;
  for (; kk + 8 <= k; kk += 8) {
    v8f wv[4], xv[C];
    for (int i = 0; i < 4; ++i) __builtin_memcpy(&wv[i], w + i * ldw + kk, 32);
    for (int c = 0; c < C; ++c) __builtin_memcpy(&xv[c], x + c * ldx + kk, 32);
    for (int i = 0; i < 4; ++i)
      for (int c = 0; c < C; ++c) acc[i][c] += wv[i] * xv[c];
  }
  for (int i = 0; i < 4; ++i)
    for (int c = 0; c < C; ++c) {
      float s = hsum(acc[i][c]);
      for (std::size_t t = kk; t < k; ++t) s += w[i * ldw + t] * x[c * ldx + t];
      y[c * ldy + i] = s;
    }
}

template <int C>
[[gnu::always_inline]] inline void row1(std::size_t k, const float* x, std::size_t ldx, const float* w, float* y,
                                        std::size_t ldy) {
  v8f acc[C] = {};
  std::size_t kk = 0;
  for (; kk + 8 <= k; kk += 8) {
    v8f wv;
    __builtin_memcpy(&wv, w + kk, 32);
    for (int c = 0; c < C; ++c) {
      v8f xv;
      __builtin_memcpy(&xv, x + c * ldx + kk, 32);
      acc[c] += wv * xv;
    }
  }
  for (int c = 0; c < C; ++c) {
    float s = hsum(acc[c]);
    for (std::size_t t = kk; t < k; ++t) s += w[t] * x[c * ldx + t];
    y[c * ldy] = s;
  }
}

}  // namespace

TQB_MULTIVERSION void gemm_xwt_thin(std::size_t n, std::size_t k, const float* x, std::size_t ldx, const float* w,
                                    std::size_t ldw, std::size_t r0, std::size_t r1, float* y, std::size_t ldy) {
  std::size_t r = r0;
  for (; r + 4 <= r1; r += 4) {
    std::size_t t = 0;
    for (; t + 4 <= n; t += 4) block4<4>(k, x + t * ldx, ldx, w + r * ldw, ldw, y + t * ldy + (r - r0), ldy);
    for (; t < n; ++t) block4<1>(k, x + t * ldx, ldx, w + r * ldw, ldw, y + t * ldy + (r - r0), ldy);
  }
  for (; r < r1; ++r) {
    std::size_t t = 0;
    for (; t + 4 <= n; t += 4) row1<4>(k, x + t * ldx, ldx, w + r * ldw, y + t * ldy + (r - r0), ldy);
    for (; t < n; ++t) row1<1>(k, x + t * ldx, ldx, w + r * ldw, y + t * ldy + (r - r0), ldy);
  }
}

std::string dense_blas_core() {
  std::string core = openblas_get_corename();
  std::transform(core.begin(), core.end(), core.begin(), [](unsigned char c) { return std::tolower(c); });
  return core;
}

std::string dense_blas_description() {
  std::string config = openblas_get_config();  // "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Zen MAX_THREADS=64"
  const auto end = config.find(' ', config.find(' ') + 1);
  return config.substr(0, end) + " " + openblas_get_corename();
}

}  // namespace tqb
