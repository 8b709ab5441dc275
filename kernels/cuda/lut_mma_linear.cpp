#include "kernels/cuda/lut_mma_linear.hpp"

#include "common/error.hpp"
#include "kernels/cuda/gpu.hpp"

namespace tqb {

namespace {

class LutMmaLinear final : public Linear {
 public:
  explicit LutMmaLinear(const LutMmaLayout& layout) : m_(layout) {}
  std::size_t in() const override { return m_.cols(); }
  std::size_t out() const override { return m_.rows(); }
  void forward(const float* x, std::size_t n, float* y) const override {
    std::vector<std::uint16_t> xb(n * in());
    for (std::size_t i = 0; i < xb.size(); ++i) xb[i] = to_bf16_bits(x[i]);
    if (xd_.size() < xb.size() * 2) xd_ = gpu::DeviceBuffer(xb.size() * 2);
    if (yd_.size() < n * out() * 4) yd_ = gpu::DeviceBuffer(n * out() * 4);
    xd_.upload(xb.data(), xb.size() * 2);
    m_.multiply(xd_.as<const std::uint16_t>(), n, yd_.as<float>(), nullptr);
    yd_.download(y, n * out() * 4);
  }
  std::size_t weight_bytes() const override { return m_.weight_bytes(); }
  std::string kernel() const override { return "cuda_lut_mma"; }

 private:
  gpu::LutMmaMatrix m_;
  mutable gpu::DeviceBuffer xd_, yd_;
};

}  // namespace

std::unique_ptr<Linear> make_lut_mma_linear(const Quantizer& quantizer, const QuantizedMatrix& q) {
  if (auto why = gpu::unavailable_reason(); !why.empty()) throw InputError("kernel 'cuda_lut_mma' needs a CUDA GPU: " + why);
  return std::make_unique<LutMmaLinear>(make_lut_mma_layout(quantizer, q));
}

}  // namespace tqb
