#pragma once
// The tiled mma.sync kernel for n > 16: 256 rows × 64 batch columns per block, three activation stages by cp.async.
#include "kernels/cuda/lut_mma/common.cuh"

namespace tqb::lut_mma {

constexpr int kLargeStripes = 2;                      // stripes per warp
constexpr int kLargeRows = kWarps * kLargeStripes * 16;  // 256 rows per block
constexpr int kLargeCols = 64;                        // batch columns per block (8 n8-tiles)
constexpr int kLargeStages = 3;
constexpr int kLargeStride = 64 + kPad;               // one 64-column k-tile per stage

__device__ __forceinline__ void cp_async16(std::uint32_t dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 16 : 0));
}

template <int B0, int B1>
__global__ void __launch_bounds__(kThreads, 2) large_kernel(const Args a) {
  extern __shared__ uint4 smem_u4[];
  constexpr int P = passes_of(B1), NT = kLargeCols / 8;
  std::uint32_t* lut_s = reinterpret_cast<std::uint32_t*>(smem_u4);
  __nv_bfloat16* xs = reinterpret_cast<__nv_bfloat16*>(lut_s + a.lut_words);  // [stage][P][64][kLargeStride]
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int t0 = blockIdx.x * kLargeCols;
  const int stripe0 = blockIdx.y * (kWarps * kLargeStripes) + warp * kLargeStripes;
  const int cols_pad = a.ktiles * 64;
  constexpr int stage_elems = P * kLargeCols * kLargeStride;

  const int kt0 = blockIdx.z * a.tiles_per_split, kt1 = min(kt0 + a.tiles_per_split, a.ktiles);  // split-K range
  auto issue = [&](int kt) {
    __nv_bfloat16* st = xs + ((kt - kt0) % kLargeStages) * stage_elems;
#pragma unroll
    for (int p = 0; p < P; ++p)
#pragma unroll
      for (int c = threadIdx.x; c < kLargeCols * 8; c += kThreads) {
        const int row = c >> 3, ch = c & 7, t = min(t0 + row, a.n - 1);
        const __nv_bfloat16* src = a.xr + (static_cast<std::size_t>(p) * a.n + t) * cols_pad + kt * 64 + ch * 8;
        cp_async16(smem_addr(st + (p * kLargeCols + row) * kLargeStride + ch * 8), src, t0 + row < a.n);
      }
  };

  fill_tables<B0, B1>(a, lut_s);
  issue(kt0);
  cp_async_commit();
  if (kt0 + 1 < kt1) issue(kt0 + 1);
  cp_async_commit();

  TileRegs<B0> c0[kLargeStripes];
  TileRegs<B1 ? B1 : 1> c1[kLargeStripes];
  auto load = [&](int kt, TileRegs<B0> (&r0)[kLargeStripes], TileRegs<B1 ? B1 : 1> (&r1)[kLargeStripes]) {
#pragma unroll
    for (int s = 0; s < kLargeStripes; ++s) {
      const int st = min(stripe0 + s, a.stripes - 1);  // rows past the matrix compute garbage that is never stored
      load_tile<B0>(a.pass[0], st, a.ktiles, kt, lane, r0[s]);
      if constexpr (B1 != 0) load_tile<B1>(a.pass[1], st, a.ktiles, kt, lane, r1[s]);
    }
  };
  load(kt0, c0, c1);

  float acc[kLargeStripes][NT][4] = {};
  const std::uint32_t lut_addr[2] = {smem_addr(lut_s) + 4 * lane, smem_addr(lut_s) + 4 * (a.pass[1].lut_offset + lane)};
  const std::uint32_t b_lane = b_lane_offset<NT>(kLargeStride, lane, kLargeCols - 1);  // rows past n are zero-filled
  for (int kt = kt0; kt < kt1; ++kt) {
    cp_async_wait<1>();
    __syncthreads();
    if (kt + 2 < kt1) issue(kt + 2);
    cp_async_commit();
    TileRegs<B0> n0[kLargeStripes];
    TileRegs<B1 ? B1 : 1> n1[kLargeStripes];
    if (kt + 1 < kt1) load(kt + 1, n0, n1);
    const __nv_bfloat16* st = xs + ((kt - kt0) % kLargeStages) * stage_elems;
#pragma unroll
    for (int sub = 0; sub < 4; ++sub) {
#pragma unroll
      for (int p = 0; p < P; ++p) {
        std::uint32_t af[kLargeStripes][4];
#pragma unroll
        for (int s = 0; s < kLargeStripes; ++s) {
          if constexpr (B1 != 0) {
            if (p == 1) {
              const GroupSide g = splat_side(c1[s].scale[sub >> 1], c1[s].offset[sub >> 1]);
              decode_a<B1>(c1[s].w, sub, lut_addr[1], g, af[s]);
              continue;
            }
          }
          const GroupSide g = splat_side(c0[s].scale[sub >> 1], c0[s].offset[sub >> 1]);
          decode_a<B0>(c0[s].w, sub, lut_addr[0], g, af[s]);
        }
        std::uint32_t bf[NT][2];
        load_b<NT>(smem_addr(st + p * kLargeCols * kLargeStride) + b_lane + 32 * sub, kLargeStride, bf);
#pragma unroll
        for (int s = 0; s < kLargeStripes; ++s)
#pragma unroll
          for (int j = 0; j < NT; ++j) mma_bf16(acc[s][j], af[s], bf[j][0], bf[j][1]);
      }
    }
#pragma unroll
    for (int s = 0; s < kLargeStripes; ++s) {
      c0[s] = n0[s];
      if constexpr (B1 != 0) c1[s] = n1[s];
    }
  }
  cp_async_wait<0>();

#pragma unroll
  for (int s = 0; s < kLargeStripes; ++s)
#pragma unroll
    for (int j = 0; j < NT; ++j)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int row = 16 * (stripe0 + s) + (lane >> 2) + 8 * (i >> 1), t = t0 + 8 * j + 2 * (lane & 3) + (i & 1);
        if (stripe0 + s < a.stripes) store_out(a, blockIdx.z, a.splits, row, t, acc[s][j][i]);
      }
  if (a.splits > 1)
    split_k_finish(a, a.splits, blockIdx.y * gridDim.x + blockIdx.x, blockIdx.y * kLargeRows, kLargeRows, t0, kLargeCols);
}

}  // namespace tqb::lut_mma
