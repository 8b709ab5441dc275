#pragma once
// The small-batch kernel, n ≤ 16 (NT = 1 or 2 n8-tiles): a code ring per warp, the prologue's tables and rotation,
// per-group fp32 scaling, split-K through global memory or the cluster (docs/GPU.md, issues 10 and 31).
#include "kernels/cuda/lut_mma/common.cuh"

namespace tqb::lut_mma {

// The small kernel keeps, per warp, a ring of kRing code tiles in shared memory filled by cp.async
// (memory-level parallelism without registers: kRing · 512 bytes in flight per warp), and stages the
// chunk's side data (scales, offsets) once in its prologue.
constexpr int kRing = 6;

// Shared-memory words of the small kernel's side data for one pass: 8 warps × the chunk's groups × 8
// (scales, then offsets if any). Chunks hold whole groups, so the count is exact.
__host__ __device__ constexpr int side_words(int chunk_cols, int log2_group, bool has_offset) {
  return kWarps * (chunk_cols >> log2_group) * 8 * (has_offset ? 2 : 1);
}

// Copies this lane's words of a code tile (src) into the slot at shared address `slot`.
template <int B>
__device__ __forceinline__ void issue_codes(const std::uint32_t* src, std::uint32_t slot, int lane) {
  const std::uint32_t dst = slot + 4 * B * lane;
  if constexpr (B == 4) cp_async<16>(dst, src);
  else if constexpr (B == 2) cp_async<8>(dst, src);
  else {
#pragma unroll
    for (int i = 0; i < B; ++i) cp_async<4>(dst + 4 * i, src + i);
  }
}

// Side data of one pass for a warp's stripe and this block's chunk: cp.async of the contiguous words
// [group j0, j0 + groups) × 8 of scales (and offsets) into `dst` (shared address).
__device__ __forceinline__ void issue_side(const PassArgs& p, int stripe, int j0, int groups, std::uint32_t dst, int lane) {
  const int avail = min(groups, p.groups_alloc - j0);  // the last chunk may pass the matrix's end
  for (int piece = lane; piece < 2 * avail; piece += 32) {
    const std::size_t src = (static_cast<std::size_t>(stripe) * p.groups_alloc + j0) * 8 + 4 * piece;
    cp_async<16>(dst + 16 * piece, p.scales + src);
    if (p.offsets != nullptr) cp_async<16>(dst + 32 * groups + 16 * piece, p.offsets + src);
  }
}

// Sign words of one pass in the small kernel's shared memory: the chunk's kc / 32, rounded to a 16-byte multiple.
__host__ __device__ constexpr int small_sign_stride(int kc) { return ((kc >> 5) + 3) & ~3; }

// The chunk's activations of pass p, batch rows [0, n) × columns [k0, k0 + kc), into xs_p (row stride `stride`
// elements) by cp.async: from x as given (the kernel rotates them), or with pre_rotated from pass p's rows of xr.
// 16 bytes per copy (4 where x is not 16-byte aligned); columns past cols are written as zeros. Every thread of the
// block takes part.
__device__ __forceinline__ void issue_activations(const Args& a, int p, int k0, int kc, __nv_bfloat16* xs_p, int stride) {
  const int pieces = kc / 8, total = a.n * pieces;
  const std::size_t cols_pad = static_cast<std::size_t>(a.ktiles) * 64;
  for (int i = threadIdx.x; i < total; i += kThreads) {
    const int t = i / pieces, c = (i - t * pieces) * 8;
    __nv_bfloat16* dst = xs_p + t * stride + c;
    if (k0 + c < a.cols) {  // cols is a multiple of 32: a piece lies wholly inside or outside
      const __nv_bfloat16* src = a.pre_rotated ? a.xr + (static_cast<std::size_t>(p) * a.n + t) * cols_pad + k0 + c
                                               : a.x + static_cast<std::size_t>(t) * a.cols + k0 + c;
      if (a.pre_rotated || a.x_aligned16) cp_async<16>(smem_addr(dst), src);
      else
#pragma unroll
        for (int h = 0; h < 4; ++h) cp_async<4>(smem_addr(dst) + 4 * h, src + 2 * h);
    } else {
      *reinterpret_cast<uint4*>(dst) = make_uint4(0, 0, 0, 0);
    }
  }
}

// One pass's sign words of the chunk [k0, k0 + kc) into dst (shared memory), zeros past the matrix's columns.
__device__ __forceinline__ void issue_signs(const PassArgs& p, int k0, int kc, int cols, std::uint32_t* dst) {
  const int w0 = k0 >> 5, avail = ((cols + 31) >> 5) - w0;
  for (int i = threadIdx.x; i < (kc >> 5); i += kThreads) {
    if (i < avail) cp_async<4>(smem_addr(dst + i), p.signs + w0 + i);
    else dst[i] = 0u;
  }
}

// The small kernel's arithmetic: the mma takes the table's bf16 values as they are (exact products with
// the bf16 activations) into per-group fp32 sums, and each group ends with acc += a·Σ lut·x̃ + b·Σ x̃ in
// fp32 — four fmas per accumulator and group instead of one bf16x2 fma per pair of weights, and one
// rounding fewer (lut_mma_emulate, LutMmaArith::group_scale).
template <int B, int NT>
struct GroupScaled {
  static __device__ __forceinline__ void flush(int j, std::uint32_t side, int groups, bool has_offset, const float* sums, int n, int lane,
                                               float (&g)[NT][4], float (&acc)[NT][4]) {
    const int gid = lane >> 2, tid = lane & 3;
    const std::uint32_t sw = lds32(side + 4 * (8 * j + gid));
    const float a_lo = __uint_as_float(sw << 16), a_hi = __uint_as_float(sw & 0xffff0000u);
#pragma unroll
    for (int jn = 0; jn < NT; ++jn) {
      acc[jn][0] = fmaf(a_lo, g[jn][0], acc[jn][0]);
      acc[jn][1] = fmaf(a_lo, g[jn][1], acc[jn][1]);
      acc[jn][2] = fmaf(a_hi, g[jn][2], acc[jn][2]);
      acc[jn][3] = fmaf(a_hi, g[jn][3], acc[jn][3]);
#pragma unroll
      for (int i = 0; i < 4; ++i) g[jn][i] = 0.0f;
    }
    if (has_offset) {
      const std::uint32_t ow = lds32(side + 4 * (8 * groups + 8 * j + gid));
      const float b_lo = __uint_as_float(ow << 16), b_hi = __uint_as_float(ow & 0xffff0000u);
#pragma unroll
      for (int jn = 0; jn < NT; ++jn) {
        const int t0 = 8 * jn + 2 * tid;
        const float s0 = t0 < n ? sums[t0 * groups + j] : 0.0f, s1 = t0 + 1 < n ? sums[(t0 + 1) * groups + j] : 0.0f;
        acc[jn][0] = fmaf(b_lo, s0, acc[jn][0]);
        acc[jn][1] = fmaf(b_lo, s1, acc[jn][1]);
        acc[jn][2] = fmaf(b_hi, s0, acc[jn][2]);
        acc[jn][3] = fmaf(b_hi, s1, acc[jn][3]);
      }
    }
  }
  // One 16×64 tile at chunk column kk: four sub-tiles of lookups and mma into g, flushing at group ends
  // (chunks start on a group boundary; a group of 32 ends after sub-tiles 1 and 3, larger ones at a
  // tile's end when kk + 64 is a multiple of the group).
  static __device__ __forceinline__ void tile(const std::uint32_t (&w)[B], std::uint32_t lut_addr, std::uint32_t b_addr, int stride, int kk,
                                              int log2_group, std::uint32_t side, int groups, bool has_offset, const float* sums, int n, int lane,
                                              float (&g)[NT][4], float (&acc)[NT][4]) {
#pragma unroll
    for (int s = 0; s < 4; ++s) {
      std::uint32_t af[4], bf[NT][2];
#pragma unroll
      for (int r = 0; r < 4; ++r) af[r] = lookup_pair<B>(w, s, r, lut_addr);
      load_b<NT>(b_addr + 32 * s, stride, bf);
#pragma unroll
      for (int jn = 0; jn < NT; ++jn) mma_bf16(g[jn], af, bf[jn][0], bf[jn][1]);
      if ((s == 1 && log2_group == 5) || (s == 3 && ((kk + 64) & ((1 << log2_group) - 1)) == 0))
        flush((kk + 16 * s) >> log2_group, side, groups, has_offset, sums, n, lane, g, acc);
    }
  }
};

// At least 3 blocks per SM: the register cap keeps the rare paths (split-K reduction) from costing occupancy.
template <int B0, int B1, int NT>
__global__ void __launch_bounds__(kThreads, 3) small_kernel(const Args a) {
  extern __shared__ uint4 smem_u4[];
  constexpr int P = passes_of(B1);
  constexpr int RING = 32 * (B0 + B1);  // words per ring slot (both passes' codes)
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int kc = a.tiles_per_split * 64, stride = kc + kPad, rows = a.n + 1;  // activation rows: n, then a zero row
  const std::uint32_t base = smem_addr(smem_u4);
  const std::uint32_t ring_addr = base + 4 * a.lut_words + 4 * warp * kRing * RING;
  std::uint32_t side_addr[2] = {0, 0};
  int side_groups[2] = {0, 0};
  std::uint32_t next = base + 4 * a.lut_words + 4 * kWarps * kRing * RING;
#pragma unroll
  for (int p = 0; p < P; ++p) {
    side_groups[p] = kc >> a.pass[p].log2_group;
    const int per_warp = side_words(kc, a.pass[p].log2_group, a.pass[p].offsets != nullptr) / kWarps;
    side_addr[p] = next + 4 * warp * per_warp;
    next += 4 * kWarps * per_warp;
  }
  // Group sums of the activations, for passes with offsets (b·Σx per group): [P][n][chunk groups] floats.
  float* group_sums = reinterpret_cast<float*>(reinterpret_cast<char*>(smem_u4) + (next - base));
  const int sums_stride = (a.n * (kc >> 5) + 3) & ~3;  // per pass, room for the smallest group (32); 16-byte multiple
  next += 4 * P * sums_stride;
  std::uint32_t* signs_s = reinterpret_cast<std::uint32_t*>(reinterpret_cast<char*>(smem_u4) + (next - base));  // [P][sign_stride]
  const int sign_stride = small_sign_stride(kc);
  next += 4 * P * sign_stride;
  __nv_bfloat16* xs = reinterpret_cast<__nv_bfloat16*>(reinterpret_cast<char*>(smem_u4) + (next - base));  // [P][n + 1][stride]
  const int stripe = blockIdx.x * kWarps + warp;
  const int kt0 = blockIdx.y * a.tiles_per_split, kt1 = min(kt0 + a.tiles_per_split, a.ktiles);
  const bool active = stripe < a.stripes;
  trace_point(a, 0);
  trace_sm(a);

  // The chunk's side data and the first kRing code tiles go out before the prologue.
  // The stream keeps a pointer per pass to its next tile and steps it by a tile: recomputing the address from the tile
  // index cost about 15 instructions per tile in the loop (the compiler rematerialized it under the register cap; SASS
  // of small_kernel<4,0,1>, issue 31).
  const std::size_t lane_words = static_cast<std::size_t>(active ? stripe : 0) * a.ktiles * 32 + lane;
  const std::uint32_t* codes0 = a.pass[0].codes + lane_words * B0;
  const std::uint32_t* codes1 = a.pass[B1 ? 1 : 0].codes + lane_words * (B1 ? B1 : 1);
  const std::uint32_t* next0 = codes0 + static_cast<std::size_t>(kt0) * 32 * B0;  // the next tile to issue, both passes
  const std::uint32_t* next1 = codes1 + static_cast<std::size_t>(kt0) * 32 * (B1 ? B1 : 1);
  int next_kt = kt0;
  auto issue_next = [&](std::uint32_t slot) {
    if (active && next_kt < kt1) {
      issue_codes<B0>(next0, slot, lane);
      if constexpr (B1 != 0) issue_codes<B1>(next1, slot + 4 * 32 * B0, lane);
    }
    cp_async_commit();  // every lane commits a group per tile, empty or not, so the counts stay uniform
    next0 += 32 * B0, next1 += 32 * (B1 ? B1 : 1), ++next_kt;
  };
  // Why the prefetch (docs/GPU.md, issue 31): the ring alone keeps kRing tiles per warp in flight, and it
  // stalls while the prologue below fills the tables and rotates the activations, so each block paid
  // that prologue before its stream could run at full rate. The chunk's remaining tiles (contiguous per
  // stripe and pass) are asked into L2 at once, so DRAM streams from the first cycle and the ring then
  // reads from L2. prefetch_tiles keeps what a wave of resident blocks asks for within part of L2 (a
  // matrix larger than L2, e.g. an LM head, would otherwise evict its own prefetched tiles). Measured on the
  // H100 it gained nothing at 4096 x 4096 and cost 16% at 14336 x 4096, so it is off by default (Impl::l2_prefetch).
  if (active && lane == 0 && kt1 > kt0 + kRing && a.prefetch_tiles > 0) {
    const std::uint32_t tiles = static_cast<std::uint32_t>(min(kt1 - kt0 - kRing, a.prefetch_tiles));
    prefetch_l2(codes0 - lane * B0 + static_cast<std::size_t>(kt0 + kRing) * 32 * B0, tiles * 128 * B0);
    if constexpr (B1 != 0) prefetch_l2(codes1 - lane * B1 + static_cast<std::size_t>(kt0 + kRing) * 32 * B1, tiles * 128 * B1);
  }
  // The prologue's loads first (why: below): this thread's table entries, then the chunk's activations and sign
  // words by cp.async, one group.
  const TableEntries table_entries = tables_load<B0, B1>(a);
  if (!a.pre_rotated)
#pragma unroll
    for (int p = 0; p < P; ++p) {
      issue_activations(a, p, kt0 * 64, kc, xs + p * rows * stride, stride);
      if (a.pass[p].rotated) issue_signs(a.pass[p], kt0 * 64, kc, a.cols, signs_s + p * sign_stride);
    }
  cp_async_commit();  // group 0 (empty when pre-rotated)
  if (active)
#pragma unroll
    for (int p = 0; p < P; ++p) issue_side(a.pass[p], stripe, (kt0 * 64) >> a.pass[p].log2_group, side_groups[p], side_addr[p], lane);
#pragma unroll
  for (int r = 0; r < kRing; ++r) issue_next(ring_addr + 4 * r * RING);  // the side data rides in group 1
  if (a.pre_rotated) {
    // Launched with programmatic dependent launch after rotate_kernel (sm_90): everything above overlapped its run;
    // the rotated activations are read only after it completed and its writes are visible.
    grid_dependency_wait();
#pragma unroll
    for (int p = 0; p < P; ++p) issue_activations(a, p, kt0 * 64, kc, xs + p * rows * stride, stride);
    cp_async_commit();
  }

  // The prologue's own data (tables, the chunk's activations and sign words) was asked for above, before the code
  // ring: at the start the ring's requests are ~10 MB GPU-wide, and loads issued after them waited behind them
  // (the per-block trace measured a 6-8 µs prologue at n = 1 on the H100, docs/GPU.md, issue 31).
  tables_store<B0, B1>(a, table_entries, reinterpret_cast<std::uint32_t*>(smem_u4));
  // This thread's activation and sign copies have landed: the oldest group, or when pre-rotated the newest (and so,
  // with it, the ring's first tiles, issued before the dependency wait and long landed).
  if (a.pre_rotated) cp_async_wait<0>();
  else cp_async_wait<kRing>();
  __syncthreads();         // and every thread's
  // Rotated in place: a warp per (pass, batch row, group), then the zero row. Pre-rotated activations (rotate_kernel,
  // the same arithmetic) need only their group sums, where the pass has offsets.
#pragma unroll
  for (int p = 0; p < P; ++p) {
    const PassArgs& pa = a.pass[p];
    if (!a.pre_rotated || pa.offsets != nullptr) by_group_width(pa.log2_group, [&](auto e) {
      constexpr int E = decltype(e)::value;
      const int groups = kc / (32 * E), tasks = a.n * groups;
      for (int task = warp; task < tasks; task += kWarps) {
        const int t = task / groups, j = task % groups;
        __nv_bfloat16* lane_x = xs + (p * rows + t) * stride + j * 32 * E + E * lane;
        float v[E];
        load_group<E>(lane_x, true, v);
        float sum = 0.0f;
        if (a.pre_rotated) {
#pragma unroll
          for (int i = 0; i < E; ++i) sum += v[i];
        } else {
          const int kl = j * 32 * E + E * lane;  // within the chunk, which starts on a sign word
          const std::uint32_t sign_bits = pa.rotated ? lane_sign_bits<E>(signs_s[p * sign_stride + (kl >> 5)], kl) : 0u;
          sum = rotate_finish<E>(pa.rotated != 0, sign_bits, lane_x, lane, v);
        }
        if (pa.offsets != nullptr) {  // warp-uniform
#pragma unroll
          for (int m = 16; m >= 1; m /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, m);
          if (lane == 0) group_sums[p * sums_stride + t * groups + j] = sum;
        }
      }
    });
    for (int i = threadIdx.x; i < kc / 8; i += kThreads)
      reinterpret_cast<uint4*>(xs + (p * rows + a.n) * stride)[i] = make_uint4(0, 0, 0, 0);
  }
  __syncthreads();
  trace_point(a, 1);

  float acc[NT][4] = {};
  float gacc0[NT][4] = {}, gacc1[NT][4] = {};  // the current group's sums, per pass
  if (active) {
    const std::uint32_t lut0 = base + 4 * lane, lut1 = lut0 + 4 * a.pass[1].lut_offset;
    const bool off0 = a.pass[0].offsets != nullptr, off1 = a.pass[1].offsets != nullptr;
    std::uint32_t b_addr = smem_addr(xs) + b_lane_offset<NT>(stride, lane, a.n);  // rows past n: the zero row
    const std::uint32_t b_pass1 = 2 * rows * stride;
    std::uint32_t slot = ring_addr;
    const std::uint32_t slot_end = ring_addr + 4 * kRing * RING;
    // The side data (lanes copy pieces that other lanes read) came in the first ring group with tile kt0: waited for
    // here by every lane, once. A ring slot's words are lane-private (lane L copies and reads only its own 4·b bytes,
    // issue_codes/read_codes), so the loop needs no __syncwarp: each lane's wait_group covers what it reads.
    cp_async_wait<kRing - 1>();
    __syncwarp();
    for (int kt = kt0; kt < kt1; ++kt) {
      cp_async_wait<kRing - 1>();  // this lane's copies of tile kt have landed
      const int kk = (kt - kt0) * 64;
      if (a.stream_only) {  // keeps the loads alive without the decode: what the memory side alone achieves
        std::uint32_t w[B0];
        read_codes<B0>(slot, lane, w);
        acc[0][0] += __uint_as_float((w[0] ^ w[B0 - 1]) & 0x007fffffu);
      } else {
        std::uint32_t w[B0];
        read_codes<B0>(slot, lane, w);
        GroupScaled<B0, NT>::tile(w, lut0, b_addr, stride, kk, a.pass[0].log2_group, side_addr[0], side_groups[0], off0,
                                  group_sums, a.n, lane, gacc0, acc);
      }
      if constexpr (B1 != 0) if (!a.stream_only) {
        std::uint32_t w[B1 ? B1 : 1];
        read_codes<B1 ? B1 : 1>(slot + 4 * 32 * B0, lane, w);
        GroupScaled<B1 ? B1 : 1, NT>::tile(w, lut1, b_addr + b_pass1, stride, kk, a.pass[1].log2_group, side_addr[1], side_groups[1], off1,
                                           group_sums + sums_stride, a.n, lane, gacc1, acc);
      }
      issue_next(slot);  // tile kt + kRing
      slot += 4 * RING;
      if (slot == slot_end) slot = ring_addr;
      b_addr += 128;  // 64 bf16 columns
    }
  }
  cp_async_wait<0>();
  trace_point(a, 2);

  // Accumulator (j, i): row 16·stripe + lane/4 + 8·(i/2), batch column 8j + 2·(lane%4) + i%2.
  if (a.cluster_splits) {
    cluster_split_k_finish<NT>(a, acc, reinterpret_cast<float*>(smem_u4) + a.lut_words);
  } else {
    if (active)
#pragma unroll
      for (int j = 0; j < NT; ++j)
#pragma unroll
        for (int i = 0; i < 4; ++i) store_out(a, blockIdx.y, a.splits, 16 * stripe + (lane >> 2) + 8 * (i >> 1), 8 * j + 2 * (lane & 3) + (i & 1), acc[j][i]);
    if (a.splits > 1) split_k_finish(a, a.splits, blockIdx.x, blockIdx.x * kWarps * 16, kWarps * 16, 0, a.n);
  }
  trace_point(a, 3);
}

}  // namespace tqb::lut_mma
