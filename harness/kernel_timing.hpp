#pragma once
// Latency of y = Ŵx for one sweep point: the point's quantized matrix run through a kernel of
// kernels/registry.hpp ("auto" = the fastest that supports the format), against the dense product of
// the original matrix in the same process, moments apart.
// - device cpu: the dense baseline is fp32 (Eigen); each repetition is timed on its own (steady clock)
//   after two warm-up calls.
// - device cuda: the kernel is cuda_lut_mma on device buffers (bf16 activations), the baseline cuBLAS
//   bf16; CUDA events, the L2 flushed before each call (kernels/cuda/gpu.hpp time_calls).
// The summary is the median with min and max.
#include <cstdint>
#include <string>

#include "common/matrix.hpp"
#include "quantizers/quantized_matrix.hpp"
#include "quantizers/quantizer.hpp"

namespace tqb {

// The spec's `timing:` block (experiments/README.md).
struct TimingSpec {
  std::string device = "cpu";  // cpu | cuda
  std::string kernel = "auto";  // with device cuda: auto or cuda_lut_mma
  std::int64_t batch = 1;         // columns of X: 1 = GEMV
  std::int64_t repetitions = 21;  // timed calls per kernel
};

struct KernelTiming {
  std::string kernel;  // what ran, with its SIMD level, e.g. "fused_i16_avx2"
  double median_us = 0, min_us = 0, max_us = 0;
  double dense_median_us = 0;
  double weight_bytes = 0;  // bytes the kernel holds for the weights
  double device_peak_bytes = 0;  // device cuda: the allocator's peak over the point (weights, workspaces, baseline)
};

// w: the original rows × cols matrix (for the dense baseline); q quantized from it by `quantizer`.
// Throws InputError when the named kernel cannot run the format, or the device is cuda and there is
// no usable GPU (the message says why).
KernelTiming time_kernel(const TimingSpec& spec, const Matrix& w, const Quantizer& quantizer, const QuantizedMatrix& q,
                         std::uint64_t seed);

}  // namespace tqb
