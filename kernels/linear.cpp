#include "kernels/linear.hpp"

#include <algorithm>

#include "kernels/cpu/dense_blas.hpp"

namespace tqb {
namespace {

class DenseLinear : public Linear {
 public:
  static constexpr std::size_t kGemmBatch = 32;
  DenseLinear(Matrix w, std::string kernel) : w_(std::move(w)), kernel_(std::move(kernel)) {}
  std::size_t in() const override { return w_.cols(); }
  std::size_t out() const override { return w_.rows(); }
  // OpenBLAS, kernels picked at run time for this CPU (kernels/cpu/dense_blas.hpp). This is the baseline
  // the fused kernels are compared with: it should be a fair one.
  void forward(const float* x, std::size_t n, float* y) const override {
    if (n == 1 || n >= kGemmBatch) {  // GEMV (n = 1), or a GEMM wide enough for OpenBLAS's packing
      gemm_xwt(n, out(), in(), x, in(), w_.data(), in(), y, out());
      return;
    }
    // A thin batch: OpenBLAS's GEMM packs far more than it multiplies (3x llama.cpp's time at n = 4 on
    // 4096x14336). Instead W's rows in blocks of at most 256 KB spread over the threads, each block
    // multiplied with the whole batch by the register-blocked gemm_xwt_thin, so the block is read from
    // memory once and from L2 for the other columns.
    const std::size_t rows = out(), cols = in();
    const std::size_t block = std::max<std::size_t>(4, (256 << 10) / (cols * sizeof(float)));
    const std::ptrdiff_t blocks = static_cast<std::ptrdiff_t>((rows + block - 1) / block);
#pragma omp parallel for schedule(static)
    for (std::ptrdiff_t b = 0; b < blocks; ++b) {
      const std::size_t r0 = static_cast<std::size_t>(b) * block, count = std::min(block, rows - r0);
      if (n <= 4) {  // measured faster here (4096x14336 and 14336x4096, Zen 4): one GEMV per column
        for (std::size_t t = 0; t < n; ++t)
          gemm_xwt(1, count, cols, x + t * cols, cols, w_.data() + r0 * cols, cols, y + t * rows + r0, rows);
      } else {
        gemm_xwt_thin(n, cols, x, cols, w_.data(), cols, r0, r0 + count, y + r0, rows);
      }
    }
  }

  std::size_t weight_bytes() const override { return static_cast<std::size_t>(w_.size()) * sizeof(float); }
  std::string kernel() const override { return kernel_; }

 private:
  Matrix w_;
  std::string kernel_;
};

}  // namespace

std::unique_ptr<Linear> make_dense_linear(Matrix w) { return std::make_unique<DenseLinear>(std::move(w), "dense_fp32"); }

std::unique_ptr<Linear> make_dequantized_linear(const Quantizer& quantizer, const QuantizedMatrix& q) {
  Matrix w(q.rows, q.cols);
  quantizer.dequantize(q, w.data());
  return std::make_unique<DenseLinear>(std::move(w), "dequantized_dense");
}

}  // namespace tqb
