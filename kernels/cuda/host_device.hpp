#pragma once
// TQB_HOST_DEVICE: a function the CUDA kernels and the host (and its tests, on machines without a GPU) both call.
#if defined(__CUDACC__)
#define TQB_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define TQB_HOST_DEVICE inline
#endif
