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
    // multiplies: split the rows of W over the threads instead, each block one Eigen product that
    // reads its rows of W once. (The baseline the fused kernels are compared with: a fair one.)
    const Eigen::Index rows = out(), block = 128, blocks = (rows + block - 1) / block;
#pragma omp parallel for schedule(static)
    for (Eigen::Index b = 0; b < blocks; ++b) {
      const Eigen::Index r0 = b * block, count = std::min(block, rows - r0);
      Y.middleCols(r0, count).noalias() = X * w_.middleRows(r0, count).transpose();
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
