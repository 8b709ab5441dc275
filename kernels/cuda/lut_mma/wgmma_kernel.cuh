#pragma once
// Hopper's wgmma kernel with A (the decoded weights) in registers, N = 32 … 256 (sm_90a).
#include "kernels/cuda/bulk_copy.cuh"
#include "kernels/cuda/lut_mma/common.cuh"
#include "kernels/cuda/wgmma.cuh"

namespace tqb::lut_mma {

// wgmma: n > 16 on sm_90a (issue 31). The large kernel's decode (same tables, same bf16x2 fma per pair: the
// same bf16 weights, bit for bit) feeding Hopper's asynchronous warpgroup MMA instead of mma.sync: the
// decoded fragments are wgmma's A operand in registers, the rotated activations its B operand in shared
// memory (128-byte swizzle, kernels/cuda/wgmma.cuh), so no weight tile is ever written to shared memory
// or global memory (the dequantized path writes rows · cols bf16 and reads them back).
// One pass: block = 128 rows × N batch columns, two warpgroups, warp q of warpgroup g owning stripe 4g + q (one
// m64nNk16 per warpgroup and k16 step). Two passes: 256 rows × N columns, warp q of warpgroup g owning stripes
// 8g + q and 8g + 4 + q (two m64nNk16). N (the template's) is 256 for one pass and n > 128, else the least of 32,
// 64 and 128 that holds the batch (wg_cols_for): a wider N decodes each weight fewer times per product (n = 512:
// twice instead of four times), but the tensor cores compute all N columns whatever n is, and at N = 256 they
// are the bound (14336 × 4096 took 73-77 µs for every n from 64 to 256 on the H100). Two passes stop at 128:
// their 256-column stages would not fit three deep. One pass fits three blocks per SM at N = 32, two at N = 64. Each step's
// fragments are decoded while the previous step's wgmma runs (two fragment buffers, wait_group 1).
// Every 64-column tile arrives in a stage two tiles ahead by bulk copies (kernels/cuda/bulk_copy.cuh) counted
// on the stage's barrier: the activation tile, already swizzled by the rotation (kXrWgmmaTiles), in one 16 KB
// copy; each stripe's code tile (128·B contiguous bytes) and its side words (the tile's one or two groups of
// scales, offsets) in one copy each, issued by lane 0 of the warp that owns the stripe.
// Measured history (Nsight Compute on the H100, 14336 × 4096, n = 512): codes and side data held in
// registers one tile ahead left the warps waiting on global loads (long-scoreboard first, 193 → 228 µs);
// cp.async through the stages fixed that, and then the copies' per-thread address arithmetic was 40% of
// the loop's instructions (~200 of ~510 per warp and tile, SASS), with issue slots 36% busy.
__host__ __device__ constexpr int wg_stripes(int passes) { return passes == 1 ? 1 : 2; }  // m64 tiles per warpgroup
__host__ __device__ constexpr int wg_rows(int passes) { return kWarps * wg_stripes(passes) * 16; }  // rows per block
__host__ __device__ constexpr int wg_max_cols(int passes) { return passes == 1 ? 256 : 128; }  // the widest N
// The wgmma's N for a batch of n (also the rows of the kXrWgmmaTiles tiles): see the kernel's comment.
__host__ __device__ constexpr int wg_cols_for(std::size_t n, int passes) {
  return n <= 32 ? 32 : n <= 64 ? 64 : n <= 128 || passes > 1 ? 128 : 256;
}
// Blocks per SM the kernel is compiled for (its register budget): three or two where the accumulators are few
// (16 or 32 registers) and that many blocks' stages fit in shared memory (one pass), one otherwise (128
// accumulators at N = 256). The plan asks the runtime how many are resident.
__host__ __device__ constexpr int wg_min_blocks(int passes, int cols) { return passes > 1 ? 1 : cols <= 32 ? 3 : cols == 64 ? 2 : 1; }
constexpr int kWgSideBytes = 128;    // per stripe and pass: scales of groups j0, j1, then offsets of j0, j1
constexpr int kWgBarrierBytes = 64;  // the stages' barriers, 8 bytes each, after the tables
// Stages: a stage is rewritten two tiles after it was read, which four stages make safe with one wgmma group
// still in flight; two passes fit only three (the last group is then waited for before the barrier).
__host__ __device__ constexpr int wg_stages(int passes) { return passes == 1 ? 4 : 3; }
// Bytes of one stage: per pass the activation tile (N rows of 128 bytes), the stripes' code tiles (128·B bytes each),
// their side words (every part a multiple of 1024 bytes, so each stage's activation tile stays 1024-aligned).
__host__ __device__ constexpr int wg_stage_bytes(int b0, int b1, int cols) {
  const int P = b1 ? 2 : 1, stripes = kWarps * wg_stripes(P);
  return P * cols * 128 + stripes * 128 * (b0 + b1) + stripes * kWgSideBytes * P;
}

// A stripe's k-tile kt of pass pa (b-bit codes) into shared memory by bulk copies counted on `bar`: the code tile (128·b
// contiguous bytes) to code_dst, the tile's side words to side_dst: its groups, one (g ≥ 64) or two adjacent (g = 32)
// of 8 words, scales, then 64 bytes on the offsets where the pass has them. stripe_tile_bytes: what that copies.
__device__ __forceinline__ std::uint32_t stripe_tile_bytes(const PassArgs& pa, int b) {
  return 128u * b + (pa.log2_group == 5 ? 64u : 32u) * (pa.offsets != nullptr ? 2u : 1u);
}
__device__ __forceinline__ void bulk_copy_stripe_tile(const PassArgs& pa, int b, int stripe, int kt, int ktiles, std::uint32_t code_dst,
                                                      std::uint32_t side_dst, std::uint32_t bar) {
  bulk_copy_g2s(code_dst, pa.codes + (static_cast<std::size_t>(stripe) * ktiles + kt) * 32 * b, 128u * b, bar);
  const std::uint32_t gbytes = pa.log2_group == 5 ? 64u : 32u;
  const std::size_t side = (static_cast<std::size_t>(stripe) * pa.groups_alloc + ((kt * 64) >> pa.log2_group)) * 8;
  bulk_copy_g2s(side_dst, pa.scales + side, gbytes, bar);
  if (pa.offsets != nullptr) bulk_copy_g2s(side_dst + 64, pa.offsets + side, gbytes, bar);
}

template <int B0, int B1, int N>
__global__ void __launch_bounds__(kThreads, wg_min_blocks(passes_of(B1), N)) wgmma_kernel(const Args a) {
  extern __shared__ uint4 smem_u4[];
  constexpr int P = passes_of(B1), kStages = wg_stages(P), kStageBytes = wg_stage_bytes(B0, B1, N);
  constexpr int kWgStripes = wg_stripes(P), kWgCols = N, kWgRows = wg_rows(P), kWgTileBytes = kWgCols * 128;
  static_assert(N <= wg_max_cols(P), "two passes' stages of 256 columns would not fit");
  static_assert(kStages * 8 <= kWgBarrierBytes, "a barrier per stage");
  constexpr int kCodes = P * kWgTileBytes, kSide = kCodes + kWarps * kWgStripes * 128 * (B0 + B1);  // offsets in a stage
  std::uint32_t* lut_s = reinterpret_cast<std::uint32_t*>(smem_u4);
  const std::uint32_t bars = (smem_addr(lut_s + a.lut_words) + 7u) & ~7u;
  const std::uint32_t xs = (bars + kWgBarrierBytes + 1023u) & ~1023u;  // swizzle atoms are 1024-byte aligned
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, wg = warp >> 2, wq = warp & 3;
  // The block's units (block_units: the grid's tile and split, or its stream-K share), step i being unit u0 + i: tile
  // (u0 + i) / ktiles, k-tile (u0 + i) mod ktiles. Steps run through the stages whatever tile they belong to, so a
  // block that moves on to its next tile keeps its copies two steps ahead. A cursor walks the units where the copies
  // are issued, the products go tile by tile: no 64-bit division inside the loop, whose subroutine call makes ptxas
  // wait for every wgmma in flight and serialize them all (C7518; 14336 x 4096 at n = 512 took 273 µs against 149).
  const BlockUnits units = block_units(a);
  const int steps = static_cast<int>(units.u1 - units.u0);
  const int x_row_blocks = (a.n + kWgCols - 1) / kWgCols;
  const UnitCursor first{static_cast<int>(units.u0 / a.ktiles), static_cast<int>(units.u0 % a.ktiles)};
  UnitCursor issued = first;
  // This warp's stripes of tile `tile` (row block tile / col_blocks), and the tile's first batch column.
  auto stripe_of = [&](int tile, int s) { return tile / a.col_blocks * (kWarps * kWgStripes) + 4 * kWgStripes * wg + 4 * s + wq; };
  auto t0_of = [&](int tile) { return tile % a.col_blocks * kWgCols; };
  auto stage_addr = [&](int i) { return xs + static_cast<std::uint32_t>((i % kStages) * kStageBytes); };
  auto stage_bar = [&](int i) { return bars + 8u * static_cast<std::uint32_t>(i % kStages); };
  // This warp's code slot of (stripe s, pass p) in a stage: 128·B bytes per stripe, passes after each other.
  auto code_slot = [&](std::uint32_t st, int s, int p) {
    return st + kCodes + (warp * kWgStripes + s) * 128 * (B0 + B1) + (p == 0 ? 0 : 128 * B0);
  };
  auto side_slot = [&](std::uint32_t st, int s, int p) { return st + kSide + ((p * kWarps + warp) * kWgStripes + s) * kWgSideBytes; };
  // Lane 0 of each warp: step i's code tiles of its stripes and side words, and (warp 0) the activation tiles, all
  // announced on the stage's barrier (one arrival per warp) before they are issued. Step i is unit `issued`, which
  // then moves on (every thread, so that it stays uniform).
  auto issue = [&](int i) {
    const int tile = issued.tile, kt = issued.kt;
    issued.next(a.ktiles);
    if (lane != 0) return;
    const std::uint32_t st = stage_addr(i), bar = stage_bar(i);
    std::uint32_t bytes = warp == 0 ? P * kWgTileBytes : 0u;
#pragma unroll
    for (int p = 0; p < P; ++p) bytes += kWgStripes * stripe_tile_bytes(a.pass[p], p == 0 ? B0 : B1);
    mbarrier_arrive_expect_tx(bar, bytes);
    if (warp == 0)
#pragma unroll
      for (int p = 0; p < P; ++p)
        bulk_copy_g2s(st + p * kWgTileBytes, a.xr + wg_tile_offset(p, t0_of(tile), kt * 64, kWgCols, x_row_blocks, a.ktiles), kWgTileBytes, bar);
#pragma unroll
    for (int s = 0; s < kWgStripes; ++s) {
      const int src = min(stripe_of(tile, s), a.stripes - 1);  // rows past the matrix compute garbage that is never stored
#pragma unroll
      for (int p = 0; p < P; ++p) bulk_copy_stripe_tile(a.pass[p], p == 0 ? B0 : B1, src, kt, a.ktiles, code_slot(st, s, p), side_slot(st, s, p), bar);
    }
  };

  if (threadIdx.x == 0) {
    for (int s = 0; s < kStages; ++s) mbarrier_init(bars + 8u * s, kWarps);
    fence_barrier_init();
  }
  __syncthreads();
  if (steps > 0) issue(0);
  if (steps > 1) issue(1);
  fill_tables<B0, B1>(a, lut_s);

  float acc[kWgStripes][kWgCols / 2] = {};
#pragma unroll
  for (int s = 0; s < kWgStripes; ++s) wgmma_fence_operands(acc[s]);
  std::uint32_t af[2][kWgStripes][4];  // fragment buffers: step i decodes into af[i & 1]
  const std::uint32_t lut_addr[2] = {smem_addr(lut_s) + 4 * lane, smem_addr(lut_s) + 4 * (a.pass[1].lut_offset + lane)};
  const int gid = lane >> 2;
  // The block's tiles in order (its first and last may be shares): the steps of each through the pipeline, then the
  // tile's outputs (or this block's share of them). One loop per tile, not an epilogue inside the steps' loop: there
  // the path past the epilogue and the path that skips it meet with the accumulators live, and ptxas waits for every
  // wgmma in flight at that join in every step (C7517).
  for (int i = 0, tile = first.tile, kt0 = first.kt; i < steps; ++tile, kt0 = 0) {
    for (const int tile_end = min(steps, i + a.ktiles - kt0); i < tile_end; ++i) {
      if constexpr (kStages == 3) wgmma_wait<0>();  // the stage rewritten below was read by step i - 1
      __syncthreads();  // (and, the first time, the tables are filled)
      if (i + 2 < steps) issue(i + 2);  // four stages: the stage of step i - 2, whose wgmmas were waited for in step i - 1
      const std::uint32_t st = stage_addr(i);
      mbarrier_wait(stage_bar(i), static_cast<std::uint32_t>((i / kStages) & 1));
      std::uint32_t w0[kWgStripes][B0], w1[kWgStripes][B1 ? B1 : 1];
#pragma unroll
      for (int s = 0; s < kWgStripes; ++s) {
        read_codes<B0>(code_slot(st, s, 0), lane, w0[s]);
        if constexpr (B1 != 0) read_codes<B1>(code_slot(st, s, 1), lane, w1[s]);
      }
#pragma unroll
      for (int sub = 0; sub < 4; ++sub) {
#pragma unroll
        for (int p = 0; p < P; ++p) {
          const int buf = (sub * P + p) & 1;
          wgmma_wait<1>();  // the wgmma that read af[buf] two steps ago is done
          const int half = a.pass[p].log2_group == 5 ? (sub >> 1) : 0;  // g = 32: sub-tiles 2-3 are the second group
#pragma unroll
          for (int s = 0; s < kWgStripes; ++s) {
            const std::uint32_t side = side_slot(st, s, p) + 4 * (8 * half + gid);
            const std::uint32_t scale = lds32(side), offset = a.pass[p].offsets != nullptr ? lds32(side + 64) : 0u;
            if constexpr (B1 != 0) {
              if (p == 1) {
                decode_a<B1>(w1[s], sub, lut_addr[1], splat_side(scale, offset), af[buf][s]);
                continue;
              }
            }
            decode_a<B0>(w0[s], sub, lut_addr[0], splat_side(scale, offset), af[buf][s]);
          }
          wgmma_fence();
          const std::uint64_t desc = wgmma_desc_sw128(st + p * kWgTileBytes + 32 * sub);
#pragma unroll
          for (int s = 0; s < kWgStripes; ++s) wgmma_m64k16_rs<kWgCols>(acc[s], af[buf][s], desc);
          wgmma_commit();
        }
      }
    }
    wgmma_wait<0>();
#pragma unroll
    for (int s = 0; s < kWgStripes; ++s) wgmma_fence_operands(acc[s]);
    const int2 share = tile_share(a, tile);
    const int t0 = t0_of(tile);
    // Accumulator e of n8 block j (the m16n8 C layout per warp): row gid + 8·(e >> 1), batch column 8j + 2·tig + (e & 1).
#pragma unroll
    for (int s = 0; s < kWgStripes; ++s) {
      const int stripe = stripe_of(tile, s);
#pragma unroll
      for (int j = 0; j < kWgCols / 8; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int row = 16 * stripe + gid + 8 * (e >> 1), t = t0 + 8 * j + 2 * (lane & 3) + (e & 1);
          if (stripe < a.stripes) store_out(a, share.x, share.y, row, t, acc[s][4 * j + e]);
          acc[s][4 * j + e] = 0.0f;
        }
      wgmma_fence_operands(acc[s]);
    }
    if (share.y > 1) split_k_finish(a, share.y, tile, tile / a.col_blocks * kWgRows, kWgRows, t0, kWgCols);
  }
}

}  // namespace tqb::lut_mma
