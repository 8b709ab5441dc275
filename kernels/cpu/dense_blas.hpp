#pragma once
// The dense fp32 products of model evaluation (the unquantized layers, the output head, the reference
// kernel, attention) through OpenBLAS: one library whose kernels are chosen at run time for the CPU it
// runs on (Debian builds it with DYNAMIC_ARCH: Haswell/Zen AVX2, SkylakeX/Cooperlake AVX-512), so the
// portable build is fast everywhere. Eigen compiled without -march would use SSE2 only.
//
// The library is loaded at first use: $TQB_OPENBLAS (a path, or "none" for Eigen), else the one found at
// build time, else libopenblas.so.0 on the loader's path; without it Eigen computes the same products.
//
// Only evaluation uses it. Quantizers keep Eigen's products (the Haar rotation's QR and GEMMs), whose
// results do not depend on the CPU, so that the same (w, seed) gives the same codes on every machine.
#include <cstddef>
#include <string>

namespace tqb {

// Y[n × m] = alpha · X[n × k] · W[m × k]ᵀ + beta · Y, row-major with leading dimensions (elements).
void gemm_xwt(std::size_t n, std::size_t m, std::size_t k, const float* x, std::size_t ldx, const float* w,
              std::size_t ldw, float* y, std::size_t ldy, float alpha = 1.0f, float beta = 0.0f);

// Y[n × m] = alpha · X[n × k] · B[k × m] + beta · Y, row-major with leading dimensions.
void gemm_xb(std::size_t n, std::size_t m, std::size_t k, const float* x, std::size_t ldx, const float* b,
             std::size_t ldb, float* y, std::size_t ldy, float alpha = 1.0f, float beta = 0.0f);

// The same product for a thin batch (2 ≤ n < 32), where OpenBLAS's GEMM packs far more than it multiplies
// and its GEMV reads W once per column: W's rows in blocks of 4 against the batch's columns in blocks of
// 4, 16 fp32 accumulators, compiled per ISA level (TQB_MULTIVERSION). Rows [r0, r1) of W only (the
// caller spreads blocks of rows over threads); y points at row r0's column of Y's first row.
void gemm_xwt_thin(std::size_t n, std::size_t k, const float* x, std::size_t ldx, const float* w, std::size_t ldw,
                   std::size_t r0, std::size_t r1, float* y, std::size_t ldy);

// "OpenBLAS 0.3.21 Cooperlake (…)" (library version and the kernel set chosen for this CPU), or "Eigen (why)":
// the result files' dense_blas attribute and `tqbench list kernels`.
std::string dense_blas_description();

}  // namespace tqb
