#pragma once
// cuda_lut_mma's device timer (its registry entry's time_on_device): the packed layout and cuBLAS bf16 on
// the original weights, both on bf16 device activations, timed with CUDA events after an L2 flush.
#include "kernels/device_timing.hpp"

namespace tqb {

// Throws InputError when there is no usable GPU or the format is not one the kernel reads.
KernelTiming time_lut_mma(const Quantizer& quantizer, const QuantizedMatrix& q, const Matrix& w, const DeviceTimingRequest& request);

}  // namespace tqb
