#include "kernels/linear.hpp"

#include <algorithm>

#include "kernels/cpu/dense_blas.hpp"

namespace tqb {
namespace {

class DenseLinear : public Linear {
 public:
  DenseLinear(Matrix w, std::string kernel) : w_(std::move(w)), kernel_(std::move(kernel)) {}
  std::size_t in() const override { return w_.cols(); }
  std::size_t out() const override { return w_.rows(); }
  // OpenBLAS's GEMV (n = 1) or GEMM, kernels picked at run time for this CPU (kernels/cpu/dense_blas.hpp).
  // This is the baseline the fused kernels are compared with: it should be a fair one.
  void forward(const float* x, std::size_t n, float* y) const override {
    gemm_xwt(n, out(), in(), x, in(), w_.data(), in(), y, out());
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
