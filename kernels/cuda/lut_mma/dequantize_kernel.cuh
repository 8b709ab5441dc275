#pragma once
// The dequantized path's decode kernel: bf16 weights for cuBLAS, decoded exactly as the large kernel decodes them.
#include "kernels/cuda/lut_mma/common.cuh"

namespace tqb::lut_mma {

// dequantized path (prefill, n ≥ the matrix's prefill batch): the codes of a chunk of stripes decoded once
// to bf16, exactly as the large kernel decodes them (one bf16x2 fma per pair: the same weights, bit for
// bit), then one cuBLAS GEMM over K = passes · cols_pad against the rotated activations. cuBLAS's Hopper
// GEMM (wgmma, TMA) does the product; the codes cost a decode pass of their bytes plus the bf16 chunk.

// grid (chunk stripes, ceil(ktiles / 8)): a warp per (stripe, 64-column tile), every pass; the fragments
// go through a per-warp 16×64 tile in shared memory so that each row leaves as 128 contiguous bytes.
template <int B0, int B1>
__global__ void __launch_bounds__(kThreads) dequantize_kernel(const Args a) {
  extern __shared__ uint4 smem_u4[];
  constexpr int P = passes_of(B1);
  constexpr int kTileStride = 64 + kPad;  // bf16 per row of the staging tile
  std::uint32_t* lut_s = reinterpret_cast<std::uint32_t*>(smem_u4);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  __nv_bfloat16* tile_s = reinterpret_cast<__nv_bfloat16*>(lut_s + a.lut_words) + warp * 16 * kTileStride;
  fill_tables<B0, B1>(a, lut_s);
  __syncthreads();
  const int stripe = a.row_stripe0 + blockIdx.x, kt = blockIdx.y * kWarps + warp;
  if (stripe >= a.stripes || kt >= a.ktiles) return;
  const int cols_pad = a.ktiles * 64, gid = lane >> 2, tig = lane & 3;
  const std::size_t ld = static_cast<std::size_t>(P) * cols_pad;
#pragma unroll
  for (int p = 0; p < P; ++p) {
    std::uint32_t af[4][4];
    const std::uint32_t lut_addr = smem_addr(lut_s) + 4 * (a.pass[p].lut_offset + lane);
    if (p == 0 || B1 == 0) {
      TileRegs<B0> r;
      load_tile<B0>(a.pass[0], stripe, a.ktiles, kt, lane, r);
#pragma unroll
      for (int sub = 0; sub < 4; ++sub) decode_a<B0>(r.w, sub, lut_addr, splat_side(r.scale[sub >> 1], r.offset[sub >> 1]), af[sub]);
    } else {
      TileRegs<B1 ? B1 : 1> r;
      load_tile<B1 ? B1 : 1>(a.pass[1], stripe, a.ktiles, kt, lane, r);
#pragma unroll
      for (int sub = 0; sub < 4; ++sub) decode_a<B1 ? B1 : 1>(r.w, sub, lut_addr, splat_side(r.scale[sub >> 1], r.offset[sub >> 1]), af[sub]);
    }
    // A fragment register r of sub-tile s: row gid + 8·(r & 1), columns 16s + 2·tig + 8·(r >> 1) and the next.
#pragma unroll
    for (int sub = 0; sub < 4; ++sub)
#pragma unroll
      for (int r = 0; r < 4; ++r)
        *reinterpret_cast<std::uint32_t*>(tile_s + (gid + 8 * (r & 1)) * kTileStride + 16 * sub + 2 * tig + 8 * (r >> 1)) = af[sub][r];
    __syncwarp();
    __nv_bfloat16* dst = a.w_hat + static_cast<std::size_t>(16 * blockIdx.x) * ld + static_cast<std::size_t>(p) * cols_pad + kt * 64;
#pragma unroll
    for (int q = lane; q < 128; q += 32) {  // 16 rows × 8 pieces of 16 bytes
      const int row = q >> 3, piece = q & 7;
      *reinterpret_cast<uint4*>(dst + row * ld + 8 * piece) = *reinterpret_cast<const uint4*>(tile_s + row * kTileStride + 8 * piece);
    }
    __syncwarp();
  }
}

}  // namespace tqb::lut_mma
