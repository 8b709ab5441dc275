#include "kernels/cpu/dense_blas.hpp"

#include <cblas.h>
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "common/matrix.hpp"
#include "common/simd.hpp"

namespace tqb {

namespace {

// OpenBLAS is loaded at first use rather than linked: its kernel set is chosen when the library loads,
// and 0.3.21 (Debian 12) does not know Zen 4, so it takes its AVX2 Haswell kernels on a CPU whose
// AVX-512 SkylakeX kernels run SGEMM 1.85x faster (measured: 4096x14336, n = 512, 2 threads, 249 ms
// against 135 ms). Before loading, an AVX-512 CPU gets OPENBLAS_CORETYPE=SkylakeX (Cooperlake with
// AVX-512 BF16) unless the environment sets it (then that choice is kept, and named in the
// description). Without OpenBLAS, Eigen computes the same products.
struct Blas {
  decltype(&cblas_sgemm) sgemm = nullptr;
  decltype(&cblas_sgemv) sgemv = nullptr;
  char* (*corename)() = nullptr;
  char* (*config)() = nullptr;
  std::string chosen;  // the core type tqbench asked for, or empty
  std::string why;     // why OpenBLAS is not used, or empty
};

Blas load_blas() {
  Blas b;
#if defined(__x86_64__)
  if (std::getenv("OPENBLAS_CORETYPE") == nullptr && __builtin_cpu_supports("avx512f") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl")) {
    b.chosen = __builtin_cpu_supports("avx512bf16") ? "Cooperlake" : "SkylakeX";
    ::setenv("OPENBLAS_CORETYPE", b.chosen.c_str(), 0);
  }
#endif
  void* handle = nullptr;
  if (const char* env = std::getenv("TQB_OPENBLAS"); env && *env) {
    if (std::string(env) == "none") {
      b.why = "TQB_OPENBLAS=none";
      return b;
    }
    if ((handle = ::dlopen(env, RTLD_NOW | RTLD_LOCAL)) == nullptr) {  // as TQB_SIMD: warn, then the default
      const char* err = ::dlerror();
      std::fprintf(stderr, "warning: TQB_OPENBLAS='%s' cannot be loaded (%s); valid: the path of an OpenBLAS "
                   "library, or none; using the default\n", env, err ? err : "?");
    }
  }
  std::vector<std::string> defaults;
#ifdef TQB_OPENBLAS_PATH
  defaults.push_back(TQB_OPENBLAS_PATH);
#endif
  defaults.push_back("libopenblas.so.0");
  for (std::size_t i = 0; !handle && i < defaults.size(); ++i) handle = ::dlopen(defaults[i].c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char* err = ::dlerror();
    b.why = std::string("OpenBLAS not found: ") + (err ? err : "?") + "; install libopenblas-openmp-dev";
    return b;
  }
  b.sgemm = reinterpret_cast<decltype(b.sgemm)>(::dlsym(handle, "cblas_sgemm"));
  b.sgemv = reinterpret_cast<decltype(b.sgemv)>(::dlsym(handle, "cblas_sgemv"));
  b.corename = reinterpret_cast<char* (*)()>(::dlsym(handle, "openblas_get_corename"));
  b.config = reinterpret_cast<char* (*)()>(::dlsym(handle, "openblas_get_config"));
  if (!b.sgemm || !b.sgemv || !b.corename || !b.config) {
    b = Blas{};
    b.why = "the OpenBLAS found lacks cblas_sgemm/cblas_sgemv";
  }
  return b;
}

const Blas& blas() {
  static const Blas b = load_blas();
  return b;
}

using ConstStrided = Eigen::Map<const Matrix, 0, Eigen::OuterStride<>>;
using Strided = Eigen::Map<Matrix, 0, Eigen::OuterStride<>>;

}  // namespace

namespace {

// Y[n × m] = alpha · X · op(B) + beta · Y, with op(B) = Bᵀ for B of m × k (b_transposed) or B of k × m: the
// one path both entry points take. OpenBLAS's OpenMP build runs a call on one thread when it is made inside
// an OpenMP parallel region (attention's per-head loop), and on OMP_NUM_THREADS threads otherwise.
void gemm(bool b_transposed, std::size_t n, std::size_t m, std::size_t k, const float* x, std::size_t ldx,
          const float* bm, std::size_t ldb, float* y, std::size_t ldy, float alpha, float beta) {
  if (n == 0 || m == 0) return;
  const Blas& b = blas();
  if (!b.sgemm) {
    Strided Y(y, n, m, Eigen::OuterStride<>(ldy));
    const ConstStrided X(x, n, k, Eigen::OuterStride<>(ldx));
    const ConstStrided B(bm, b_transposed ? m : k, b_transposed ? k : m, Eigen::OuterStride<>(ldb));
    auto product = [&](const auto& op_b) {
      if (beta == 0.0f) Y.noalias() = alpha * (X * op_b);
      else Y = beta * Y + alpha * (X * op_b);
    };
    if (b_transposed) product(B.transpose());
    else product(B);
    return;
  }
  if (b_transposed && n == 1) {  // GEMV: y = alpha · B x + beta · y
    b.sgemv(CblasRowMajor, CblasNoTrans, static_cast<blasint>(m), static_cast<blasint>(k), alpha, bm,
            static_cast<blasint>(ldb), x, 1, beta, y, 1);
    return;
  }
  b.sgemm(CblasRowMajor, CblasNoTrans, b_transposed ? CblasTrans : CblasNoTrans, static_cast<blasint>(n),
          static_cast<blasint>(m), static_cast<blasint>(k), alpha, x, static_cast<blasint>(ldx), bm,
          static_cast<blasint>(ldb), beta, y, static_cast<blasint>(ldy));
}

}  // namespace

void gemm_xwt(std::size_t n, std::size_t m, std::size_t k, const float* x, std::size_t ldx, const float* w,
              std::size_t ldw, float* y, std::size_t ldy, float alpha, float beta) {
  gemm(true, n, m, k, x, ldx, w, ldw, y, ldy, alpha, beta);
}

void gemm_xb(std::size_t n, std::size_t m, std::size_t k, const float* x, std::size_t ldx, const float* b,
             std::size_t ldb, float* y, std::size_t ldy, float alpha, float beta) {
  gemm(false, n, m, k, x, ldx, b, ldb, y, ldy, alpha, beta);
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

std::string dense_blas_description() {
  const Blas& b = blas();
  if (!b.config) return "Eigen (" + b.why + ")";
  std::string config = b.config();  // "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Zen MAX_THREADS=64"
  const auto end = config.find(' ', config.find(' ') + 1);
  std::string d = config.substr(0, end) + " " + b.corename();
  if (!b.chosen.empty()) d += " (OPENBLAS_CORETYPE set by tqbench for this AVX-512 CPU)";
  else if (const char* env = std::getenv("OPENBLAS_CORETYPE")) d += std::string(" (OPENBLAS_CORETYPE=") + env + " from the environment)";
  return d;
}

}  // namespace tqb
