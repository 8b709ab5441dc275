#pragma once
// Latency of y = Ŵx for one sweep point: the point's quantized matrix run through a kernel of
// kernels/registry.hpp ("auto" = the fastest that supports the format), against the dense fp32
// product of the original matrix in the same process, moments apart. Each repetition is timed on
// its own (steady clock) after two warm-up calls; the summary is the median with min and max.
#include <cstdint>
#include <string>

#include "common/matrix.hpp"
#include "quantizers/quantized_matrix.hpp"
#include "quantizers/quantizer.hpp"

namespace tqb {

// The spec's `timing:` block (experiments/README.md).
struct TimingSpec {
  std::string kernel = "auto";
  std::int64_t batch = 1;         // columns of X: 1 = GEMV
  std::int64_t repetitions = 21;  // timed calls per kernel
};

struct KernelTiming {
  std::string kernel;  // what ran, with its SIMD level, e.g. "fused_i16_avx2"
  double median_us = 0, min_us = 0, max_us = 0;
  double dense_median_us = 0;
  double weight_bytes = 0;  // bytes the kernel holds for the weights
};

// w: the original rows × cols matrix (for the dense baseline); q quantized from it by `quantizer`.
// Throws InputError when the named kernel cannot run the format.
KernelTiming time_kernel(const TimingSpec& spec, const Matrix& w, const Quantizer& quantizer, const QuantizedMatrix& q,
                         std::uint64_t seed);

}  // namespace tqb
