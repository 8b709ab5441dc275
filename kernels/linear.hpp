#pragma once
// The kernel interface every linear layer of a model goes through: Y = X Wᵀ for a batch of n rows.
// Implementations: dense fp32 (OpenBLAS, kernels/cpu/dense_blas.hpp) and "dequantize, then dense" from a
// QuantizedMatrix — the reference every fused kernel (CPU SIMD, CUDA) is checked against.
#include <cstddef>
#include <memory>
#include <string>

#include "common/matrix.hpp"
#include "quantizers/quantizer.hpp"

namespace tqb {

class Linear {
 public:
  virtual ~Linear() = default;
  virtual std::size_t in() const = 0;
  virtual std::size_t out() const = 0;
  // x: n × in() row-major; y: n × out() row-major (overwritten).
  virtual void forward(const float* x, std::size_t n, float* y) const = 0;
  // Bytes the layer holds for its weights while it runs.
  virtual std::size_t weight_bytes() const = 0;
  virtual std::string kernel() const = 0;  // "dense_fp32", "dequantized_dense", ...
};

// W: out × in. Takes ownership.
std::unique_ptr<Linear> make_dense_linear(Matrix w);
// Dequantizes q once with its quantizer's reference dequantizer, then multiplies densely.
std::unique_ptr<Linear> make_dequantized_linear(const Quantizer& quantizer, const QuantizedMatrix& q);

}  // namespace tqb
