// One decode step's kernels with the token and position in device memory (decode_kernels.hpp). The attention is
// flash-decoding's split over the keys (Dao et al. 2023, "Flash-Decoding for long-context inference"): at one query
// per head the prefill kernel's 64-row tiles would idle, so each block takes a key range of one KV head for all the
// query heads that read it (GQA: K and V are read once), keeps an online softmax per head, and a second kernel
// combines the ranges. Sums and softmax in fp32; the cache is read in its own precision.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "models/cuda/decode_kernels.hpp"

namespace tqb::cuda_forward {
namespace {

constexpr int kWarps = 4, kThreads = 32 * kWarps;
constexpr int kHeadsPerBlock = 8;  // query heads of one KV head per block (blockIdx.z covers larger groups)
constexpr int kMaxPer = 8;         // head_dim ≤ 256: each lane holds dims lane, lane + 32, …
constexpr std::size_t kMaxSplits = 128, kMinSplitKeys = 64;

std::size_t split_keys(std::size_t capacity) {
  const std::size_t by_count = (capacity + kMaxSplits - 1) / kMaxSplits;
  return by_count > kMinSplitKeys ? by_count : kMinSplitKeys;
}
std::size_t splits_for(std::size_t capacity) { return (capacity + split_keys(capacity) - 1) / split_keys(capacity); }

__device__ __forceinline__ float load(const float* p) { return *p; }
__device__ __forceinline__ float load(const __nv_bfloat16* p) { return __bfloat162float(*p); }

__global__ void rope_tables_at(const DecodeState* st, const float* inv_freq, int half, float* cs, float* sn) {
  const double pos = st->pos;
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    const double a = pos * static_cast<double>(inv_freq[i]);
    cs[i] = static_cast<float>(cos(a));
    sn[i] = static_cast<float>(sin(a));
  }
}

template <typename T>
__global__ void kv_write_at(const float* x, std::size_t row, T* cache, const DecodeState* st) {
  const std::size_t c = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x;
  if (c >= row) return;
  if constexpr (sizeof(T) == 2)
    cache[static_cast<std::size_t>(st->pos) * row + c] = __float2bfloat16_rn(x[c]);
  else
    cache[static_cast<std::size_t>(st->pos) * row + c] = x[c];
}

// Block (KV head, key range, head group): partial[head][range] = (max score, Σ exp(s − max), Σ exp(s − max) v).
template <typename KV>
__global__ void __launch_bounds__(kThreads) decode_attention_split(const float* q, const KV* K, const KV* V, const DecodeState* st,
                                                                   std::size_t chunk, int splits, int nh, int nkv, int hd, int window,
                                                                   float scale, float* partial) {
  __shared__ float qs[kHeadsPerBlock][kMaxPer * 32];
  __shared__ float wm[kWarps][kHeadsPerBlock], wl[kWarps][kHeadsPerBlock];
  __shared__ float wacc[kWarps][kHeadsPerBlock][kMaxPer * 32];
  const int kvh = blockIdx.x, split = blockIdx.y, group = nh / nkv, g0 = blockIdx.z * kHeadsPerBlock;
  const int gn = min(kHeadsPerBlock, group - g0), warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const std::size_t pos = static_cast<std::size_t>(st->pos), visible = pos + 1;
  const std::size_t first = window > 0 && visible > static_cast<std::size_t>(window) ? visible - window : 0;
  const std::size_t begin = max(split * chunk, first), end = min((split + 1) * chunk, visible);
  const std::size_t ld = static_cast<std::size_t>(nkv) * hd;
  for (int i = threadIdx.x; i < gn * hd; i += kThreads)
    qs[i / hd][i % hd] = q[static_cast<std::size_t>(kvh * group + g0 + i / hd) * hd + i % hd] * scale;
  __syncthreads();
  float m[kHeadsPerBlock], l[kHeadsPerBlock], acc[kHeadsPerBlock][kMaxPer];
#pragma unroll
  for (int g = 0; g < kHeadsPerBlock; ++g) {
    m[g] = -INFINITY;
    l[g] = 0;
#pragma unroll
    for (int e = 0; e < kMaxPer; ++e) acc[g][e] = 0;
  }
  for (std::size_t j = begin + warp; j < end; j += kWarps) {
    const KV* kr = K + j * ld + static_cast<std::size_t>(kvh) * hd;
    const KV* vr = V + j * ld + static_cast<std::size_t>(kvh) * hd;
    float kx[kMaxPer], vx[kMaxPer];
#pragma unroll
    for (int e = 0; e < kMaxPer; ++e) {
      const int d = lane + 32 * e;
      kx[e] = d < hd ? load(kr + d) : 0.0f;
      vx[e] = d < hd ? load(vr + d) : 0.0f;
    }
#pragma unroll
    for (int g = 0; g < kHeadsPerBlock; ++g) {
      if (g >= gn) break;
      float s = 0;
#pragma unroll
      for (int e = 0; e < kMaxPer; ++e) s += (lane + 32 * e < hd ? qs[g][lane + 32 * e] : 0.0f) * kx[e];
      for (int o = 16; o > 0; o /= 2) s += __shfl_xor_sync(0xffffffffu, s, o);
      const float mn = fmaxf(m[g], s), c = __expf(m[g] - mn), p = __expf(s - mn);
      l[g] = l[g] * c + p;
#pragma unroll
      for (int e = 0; e < kMaxPer; ++e) acc[g][e] = acc[g][e] * c + p * vx[e];
      m[g] = mn;
    }
  }
#pragma unroll
  for (int g = 0; g < kHeadsPerBlock; ++g) {
    if (g >= gn) break;
    if (lane == 0) {
      wm[warp][g] = m[g];
      wl[warp][g] = l[g];
    }
#pragma unroll
    for (int e = 0; e < kMaxPer; ++e)
      if (lane + 32 * e < hd) wacc[warp][g][lane + 32 * e] = acc[g][e];
  }
  __syncthreads();
  for (int i = threadIdx.x; i < gn * hd; i += kThreads) {
    const int g = i / hd, d = i % hd;
    float mx = -INFINITY;
    for (int w = 0; w < kWarps; ++w) mx = fmaxf(mx, wm[w][g]);
    float sum = 0, a = 0;
    if (mx != -INFINITY)
      for (int w = 0; w < kWarps; ++w) {
        if (wm[w][g] == -INFINITY) continue;
        const float f = __expf(wm[w][g] - mx);
        sum += wl[w][g] * f;
        a += wacc[w][g][d] * f;
      }
    float* P = partial + (static_cast<std::size_t>(kvh * group + g0 + g) * splits + split) * (hd + 2);
    P[2 + d] = a;
    if (d == 0) {
      P[0] = mx;
      P[1] = sum;
    }
  }
}

// Block per query head: the ranges' partials combined (rescaled to the largest max), divided by the total sum.
__global__ void decode_attention_combine(const float* partial, int splits, int hd, float* out, __nv_bfloat16* out_bf16) {
  const int h = blockIdx.x;
  const float* P = partial + static_cast<std::size_t>(h) * splits * (hd + 2);
  float mx = -INFINITY;
  for (int s = 0; s < splits; ++s) mx = fmaxf(mx, P[s * (hd + 2)]);
  float sum = 0;
  for (int s = 0; s < splits; ++s)
    if (P[s * (hd + 2)] != -INFINITY) sum += P[s * (hd + 2) + 1] * __expf(P[s * (hd + 2)] - mx);
  const float inv = 1.0f / sum;
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float a = 0;
    for (int s = 0; s < splits; ++s)
      if (P[s * (hd + 2)] != -INFINITY) a += P[s * (hd + 2) + 2 + d] * __expf(P[s * (hd + 2)] - mx);
    const float v = a * inv;
    if (out) out[static_cast<std::size_t>(h) * hd + d] = v;
    if (out_bf16) out_bf16[static_cast<std::size_t>(h) * hd + d] = __float2bfloat16_rn(v);
  }
}

// One block: the largest logit and its first index (ties to the lower index, as a scan from 0 keeps the first).
__global__ void greedy_advance(const float* logits, std::size_t vocab, DecodeState* st, int* tokens) {
  __shared__ float bv[32];
  __shared__ int bi[32];
  float v = -INFINITY;
  int idx = 0x7fffffff;
  for (std::size_t i = threadIdx.x; i < vocab; i += blockDim.x)
    if (logits[i] > v) {  // a later index of this thread only wins when strictly larger
      v = logits[i];
      idx = static_cast<int>(i);
    }
  auto better = [](float v1, int i1, float v2, int i2) { return v2 > v1 || (v2 == v1 && i2 < i1); };
  for (int o = 16; o > 0; o /= 2) {
    const float v2 = __shfl_xor_sync(0xffffffffu, v, o);
    const int i2 = __shfl_xor_sync(0xffffffffu, idx, o);
    if (better(v, idx, v2, i2)) {
      v = v2;
      idx = i2;
    }
  }
  if (threadIdx.x % 32 == 0) {
    bv[threadIdx.x / 32] = v;
    bi[threadIdx.x / 32] = idx;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (unsigned w = 1; w < blockDim.x / 32; ++w)
      if (better(v, idx, bv[w], bi[w])) {
        v = bv[w];
        idx = bi[w];
      }
    if (idx == 0x7fffffff) idx = 0;  // every logit NaN: the CPU's scan keeps index 0 as well
    tokens[st->step] = idx;
    st->token = idx;
    st->step += 1;
    st->pos += 1;
  }
}

}  // namespace

void launch_rope_tables_at(const DecodeState* state, const float* inv_freq, int half, float* cs, float* sn) {
  rope_tables_at<<<1, 128>>>(state, inv_freq, half, cs, sn);
}

void launch_kv_write_at(const float* x, std::size_t row, void* cache, bool bf16, const DecodeState* state) {
  const unsigned blocks = static_cast<unsigned>((row + 255) / 256);
  if (bf16)
    kv_write_at<<<blocks, 256>>>(x, row, static_cast<__nv_bfloat16*>(cache), state);
  else
    kv_write_at<<<blocks, 256>>>(x, row, static_cast<float*>(cache), state);
}

std::size_t decode_attention_scratch_floats(int nh, int hd, std::size_t capacity) {
  return static_cast<std::size_t>(nh) * splits_for(capacity) * (static_cast<std::size_t>(hd) + 2);
}

bool launch_decode_attention(const float* q, const void* K, const void* V, bool bf16, float* out, std::uint16_t* out_bf16,
                             const DecodeState* state, std::size_t capacity, int nh, int nkv, int hd, int window, float scale,
                             float* scratch) {
  if (hd > kMaxPer * 32 || hd <= 0 || nkv <= 0 || nh % nkv != 0) return false;
  const std::size_t chunk = split_keys(capacity);
  const int splits = static_cast<int>(splits_for(capacity)), group = nh / nkv;
  const dim3 grid(static_cast<unsigned>(nkv), static_cast<unsigned>(splits), static_cast<unsigned>((group + kHeadsPerBlock - 1) / kHeadsPerBlock));
  if (bf16)
    decode_attention_split<<<grid, kThreads>>>(q, static_cast<const __nv_bfloat16*>(K), static_cast<const __nv_bfloat16*>(V), state, chunk,
                                               splits, nh, nkv, hd, window, scale, scratch);
  else
    decode_attention_split<<<grid, kThreads>>>(q, static_cast<const float*>(K), static_cast<const float*>(V), state, chunk, splits, nh,
                                               nkv, hd, window, scale, scratch);
  decode_attention_combine<<<static_cast<unsigned>(nh), 128>>>(scratch, splits, hd, out, reinterpret_cast<__nv_bfloat16*>(out_bf16));
  return true;
}

void launch_greedy_advance(const float* logits, std::size_t vocab, DecodeState* state, int* tokens) {
  greedy_advance<<<1, 1024>>>(logits, vocab, state, tokens);
}

}  // namespace tqb::cuda_forward
