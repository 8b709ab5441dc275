#pragma once
// CUDA and cuBLAS return codes as exceptions naming the call and the place: every call is checked,
// and every launch is followed by a check of cudaGetLastError.
#include <cuda_runtime.h>
#include <stdexcept>
#include <string>

namespace tqb::gpu {

inline void cuda_check(cudaError_t e, const char* what, const char* file, int line) {
  if (e != cudaSuccess)
    throw std::runtime_error(std::string("CUDA error in ") + what + " (" + file + ":" + std::to_string(line) + "): " + cudaGetErrorName(e) + ": " +
                             cudaGetErrorString(e));
}

}  // namespace tqb::gpu

#define TQB_CUDA_CHECK(call) ::tqb::gpu::cuda_check((call), #call, __FILE__, __LINE__)
#define TQB_CUDA_CHECK_LAUNCH(what) ::tqb::gpu::cuda_check(cudaGetLastError(), what, __FILE__, __LINE__)
