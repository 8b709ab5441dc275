#pragma once
// What timing a kernel measures (harness/kernel_timing.hpp runs it for a sweep point's latency metrics), and
// the device-side timer a GPU kernel's registry entry supplies (kernels/registry.hpp, LinearKernel::time_on_device):
// the kernel and its dense baseline on device buffers, CUDA events, the L2 flushed before each call.
#include <cstdint>
#include <string>
#include <vector>

#include "common/matrix.hpp"
#include "common/timing_summary.hpp"
#include "quantizers/quantized_matrix.hpp"
#include "quantizers/quantizer.hpp"

namespace tqb {

struct KernelTiming {
  std::string kernel;  // what ran, with its SIMD level or variant, e.g. "fused_i16_avx2", "cuda_lut_mma:small"
  double median_us = 0, min_us = 0, max_us = 0;
  double dense_median_us = 0;    // the dense baseline (fp32 on the CPU; cuBLAS bf16 on a GPU), same batch
  double weight_bytes = 0;       // bytes the kernel holds for the weights
  double device_peak_bytes = 0;  // GPU: the allocator's peak over the timing (weights, workspaces, baseline)
};

// w: the original rows × cols matrix (for the baseline); q quantized from it by `quantizer`; batch rows of
// activations drawn from `seed`; `repetitions` timed calls of each.
struct DeviceTimingRequest {
  std::size_t batch = 1;
  int repetitions = 21;
  std::uint64_t seed = 0;
};

}  // namespace tqb
