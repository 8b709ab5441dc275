#include "kernels/linear.hpp"

#include <algorithm>

namespace tqb {
namespace {

class DenseLinear : public Linear {
 public:
  static constexpr std::size_t kGemmBatch = 32;
  DenseLinear(Matrix w, std::string kernel) : w_(std::move(w)), kernel_(std::move(kernel)) {}
  std::size_t in() const override { return w_.cols(); }
  std::size_t out() const override { return w_.rows(); }
  void forward(const float* x, std::size_t n, float* y) const override {
    Eigen::Map<const Matrix> X(x, n, in());
    Eigen::Map<Matrix> Y(y, n, out());
    if (n >= kGemmBatch) {
      Y.noalias() = X * w_.transpose();  // Eigen's GEMM, parallel with OpenMP
      return;
    }
    // Eigen runs a GEMV on one thread, and its GEMM for a handful of columns packs far more than it
    // multiplies. Instead: W's rows in blocks of at most 256 KB spread over the threads, and per block
    // one Eigen GEMV per column of X, so the block is read from memory once and from L2 n − 1 times.
    // (This is the baseline the fused kernels are compared with; it should be a fair one.)
    const Eigen::Index rows = out(), cols = in();
    const Eigen::Index block = std::max<Eigen::Index>(4, (256 << 10) / (cols * static_cast<Eigen::Index>(sizeof(float))));
    const Eigen::Index blocks = (rows + block - 1) / block;
#pragma omp parallel for schedule(static)
    for (Eigen::Index b = 0; b < blocks; ++b) {
      const Eigen::Index r0 = b * block, count = std::min(block, rows - r0);
      for (Eigen::Index t = 0; t < static_cast<Eigen::Index>(n); ++t)
        Y.row(t).segment(r0, count).noalias() = w_.middleRows(r0, count) * X.row(t).transpose();
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
