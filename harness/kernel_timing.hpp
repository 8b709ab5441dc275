#pragma once
// Latency of y = Ŵx for one sweep point: the point's quantized matrix run through a kernel of
// kernels/registry.hpp ("auto" = the fastest that supports the format), against the dense product of
// the original matrix in the same process, moments apart.
// - device cpu: the dense baseline is fp32 (OpenBLAS, kernels/cpu/dense_blas.hpp); each repetition is timed on its own (steady clock)
//   after two warm-up calls.
// - device cuda: a GPU kernel of the registry ("auto" = the first that reads the format), timed by its
//   entry's time_on_device (cuda_lut_mma: device buffers, bf16 activations, the baseline cuBLAS bf16,
//   CUDA events, the L2 flushed before each call).
// The summary is the median with min and max.
#include <cstdint>
#include <string>
#include <vector>

#include "common/matrix.hpp"
#include "kernels/device_timing.hpp"
#include "quantizers/quantized_matrix.hpp"
#include "quantizers/quantizer.hpp"

namespace tqb {

// The spec's `timing:` block (experiments/README.md).
struct TimingSpec {
  std::string device = "cpu";  // cpu | cuda
  std::string kernel = "auto";  // with device cuda: auto or a GPU kernel (cuda_lut_mma)
  std::int64_t batch = 1;         // columns of X: 1 = GEMV
  std::int64_t repetitions = 21;  // timed calls per kernel
  // `kernel: [a, b]` and `batch: [1, 16]` in a spec: evaluation axes. Every (data, quantizer, seed) is
  // quantized once and timed under each kernel × batch (harness/sweep.cpp); kernel and batch above are the
  // first values (the file's timing_kernel and timing_batch attributes).
  std::vector<std::string> kernels{"auto"};
  std::vector<std::int64_t> batches{1};
  bool swept() const { return kernels.size() > 1 || batches.size() > 1; }
};


// w: the original rows × cols matrix (for the dense baseline); q quantized from it by `quantizer`.
// Throws InputError when the named kernel cannot run the format, or the device is cuda and there is
// no usable GPU (the message says why).
KernelTiming time_kernel(const TimingSpec& spec, const Matrix& w, const Quantizer& quantizer, const QuantizedMatrix& q,
                         std::uint64_t seed);

}  // namespace tqb
