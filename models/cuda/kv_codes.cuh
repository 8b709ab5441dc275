#pragma once
// Device helpers of the GPU's KV codes (kv_codec_kernels.hpp): the Walsh–Hadamard butterflies in the order of
// quantizers/hadamard.hpp (the textbook loop: partners 1, 2, 4, … apart, a + b below and a − b above, so that the
// encoder's and the CPU's rotated values are the same floats), and a code's bits out of a row held in registers.
#include <cuda_runtime.h>

#include <cstdint>

namespace tqb::cuda_forward {

// x[0..n) ← H x (unnormalized) in shared memory, one element per thread of the block's first n (n a power of two);
// every thread of the block calls it.
__device__ __forceinline__ void block_fwht(float* x, int n) {
  const int i = threadIdx.x;
  for (int h = 1; h < n; h *= 2) {
    __syncthreads();
    if (i < n && (i & h) == 0) {
      const float a = x[i], b = x[i + h];
      x[i] = __fadd_rn(a, b);
      x[i + h] = __fsub_rn(a, b);
    }
  }
  __syncthreads();
}

// The same over one warp: x[0..N) in shared memory, N/2 butterflies a stage spread over the lanes.
template <int N>
__device__ __forceinline__ void warp_fwht(float* x, int lane) {
#pragma unroll
  for (int h = 1; h < N; h *= 2) {
#pragma unroll
    for (int p = lane; p < N / 2; p += 32) {
      const int i = (p / h) * 2 * h + p % h;
      const float a = x[i], b = x[i + h];
      x[i] = a + b;
      x[i + h] = a - b;
    }
    __syncwarp();
  }
}

// a[i] of an array in a kernel's parameters, i known only at run time: an unrolled select, so the parameters are read
// where they are (constant memory) instead of being copied to the thread's stack for an indexed load.
template <int N>
__device__ __forceinline__ float param_at(const float (&a)[N], int i) {
  float r = 0;
#pragma unroll
  for (int k = 0; k < N; ++k)
    if (k == i) r = a[k];
  return r;
}

// Code i of BITS bits from a row of packed codes held as 32-bit words (bitpack.hpp: little-endian, least significant
// bit first); i known at compile time after unrolling, so the words stay in registers.
template <int BITS, int WORDS>
__device__ __forceinline__ unsigned code_at(const std::uint32_t (&w)[WORDS], int i) {
  const int bit = i * BITS, wi = bit / 32, sh = bit % 32;
  unsigned c = w[wi] >> sh;
  if (sh + BITS > 32 && wi + 1 < WORDS) c |= w[wi + 1] << (32 - sh);
  return c & ((1u << BITS) - 1u);
}

}  // namespace tqb::cuda_forward
