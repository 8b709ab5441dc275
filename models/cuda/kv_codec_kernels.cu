// Encoding and decoding of the GPU's KV codes (kv_codec_kernels.hpp), one block per (position, kv head), one thread per
// coordinate. The encoder repeats turboquant.cpp's arithmetic step by step so that its codes and norms are the CPU
// path's: the signs, the butterflies in hadamard.hpp's order, the product with 1/√d, Σ y² in double over 8 interleaved
// partial sums combined as ((0+1)+(2+3))+((4+5)+(6+7)), each boundary scaled by the float norm and compared with |y|
// (the symmetric rule), the norm rounded through its format; every float operation rounded on its own (the _rn
// intrinsics: nvcc would otherwise contract a product and a sum into one FMA, which the CPU build does not).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "models/cuda/kv_codec_kernels.hpp"
#include "models/cuda/kv_codes.cuh"

namespace tqb::cuda_forward {
namespace {

constexpr int kMaxHd = 256;

__device__ __forceinline__ float through_format(float x, int format) {
  if (format == 1) return __half2float(__float2half_rn(x));
  if (format == 2) return __bfloat162float(__float2bfloat16_rn(x));
  return x;
}

__global__ void kv_encode(const float* x, std::size_t ld, int hd, KvStreamParams p, const float* signs, std::uint8_t* codes,
                          float* norms, std::size_t capacity, std::size_t pos0, const DecodeState* st) {
  __shared__ float y[kMaxHd];
  __shared__ double part[8];
  __shared__ std::uint8_t code[kMaxHd];
  const int i = threadIdx.x, h = blockIdx.y;
  const std::size_t t = blockIdx.x, pos = (st ? static_cast<std::size_t>(st->pos) : pos0) + t;
  if (pos >= capacity) return;  // the whole block (one position)
  const float xi = x[t * ld + static_cast<std::size_t>(h) * hd + i];
  y[i] = p.rotated ? __fmul_rn(xi, signs[h * hd + i]) : xi;
  if (p.rotated) {
    block_fwht(y, hd);
    y[i] = __fmul_rn(y[i], p.scale);
  }
  __syncthreads();
  if (i < 8) {
    double a = 0;
    for (int k = i; k < hd; k += 8) a = __dadd_rn(a, __dmul_rn(static_cast<double>(y[k]), static_cast<double>(y[k])));
    part[i] = a;
  }
  __syncthreads();
  const double ss = __dadd_rn(__dadd_rn(__dadd_rn(part[0], part[1]), __dadd_rn(part[2], part[3])),
                              __dadd_rn(__dadd_rn(part[4], part[5]), __dadd_rn(part[6], part[7])));
  const float norm = static_cast<float>(__dsqrt_rn(ss));
  const int half = (1 << (p.bits - 1)) - 1;
  const float a = fabsf(y[i]);
  int m = 0;
#pragma unroll
  for (int k = 0; k < 7; ++k) m += k < half && a > __fmul_rn(p.bounds[k], norm);  // constant indices: no stack copy of p
  code[i] = static_cast<std::uint8_t>(y[i] > 0.0f ? half + 1 + m : half - m);
  __syncthreads();
  const int bytes = hd * p.bits / 8;
  std::uint8_t* row = codes + (static_cast<std::size_t>(h) * capacity + pos) * bytes;
  if (i < bytes) {
    unsigned acc = 0;
    const int lo = 8 * i;
    for (int c = lo / p.bits; c < hd && c * p.bits < lo + 8; ++c) {
      const int sh = c * p.bits - lo;
      acc |= sh >= 0 ? static_cast<unsigned>(code[c]) << sh : static_cast<unsigned>(code[c]) >> -sh;
    }
    row[i] = static_cast<std::uint8_t>(acc & 0xffu);
  }
  if (i == 0) norms[static_cast<std::size_t>(h) * capacity + pos] = through_format(norm, p.norm_format);
}

template <typename T>
__global__ void kv_decode(const std::uint8_t* codes, const float* norms, int hd, KvStreamParams p, const float* signs,
                          std::size_t capacity, T* dst) {
  __shared__ float y[kMaxHd];
  __shared__ float lut[16];
  const int i = threadIdx.x, h = blockIdx.y, nkv = gridDim.y;
  const std::size_t t = blockIdx.x;
  if (i < 16) lut[i] = param_at(p.lut, i);
  __syncthreads();
  const int bytes = hd * p.bits / 8, bit = i * p.bits;
  const std::uint8_t* row = codes + (static_cast<std::size_t>(h) * capacity + t) * bytes;
  const unsigned window = row[bit / 8] | (static_cast<unsigned>(row[bit / 8 + 1]) << 8);  // the buffer is padded
  const unsigned c = (window >> (bit % 8)) & ((1u << p.bits) - 1u);
  y[i] = __fmul_rn(lut[c], norms[static_cast<std::size_t>(h) * capacity + t]);
  if (p.rotated) {
    block_fwht(y, hd);
    y[i] = __fmul_rn(__fmul_rn(y[i], p.scale), signs[h * hd + i]);
  }
  const float v = y[i];
  T* out = dst + t * static_cast<std::size_t>(nkv) * hd + static_cast<std::size_t>(h) * hd + i;
  if constexpr (sizeof(T) == 2)
    *out = __float2bfloat16_rn(v);
  else
    *out = v;
}

}  // namespace

std::size_t kv_code_buffer_bytes(int nkv, int hd, int bits, std::size_t capacity) {
  return static_cast<std::size_t>(nkv) * capacity * static_cast<std::size_t>(hd * bits / 8) + 16;
}

void launch_kv_encode(const float* x, std::size_t n, std::size_t ld, int nkv, int hd, const KvStreamParams& p, const float* signs,
                      std::uint8_t* codes, float* norms, std::size_t capacity, std::size_t pos0, const DecodeState* state) {
  if (n == 0) return;
  kv_encode<<<dim3(static_cast<unsigned>(n), static_cast<unsigned>(nkv)), static_cast<unsigned>(hd)>>>(x, ld, hd, p, signs, codes, norms,
                                                                                                       capacity, pos0, state);
}

void launch_kv_decode(const std::uint8_t* codes, const float* norms, std::size_t n, int nkv, int hd, const KvStreamParams& p,
                      const float* signs, std::size_t capacity, void* dst, bool bf16) {
  if (n == 0) return;
  const dim3 grid(static_cast<unsigned>(n), static_cast<unsigned>(nkv));
  if (bf16)
    kv_decode<<<grid, static_cast<unsigned>(hd)>>>(codes, norms, hd, p, signs, capacity, static_cast<__nv_bfloat16*>(dst));
  else
    kv_decode<<<grid, static_cast<unsigned>(hd)>>>(codes, norms, hd, p, signs, capacity, static_cast<float*>(dst));
}

}  // namespace tqb::cuda_forward
