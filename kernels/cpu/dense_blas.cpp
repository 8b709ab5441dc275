#include "kernels/cpu/dense_blas.hpp"

#include <cblas.h>

#include <algorithm>
#include <cctype>

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
