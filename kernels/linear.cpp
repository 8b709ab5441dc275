#include "kernels/linear.hpp"

namespace tqb {
namespace {

class DenseLinear : public Linear {
 public:
  DenseLinear(Matrix w, std::string kernel) : w_(std::move(w)), kernel_(std::move(kernel)) {}
  std::size_t in() const override { return w_.cols(); }
  std::size_t out() const override { return w_.rows(); }
  void forward(const float* x, std::size_t n, float* y) const override {
    Eigen::Map<const Matrix> X(x, n, in());
    Eigen::Map<Matrix> Y(y, n, out());
    Y.noalias() = X * w_.transpose();
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
