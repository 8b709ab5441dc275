// The CUDA kernels of the GPU forward backend (cuda_forward.cpp calls them through forward_kernels.hpp).
// Simple and exact first versions: fp32 activations, sums in fp32, one block per row, vector or (query, head).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "models/cuda/forward_kernels.hpp"

namespace tqb::cuda_forward {
namespace {

unsigned blocks_for(std::size_t n, unsigned threads = 256) { return static_cast<unsigned>((n + threads - 1) / threads); }

// Every thread's v combined over the block with op (blockDim.x a multiple of 32): lanes by shuffles, then the
// warps' partials in warp order on thread 0, so the order is fixed. Every thread gets the result. partial: 32
// shared values, free to reuse once the call returns.
template <typename T, typename Op>
__device__ T block_reduce(T v, Op op, T* partial) {
  for (int o = 16; o > 0; o /= 2) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  __syncthreads();  // an earlier call's result is read by every thread before partial is written again
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    T r = partial[0];
    for (unsigned w = 1; w < blockDim.x / 32; ++w) r = op(r, partial[w]);
    partial[0] = r;
  }
  __syncthreads();
  return partial[0];
}

struct Max {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};
struct Sum {
  template <typename T>
  __device__ T operator()(T a, T b) const { return a + b; }
};

__global__ void to_bf16(const float* x, __nv_bfloat16* y, std::size_t n) {
  const std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x;
  if (i < n) y[i] = __float2bfloat16_rn(x[i]);
}

template <typename T>
__device__ float as_float(T v);
template <>
__device__ float as_float(float v) { return v; }
template <>
__device__ float as_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__global__ void embed_rows(const int* tokens, const T* table, std::size_t d, float scale, float* x) {
  const std::size_t t = blockIdx.x;
  for (std::size_t k = threadIdx.x; k < d; k += blockDim.x) x[t * d + k] = as_float(table[tokens[t] * d + k]) * scale;
}

// Row t of sequence s (x: seqs × n rows of `row` floats) to position pos0 + t of that sequence's cache rows (bf16).
__global__ void kv_write_bf16(const float* x, std::size_t seqs, std::size_t n, std::size_t row, __nv_bfloat16* cache,
                              std::size_t capacity, std::size_t pos0) {
  const std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x;
  if (i >= seqs * n * row) return;
  const std::size_t s = i / (n * row), t = i / row % n, c = i % row;
  cache[(s * capacity + pos0 + t) * row + c] = __float2bfloat16_rn(x[i]);
}

// The RMSNorm kernels' block sum of every thread's ss (a shuffle tree within each warp, then one over the warps'
// partials; the same order in both kernels, and not block_reduce's serial one over the warps, which would change the
// bits the GPU tests ran with), returned to every thread. part: 32 shared floats.
__device__ __forceinline__ float rms_sum(float ss, float* part) {
  for (int o = 16; o > 0; o /= 2) ss += __shfl_xor_sync(0xffffffffu, ss, o);
  if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = ss;
  __syncthreads();
  if (threadIdx.x < 32) {
    float v = threadIdx.x < blockDim.x / 32 ? part[threadIdx.x] : 0.0f;
    for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (threadIdx.x == 0) part[0] = v;
  }
  __syncthreads();
  return part[0];
}

// One block per vector: y = x / sqrt(mean(x²) + eps) · w (sums in fp32, the CPU's in double); yb, when given, gets
// the same values in bf16 (the next GEMM's input, so that no separate rounding pass reads y again).
__global__ void rms_norm_rows(const float* x, std::size_t d, const float* w, float eps, float* y, __nv_bfloat16* yb) {
  __shared__ float part[32];
  const float* xi = x + blockIdx.x * d;
  float ss = 0;
  for (std::size_t k = threadIdx.x; k < d; k += blockDim.x) ss += xi[k] * xi[k];
  const float s = rsqrtf(rms_sum(ss, part) / static_cast<float>(d) + eps);
  float* yi = y + blockIdx.x * d;
  __nv_bfloat16* ybi = yb ? yb + blockIdx.x * d : nullptr;
  for (std::size_t k = threadIdx.x; k < d; k += blockDim.x) {
    const float v = xi[k] * s * w[k];
    yi[k] = v;
    if (ybi) ybi[k] = __float2bfloat16_rn(v);
  }
}

// The same with each thread's R float4s of the vector held in registers between the two passes (one round trip to
// memory for x instead of a loop of them: a 4096-float decode row took 8 µs in a 256-thread loop), for d a multiple
// of 4 up to 4·R·1024. One warp per vector for a head's q/k norm (d = 128), up to 1024 threads for a model's width.
template <int R>
__global__ void rms_norm_rows_vec(const float* x, int d, const float* w, float eps, float* y, __nv_bfloat16* yb) {
  __shared__ float part[32];
  const int n4 = d / 4;
  const std::size_t row = static_cast<std::size_t>(blockIdx.x) * d;
  const float4* xi = reinterpret_cast<const float4*>(x + row);
  float4 v[R];
  float ss = 0;
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int i = threadIdx.x + r * blockDim.x;
    v[r] = i < n4 ? xi[i] : make_float4(0, 0, 0, 0);
    ss += v[r].x * v[r].x + v[r].y * v[r].y + v[r].z * v[r].z + v[r].w * v[r].w;
  }
  const float s = rsqrtf(rms_sum(ss, part) / static_cast<float>(d) + eps);
  const float4* w4 = reinterpret_cast<const float4*>(w);
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int i = threadIdx.x + r * blockDim.x;
    if (i >= n4) break;
    const float4 ww = w4[i];
    const float4 o = make_float4(v[r].x * s * ww.x, v[r].y * s * ww.y, v[r].z * s * ww.z, v[r].w * s * ww.w);
    reinterpret_cast<float4*>(y + row)[i] = o;
    if (yb) {
      __nv_bfloat162* b = reinterpret_cast<__nv_bfloat162*>(yb + row) + 2 * i;
      b[0] = __floats2bfloat162_rn(o.x, o.y);
      b[1] = __floats2bfloat162_rn(o.z, o.w);
    }
  }
}

__global__ void add_rows(float* x, const float* b, std::size_t rows, std::size_t cols) {
  const std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x;
  if (i < rows * cols) x[i] += b[i % cols];
}

__global__ void add_into(float* x, const float* y, std::size_t n) {
  const std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x;
  if (i < n) x[i] += y[i];
}

__global__ void to_double(const float* x, double* y, std::size_t n) {
  const std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x;
  if (i < n) y[i] = static_cast<double>(x[i]);
}

// One thread a column, the rows in order: the sums do not depend on the launch (no atomics).
__global__ void column_abs_sums(const float* x, std::size_t rows, std::size_t cols, double* sums) {
  const std::size_t c = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x;
  if (c >= cols) return;
  double a = 0;
  for (std::size_t r = 0; r < rows; ++r) a += fabs(static_cast<double>(x[r * cols + c]));
  sums[c] += a;
}

// cs, sn: seq_rows × half, the CPU's values (cos and sin of the angle in double, then float); row t of x is at
// the position of table row t mod seq_rows.
__global__ void rope_rows(float* x, std::size_t n, std::size_t seq_rows, int heads, int hd, bool interleaved, const float* cs,
                          const float* sn) {
  const int half = hd / 2;
  const std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x;
  if (i >= n * heads * half) return;
  const std::size_t row = i / (heads * half), t = row % seq_rows;
  const int h = static_cast<int>(i / half % heads), p = static_cast<int>(i % half);
  float* v = x + (row * heads + h) * hd;
  const int a0 = interleaved ? 2 * p : p, a1 = interleaved ? 2 * p + 1 : p + half;
  const float c = cs[t * half + p], s = sn[t * half + p], x0 = v[a0], x1 = v[a1];
  v[a0] = x0 * c - x1 * s;
  v[a1] = x0 * s + x1 * c;
}

// One block per (query t, head, sequence): scores over the visible keys in shared memory, softmax, then S·V, in
// fp32 (the exact mode; flash_attention.cu is the tensor-core one).
__global__ void attention_rows(const float* q, const float* K, const float* V, float* out, std::size_t n, std::size_t pos0,
                               std::size_t capacity, int nh, int nkv, int hd, int window, float scale) {
  extern __shared__ float shared[];
  const int hh = blockIdx.y, group = nh / nkv, kvh = hh / group;
  const std::size_t t = blockIdx.x, visible = pos0 + t + 1;
  const std::size_t first = window > 0 && visible > static_cast<std::size_t>(window) ? visible - window : 0;
  const std::size_t ldq = static_cast<std::size_t>(nh) * hd, ldkv = static_cast<std::size_t>(nkv) * hd;
  q += blockIdx.z * n * ldq;
  out += blockIdx.z * n * ldq;
  K += blockIdx.z * capacity * ldkv;
  V += blockIdx.z * capacity * ldkv;
  float* qs = shared;        // hd
  float* s = shared + hd;    // visible - first
  __shared__ float red[32];
  for (int k = threadIdx.x; k < hd; k += blockDim.x) qs[k] = q[t * ldq + hh * hd + k];
  __syncthreads();
  float mx = -INFINITY;
  for (std::size_t j = first + threadIdx.x; j < visible; j += blockDim.x) {
    const float* kj = K + j * ldkv + kvh * hd;
    float acc = 0;
    for (int k = 0; k < hd; ++k) acc += qs[k] * kj[k];
    acc *= scale;
    s[j - first] = acc;
    mx = fmaxf(mx, acc);
  }
  const float m = block_reduce(mx, Max{}, red);
  float sum = 0;
  for (std::size_t j = first + threadIdx.x; j < visible; j += blockDim.x) {
    const float e = __expf(s[j - first] - m);
    s[j - first] = e;
    sum += e;
  }
  const float inv = 1.0f / block_reduce(sum, Sum{}, red);
  for (int k = threadIdx.x; k < hd; k += blockDim.x) {
    float acc = 0;
    for (std::size_t j = first; j < visible; ++j) acc += s[j - first] * V[j * ldkv + kvh * hd + k];
    out[t * ldq + hh * hd + k] = acc * inv;
  }
}

__device__ __forceinline__ float activation(float x, bool gelu) {
  return gelu ? 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x))) : x / (1.0f + expf(-x));
}

__global__ void glu_rows(float* g, const float* u, std::size_t n, bool gelu) {
  const std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x;
  if (i < n) g[i] = activation(g[i], gelu) * u[i];
}

// The same on bf16 pairs (what a bf16 GEMM wrote), in fp32, rounded once.
__global__ void glu_bf16_pairs(__nv_bfloat162* g, const __nv_bfloat162* u, std::size_t pairs, bool gelu) {
  const std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x;
  if (i >= pairs) return;
  const float2 a = __bfloat1622float2(g[i]), b = __bfloat1622float2(u[i]);
  g[i] = __floats2bfloat162_rn(activation(a.x, gelu) * b.x, activation(a.y, gelu) * b.y);
}

// One block per row: −(float)(z[t] − lse) with lse = max + log Σ exp(z − max) summed in double, as the CPU scores.
__global__ void nll_rows(const float* logits, std::size_t vocab, const int* targets, double* nll) {
  __shared__ float fred[32];
  __shared__ double dred[32];
  const float* z = logits + blockIdx.x * vocab;
  float mx = -INFINITY;
  for (std::size_t v = threadIdx.x; v < vocab; v += blockDim.x) mx = fmaxf(mx, z[v]);
  const float m = block_reduce(mx, Max{}, fred);
  double se = 0;
  for (std::size_t v = threadIdx.x; v < vocab; v += blockDim.x) se += exp(static_cast<double>(z[v] - m));
  const double total = block_reduce(se, Sum{}, dred);
  if (threadIdx.x == 0) {
    const double lse = m + log(total);
    const int target = targets[blockIdx.x];
    nll[blockIdx.x] = target < 0 ? 0.0 : -static_cast<double>(static_cast<float>(z[target] - lse));
  }
}

}  // namespace

void launch_to_bf16(const float* x, std::uint16_t* y, std::size_t n) {
  to_bf16<<<blocks_for(n), 256>>>(x, reinterpret_cast<__nv_bfloat16*>(y), n);
}
void launch_embed(const int* tokens, std::size_t n, const float* table, std::size_t d, float scale, float* x) {
  embed_rows<<<static_cast<unsigned>(n), 256>>>(tokens, table, d, scale, x);
}
void launch_embed_bf16(const int* tokens, std::size_t n, const std::uint16_t* table, std::size_t d, float scale, float* x) {
  embed_rows<<<static_cast<unsigned>(n), 256>>>(tokens, reinterpret_cast<const __nv_bfloat16*>(table), d, scale, x);
}
void launch_kv_write_bf16(const float* x, std::size_t seqs, std::size_t n, std::size_t row, std::uint16_t* cache, std::size_t capacity,
                          std::size_t pos0) {
  kv_write_bf16<<<blocks_for(seqs * n * row), 256>>>(x, seqs, n, row, reinterpret_cast<__nv_bfloat16*>(cache), capacity, pos0);
}
void launch_rms_norm(const float* x, std::size_t vectors, std::size_t d, const float* w, float eps, float* y, std::uint16_t* y_bf16) {
  auto* yb = reinterpret_cast<__nv_bfloat16*>(y_bf16);
  const auto aligned = [](const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; };
  const std::size_t n4 = d / 4;
  if (d % 4 == 0 && n4 <= 4 * 1024 && aligned(x) && aligned(y) && aligned(w) && (!yb || reinterpret_cast<std::uintptr_t>(yb) % 8 == 0)) {
    const int R = n4 <= 1024 ? 1 : n4 <= 2048 ? 2 : 4;
    const unsigned threads = static_cast<unsigned>(std::min<std::size_t>(1024, ((n4 + R - 1) / R + 31) / 32 * 32));
    const int di = static_cast<int>(d);
    const auto v = static_cast<unsigned>(vectors);
    if (R == 1)
      rms_norm_rows_vec<1><<<v, threads>>>(x, di, w, eps, y, yb);
    else if (R == 2)
      rms_norm_rows_vec<2><<<v, threads>>>(x, di, w, eps, y, yb);
    else
      rms_norm_rows_vec<4><<<v, threads>>>(x, di, w, eps, y, yb);
    return;
  }
  rms_norm_rows<<<static_cast<unsigned>(vectors), 256>>>(x, d, w, eps, y, yb);
}
void launch_add_rows(float* x, const float* b, std::size_t rows, std::size_t cols) {
  add_rows<<<blocks_for(rows * cols), 256>>>(x, b, rows, cols);
}
void launch_add(float* x, const float* y, std::size_t n) { add_into<<<blocks_for(n), 256>>>(x, y, n); }
void launch_to_double(const float* x, double* y, std::size_t n) {
  if (n) to_double<<<blocks_for(n), 256>>>(x, y, n);
}
void launch_column_abs_sums(const float* x, std::size_t rows, std::size_t cols, double* sums) {
  if (cols) column_abs_sums<<<blocks_for(cols, 128), 128>>>(x, rows, cols, sums);
}
void launch_rope(float* x, std::size_t n, std::size_t seq_rows, int heads, int hd, bool interleaved, const float* cs, const float* sn) {
  rope_rows<<<blocks_for(n * heads * (hd / 2)), 256>>>(x, n, seq_rows, heads, hd, interleaved, cs, sn);
}
bool launch_attention(const float* q, const float* K, const float* V, float* out, std::size_t n, std::size_t sequences, std::size_t pos0,
                      std::size_t capacity, int nh, int nkv, int hd, int window, float scale) {
  const std::size_t total = pos0 + n, keys = window > 0 && total > static_cast<std::size_t>(window) ? window : total;
  const std::size_t shared = (static_cast<std::size_t>(hd) + keys) * 4;
  constexpr std::size_t kMaxShared = 200 * 1024;
  if (shared > kMaxShared) return false;
  static const bool configured = cudaFuncSetAttribute(attention_rows, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                      static_cast<int>(kMaxShared)) == cudaSuccess;
  (void)configured;
  attention_rows<<<dim3(static_cast<unsigned>(n), static_cast<unsigned>(nh), static_cast<unsigned>(sequences)), 128, shared>>>(
      q, K, V, out, n, pos0, capacity, nh, nkv, hd, window, scale);
  return true;
}
void launch_nll(const float* logits, std::size_t rows, std::size_t vocab, const int* targets, double* nll) {
  nll_rows<<<static_cast<unsigned>(rows), 256>>>(logits, vocab, targets, nll);
}
void launch_glu(float* g, const float* u, std::size_t n, bool gelu) { glu_rows<<<blocks_for(n), 256>>>(g, u, n, gelu); }
void launch_glu_bf16(std::uint16_t* g, const std::uint16_t* u, std::size_t n, bool gelu) {
  glu_bf16_pairs<<<blocks_for(n / 2), 256>>>(reinterpret_cast<__nv_bfloat162*>(g), reinterpret_cast<const __nv_bfloat162*>(u), n / 2, gelu);
}

}  // namespace tqb::cuda_forward
