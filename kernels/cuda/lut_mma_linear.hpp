#pragma once
// The CUDA lut_mma kernel behind the model-facing Linear interface (registry entry cuda_lut_mma):
// fp32 activations rounded to bf16 and copied to the GPU, y copied back in fp32. For timing the kernel
// alone, use gpu::LutMmaMatrix on device buffers (harness/kernel_timing, bench/bench_gpu).
#include <memory>

#include "kernels/linear.hpp"

namespace tqb {

// Throws InputError naming why when there is no usable GPU (or the build has no CUDA).
std::unique_ptr<Linear> make_lut_mma_linear(const Quantizer& quantizer, const QuantizedMatrix& q);

}  // namespace tqb
