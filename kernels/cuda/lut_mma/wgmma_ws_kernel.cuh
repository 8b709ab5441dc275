#pragma once
// Hopper's wgmma kernel with a producer warpgroup that decodes into shared memory (sm_90a, one pass, n > 64).
#include "kernels/cuda/bulk_copy.cuh"
#include "kernels/cuda/lut_mma/common.cuh"
#include "kernels/cuda/lut_mma/wgmma_kernel.cuh"
#include "kernels/cuda/wgmma.cuh"

namespace tqb::lut_mma {

// wgmma with a producer warpgroup that decodes (issue 31's item 2 as the issue sketches it; one pass, n > 64, sm_90a).
// Why: wgmma_kernel above decodes in the warps that issue the wgmmas, two per scheduler, one wgmma group in flight, so
// the tensor cores idle whenever a step's decode (a chain of table lookups and fmas) outlasts the other warpgroup's
// products; at N = 256 it took about twice the tensor cores' time per k-tile (docs/GPU.md). Here the roles are split:
// - warpgroup 0, the producer: each of its four warps owns two of the block's eight stripes, asks for their code tiles
//   and side words kWsLoadDepth k-tiles ahead (bulk copies on the warp's own load barriers), decodes them with the other
//   paths' arithmetic (decode_a: the same lookups and bf16x2 fma, the same bf16 weights bit for bit) and writes the
//   fragments with stmatrix into an A slot, K-major with the 128-byte swizzle, then announces them;
// - warpgroups 1 and 2, the consumers: an m64nNk16 per k16 step with both operands in shared memory (rows 64·c …
//   64·c + 63 of the block's 128), and once a k-tile's products are done they hand its A slot back to the producer and
//   its activation stage back to thread 128, which asks for the activations ws_b_stages(N) k-tiles ahead (the tile is
//   already swizzled by the rotation, kXrWgmmaTiles). The first version asked for them from the producer's loop, where
//   each request waited for the decode before it: the H100 took 1.7-2 µs per k-tile, twice the other kernel.
// Rings: activation stages (full: bytes landed; empty: both consumers done), A slots (full: four producer warps wrote
// theirs; empty: both consumers done), load slots per producer warp (full: bytes landed).
constexpr int kWsThreads = 3 * 128;  // a producer and two consumer warpgroups
constexpr int kWsRows = 128;         // rows per block: 8 stripes, each consumer warpgroup one m64 half
constexpr int kWsLoadDepth = 6;      // k-tiles of codes in flight ahead of the decode
__host__ __device__ constexpr int ws_cols_for(std::size_t n) { return n <= 128 ? 128 : 256; }
__host__ __device__ constexpr int ws_b_stages(int cols) { return cols == 256 ? 4 : 6; }  // activation tiles: what fits
__host__ __device__ constexpr int ws_a_slots(int cols) { return cols == 256 ? 2 : 3; }   // decoded tiles (16 KB each)
__host__ __device__ constexpr int ws_load_bytes(int b) { return kWarps * (128 * b + kWgSideBytes); }  // 8 stripes' codes, side
constexpr int kWsBarrierBytes = 8 * (2 * 6 + 2 * 3 + 4 * kWsLoadDepth);
__host__ __device__ constexpr int ws_index(int cols) { return cols == 256 ? 1 : 0; }  // Kernels::wgmma_ws, ws_resident
// Shared memory of the kernel at N = cols for b-bit codes whose tables take lut_words: the tables, the barriers (8-byte
// aligned), 1 KB to align the stages, the activation stages, the decoded tiles, the code slots.
__host__ __device__ constexpr std::size_t ws_smem_bytes(int lut_words, int cols, int b) {
  return static_cast<std::size_t>(lut_words) * 4 + 8 + kWsBarrierBytes + 1024 + static_cast<std::size_t>(ws_b_stages(cols)) * cols * 128 +
         static_cast<std::size_t>(ws_a_slots(cols)) * kWsRows * 128 + static_cast<std::size_t>(kWsLoadDepth) * ws_load_bytes(b);
}
// The widest case (4-bit tables, N = 256) within Hopper's 227 KB of opt-in shared memory less the 1 KB the host keeps
// back (LutMmaMatrix): otherwise the kernel would never be available, and its tests would skip it silently.
static_assert(ws_smem_bytes(32 << 8, 256, 4) <= 227 * 1024 - 1024, "wgmma_ws_kernel's stages fit an H100's shared memory");

__device__ __forceinline__ void named_barrier_sync(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

template <int B, int N>
__global__ void __launch_bounds__(kWsThreads, 1) wgmma_ws_kernel(const Args a) {
  extern __shared__ uint4 smem_u4[];
  constexpr int kBStages = ws_b_stages(N), kASlots = ws_a_slots(N), kBBytes = N * 128, kABytes = kWsRows * 128;
  constexpr int kLoadBytes = ws_load_bytes(B), kWarpLoadBytes = kLoadBytes / 4;  // per producer warp: 2 stripes
  static_assert(8 * (2 * kBStages + 2 * kASlots + 4 * kWsLoadDepth) <= kWsBarrierBytes, "the barriers fit their space");
  std::uint32_t* lut_s = reinterpret_cast<std::uint32_t*>(smem_u4);
  const std::uint32_t bars = (smem_addr(lut_s + a.lut_words) + 7u) & ~7u;
  const std::uint32_t b_full = bars, b_empty = b_full + 8 * kBStages, a_full = b_empty + 8 * kBStages, a_empty = a_full + 8 * kASlots;
  const std::uint32_t l_full = a_empty + 8 * kASlots;  // [load slot][producer warp]
  const std::uint32_t b_base = (bars + kWsBarrierBytes + 1023u) & ~1023u;  // swizzle atoms are 1024-byte aligned
  const std::uint32_t a_base = b_base + kBStages * kBBytes, l_base = a_base + kASlots * kABytes;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, wg = warp >> 2, gid = lane >> 2;
  const int t0 = blockIdx.x * N, stripe0 = blockIdx.y * kWarps;
  const int kt0 = blockIdx.z * a.tiles_per_split, tiles = min(kt0 + a.tiles_per_split, a.ktiles) - kt0;  // split-K range
  const int x_row_blocks = (a.n + N - 1) / N;
  const PassArgs& pa = a.pass[0];

  if (threadIdx.x == 0) {
    for (int s = 0; s < kBStages; ++s) {
      mbarrier_init(b_full + 8 * s, 1);   // the issuing thread's announcement of the tile's bytes
      mbarrier_init(b_empty + 8 * s, 2);  // the two consumer warpgroups done with it
    }
    for (int s = 0; s < kASlots; ++s) {
      mbarrier_init(a_full + 8 * s, 4);   // the four producer warps' decoded stripes
      mbarrier_init(a_empty + 8 * s, 2);  // the two consumer warpgroups done with it
    }
    for (int l = 0; l < 4 * kWsLoadDepth; ++l) mbarrier_init(l_full + 8 * l, 1);
    fence_barrier_init();
  }
  fill_tables<B, 0>(a, lut_s);
  __syncthreads();
  // The activation tile of k-tile kt0 + i into stage i mod kBStages (one thread).
  auto issue_b = [&](int i) {
    const int s = i % kBStages;
    mbarrier_arrive_expect_tx(b_full + 8 * s, kBBytes);
    bulk_copy_g2s(b_base + s * kBBytes, a.xr + wg_tile_offset(0, t0, (kt0 + i) * 64, N, x_row_blocks, a.ktiles), kBBytes, b_full + 8 * s);
  };

  if (wg == 0) {
    // Producer warp `warp`: stripes 2·warp and 2·warp + 1 of the block. Lane 0 asks for their code tiles and side words
    // of k-tile kt0 + i into this warp's part of load slot i mod kWsLoadDepth.
    auto issue_codes_of = [&](int i) {
      const int l = i % kWsLoadDepth, kt = kt0 + i;
      const std::uint32_t slot = l_base + l * kLoadBytes + warp * kWarpLoadBytes, bar = l_full + 8 * (4 * l + warp);
      mbarrier_arrive_expect_tx(bar, 2 * stripe_tile_bytes(pa, B));
#pragma unroll
      for (int h = 0; h < 2; ++h)  // rows past the matrix compute garbage that is never stored
        bulk_copy_stripe_tile(pa, B, min(stripe0 + 2 * warp + h, a.stripes - 1), kt, a.ktiles, slot + h * 128 * B, slot + 2 * 128 * B + h * kWgSideBytes, bar);
    };
    if (lane == 0)
      for (int i = 0; i < min(tiles, kWsLoadDepth); ++i) issue_codes_of(i);
    if (threadIdx.x == 0)
      for (int i = 0; i < min(tiles, kBStages); ++i) issue_b(i);
    const std::uint32_t lut_addr = smem_addr(lut_s) + 4 * lane;
    for (int i = 0; i < tiles; ++i) {
      const int s = i % kASlots, l = i % kWsLoadDepth;
      mbarrier_wait(a_empty + 8 * s, ((i / kASlots) & 1) ^ 1);  // both consumers done with tile i − kASlots (round 0 passes)
      mbarrier_wait(l_full + 8 * (4 * l + warp), (i / kWsLoadDepth) & 1);
      const std::uint32_t slot = l_base + l * kLoadBytes + warp * kWarpLoadBytes, a_tile = a_base + s * kABytes;
      std::uint32_t w[2][B], side_w[2][4];
#pragma unroll
      for (int h = 0; h < 2; ++h) {  // this warp's words of the slot, into registers
        read_codes<B>(slot + h * 128 * B, lane, w[h]);
        const std::uint32_t side = slot + 2 * 128 * B + h * kWgSideBytes + 4 * gid;
        side_w[h][0] = lds32(side), side_w[h][1] = lds32(side + 32);  // scales of the tile's group(s)
        side_w[h][2] = pa.offsets != nullptr ? lds32(side + 64) : 0u, side_w[h][3] = pa.offsets != nullptr ? lds32(side + 96) : 0u;
      }
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        if (a.ws_skip == 1) break;
        const int st = 2 * warp + h;  // the block's stripe
#pragma unroll
        for (int sub = 0; sub < 4; ++sub) {
          const bool second = pa.log2_group == 5 && sub >= 2;  // g = 32: sub-tiles 2-3 are the second group
          std::uint32_t af[4];  // (selects, not an index: an indexed register array would live in local memory)
          decode_a<B>(w[h], sub, lut_addr, splat_side(second ? side_w[h][1] : side_w[h][0], second ? side_w[h][3] : side_w[h][2]), af);
          stmatrix_x4(a_tile + sw128_chunk_offset(16 * st + stmatrix_a_row(lane), stmatrix_a_chunk(sub, lane)), af);
        }
      }
      fence_proxy_async_shared();  // the decoded tile, visible to the consumers' wgmma (the asynchronous proxy)
      __syncwarp();                // (and every lane's reads of load slot l used: lane 0 may refill it)
      if (lane == 0) {
        mbarrier_arrive(a_full + 8 * s);
        if (i + kWsLoadDepth < tiles) issue_codes_of(i + kWsLoadDepth);
      }
    }
  } else {
    // Consumers: warpgroup c = wg − 1 computes rows 64·c … 64·c + 63 of the block (warp q: stripe 4c + q).
    const int c = wg - 1;
    const bool leader = (threadIdx.x & 127) == 0;
    float acc[N / 2] = {};
    wgmma_fence_operands(acc);
    for (int i = 0; i < tiles; ++i) {
      const int s = i % kBStages, sa = i % kASlots;
      mbarrier_wait(b_full + 8 * s, (i / kBStages) & 1);
      mbarrier_wait(a_full + 8 * sa, (i / kASlots) & 1);
      const std::uint32_t b_tile = b_base + s * kBBytes, a_tile = a_base + sa * kABytes + c * 64 * 128;
      wgmma_fence();
      if (a.ws_skip != 2)
#pragma unroll
        for (int sub = 0; sub < 4; ++sub) wgmma_m64k16_ss<N>(acc, wgmma_desc_sw128(a_tile + 32 * sub), wgmma_desc_sw128(b_tile + 32 * sub));
      wgmma_commit();
      wgmma_wait<1>();  // tile i − 1's products are done: its A slot and activation stage go back
      if (i > 0 && leader) {
        const int p = i - 1;
        mbarrier_arrive(a_empty + 8 * (p % kASlots));
        mbarrier_arrive(b_empty + 8 * (p % kBStages));
        if (c == 0 && p + kBStages < tiles) {  // thread 128: once both consumers are done with stage p, its next tile
          mbarrier_wait(b_empty + 8 * (p % kBStages), (p / kBStages) & 1);
          issue_b(p + kBStages);
        }
      }
    }
    wgmma_wait<0>();
    wgmma_fence_operands(acc);
    // Accumulator i of n8 block j (the m16n8 C layout per warp): row gid + 8·(i >> 1), batch column 8j + 2·tig + (i & 1).
    const int stripe = stripe0 + 4 * c + (warp & 3);
#pragma unroll
    for (int j = 0; j < N / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int row = 16 * stripe + gid + 8 * (e >> 1), t = t0 + 8 * j + 2 * (lane & 3) + (e & 1);
        if (stripe < a.stripes) store_out(a, blockIdx.z, a.splits, row, t, acc[4 * j + e]);
      }
  }
  if (a.splits > 1) split_k_finish<kWsThreads>(a, a.splits, blockIdx.y * gridDim.x + blockIdx.x, blockIdx.y * kWsRows, kWsRows, t0, N);
}

}  // namespace tqb::lut_mma
