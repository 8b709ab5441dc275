#pragma once
// What every lut_mma kernel shares: the replicated pair tables, the activations' rotation in registers, the output
// and the split-K epilogues (global memory; the small kernel's cluster), a code tile in registers, cp.async, programmatic
// dependent launch, the bulk L2 prefetch, and a lane's words of a code tile in shared memory.
#include <cooperative_groups.h>
#include <cuda_bf16.h>

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "kernels/cuda/lut_mma.cuh"
#include "kernels/cuda/lut_mma/args.cuh"

namespace tqb::lut_mma {

// Copies a pair table into shared memory, 32 copies interleaved (entry e of copy L at word 32e + L):
// one global load per entry and thread, then eight 16-byte stores of it, rotated by lane so that the 8
// lanes of each store phase hit 8 different bank quads. (A loop of one load per word was latency-bound:
// 32 dependent round trips to L2 per thread before the first tile could be decoded.)
// Split in a load and a store (tables_load, tables_store) so that a kernel can ask for the entries early (the small
// kernel, before its code ring); a table has at most 256 entries (4-bit pairs), so one per thread.
template <int B>
__device__ __forceinline__ std::uint32_t table_load(const std::uint32_t* lut_g) {
  static_assert((1 << (2 * B)) <= kThreads, "one table entry per thread");
  return threadIdx.x < (1u << (2 * B)) ? __ldg(lut_g + threadIdx.x) : 0u;
}
template <int B>
__device__ __forceinline__ void table_store(std::uint32_t v, std::uint32_t* lut_s) {
  const int e = threadIdx.x, lane = threadIdx.x & 31;
  if (e >= (1 << (2 * B))) return;
  const uint4 v4 = make_uint4(v, v, v, v);
#pragma unroll
  for (int c = 0; c < 8; ++c) *reinterpret_cast<uint4*>(lut_s + 32 * e + 4 * ((c + lane) & 7)) = v4;
}

// This thread's entries of both passes' tables (the second only where it has a table of its own, lut_offset ≠ 0).
struct TableEntries {
  std::uint32_t pass0 = 0, pass1 = 0;
};
template <int B0, int B1>
__device__ __forceinline__ TableEntries tables_load(const Args& a) {
  TableEntries e;
  e.pass0 = table_load<B0>(a.pass[0].lut);
  if constexpr (B1 != 0)
    if (a.pass[1].lut_offset != 0) e.pass1 = table_load<B1>(a.pass[1].lut);
  return e;
}
template <int B0, int B1>
__device__ __forceinline__ void tables_store(const Args& a, const TableEntries& e, std::uint32_t* lut_s) {
  table_store<B0>(e.pass0, lut_s);
  if constexpr (B1 != 0)
    if (a.pass[1].lut_offset != 0) table_store<B1>(e.pass1, lut_s + a.pass[1].lut_offset);
}
template <int B0, int B1>
__device__ __forceinline__ void fill_tables(const Args& a, std::uint32_t* lut_s) {
  tables_store<B0, B1>(a, tables_load<B0, B1>(a), lut_s);
}

template <int E>
__device__ __forceinline__ void load_group(const __nv_bfloat16* src, bool valid, float (&v)[E]) {
  if (!valid) {
#pragma unroll
    for (int e = 0; e < E; ++e) v[e] = 0.0f;
    return;
  }
  __nv_bfloat16 h[E];
  if constexpr (E == 8) *reinterpret_cast<uint4*>(h) = *reinterpret_cast<const uint4*>(src);
  else if constexpr (E == 4) *reinterpret_cast<uint2*>(h) = *reinterpret_cast<const uint2*>(src);
  else if constexpr (E == 2) *reinterpret_cast<std::uint32_t*>(h) = *reinterpret_cast<const std::uint32_t*>(src);
  else h[0] = *src;
#pragma unroll
  for (int e = 0; e < E; ++e) v[e] = __bfloat162float(h[e]);
}

template <int E>
__device__ __forceinline__ void store_group(__nv_bfloat16* dst, const float (&v)[E]) {
  __nv_bfloat16 h[E];
#pragma unroll
  for (int e = 0; e < E; ++e) h[e] = __float2bfloat16_rn(v[e]);
  if constexpr (E == 8) *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(h);
  else if constexpr (E == 4) *reinterpret_cast<uint2*>(dst) = *reinterpret_cast<const uint2*>(h);
  else if constexpr (E == 2) *reinterpret_cast<std::uint32_t*>(dst) = *reinterpret_cast<const std::uint32_t*>(h);
  else *dst = h[0];
}

// One warp: batch row t, the group of width 32·E starting at column k of x (row stride cols), into dst.
// Split in a load and a finish, so that a warp can have several groups' loads in flight.
template <int E>
__device__ __forceinline__ void rotate_load(const Args& a, int t, int k, int lane, float (&v)[E]) {
  const int kl = k + E * lane;
  load_group<E>(a.x + static_cast<std::size_t>(t) * a.cols + kl, t < a.n && kl < a.cols, v);
}
// This lane's E sign bits for columns kl … kl + E − 1 (E·lane-aligned) from the sign word that holds column kl.
template <int E>
__device__ __forceinline__ std::uint32_t lane_sign_bits(std::uint32_t word, int kl) {
  return (word >> (kl & 31)) & ((1u << E) - 1u);
}
// Rotates this lane's E values (when rotated, warp-uniform: signs, then the butterflies), stores them at lane_dst
// (its own place: E ≤ 8 values at column k + E·lane, within one 16-byte chunk of every layout) and returns their sum
// as stored (rounded to bf16), for the group sums of offsets.
template <int E>
__device__ __forceinline__ float rotate_finish(bool rotated, std::uint32_t sign_bits, __nv_bfloat16* lane_dst, int lane, float (&v)[E]) {
  if (rotated) hadamard_in_registers<E>(v, sign_bits, lane);
  store_group<E>(lane_dst, v);
  float sum = 0.0f;
#pragma unroll
  for (int e = 0; e < E; ++e) sum += __bfloat162float(__float2bfloat16_rn(v[e]));
  return sum;
}
// The same for the group at column k of pass p, its sign bits read from the pass's sign words in global memory.
template <int E>
__device__ __forceinline__ float rotate_finish(const Args& a, const PassArgs& p, int k, __nv_bfloat16* lane_dst, int lane, float (&v)[E]) {
  const int kl = k + E * lane;
  // warp-uniform: cols is a multiple of the group, so a group lies wholly inside or outside
  const std::uint32_t signs = p.rotated && kl < a.cols ? lane_sign_bits<E>(__ldg(p.signs + (kl >> 5)), kl) : 0u;
  return rotate_finish<E>(p.rotated != 0, signs, lane_dst, lane, v);
}
template <int E>
__device__ __forceinline__ void rotate_one(const Args& a, const PassArgs& p, int t, int k, __nv_bfloat16* lane_dst, int lane) {
  float v[E];
  rotate_load<E>(a, t, k, lane, v);
  rotate_finish<E>(a, p, k, lane_dst, lane, v);
}

template <class F>
__device__ __forceinline__ void by_group_width(int log2_group, F&& f) {
  switch (log2_group) {
    case 5: f(std::integral_constant<int, 1>{}); break;
    case 6: f(std::integral_constant<int, 2>{}); break;
    case 7: f(std::integral_constant<int, 4>{}); break;
    default: f(std::integral_constant<int, 8>{}); break;
  }
}

// Element i of the output as the caller asked for it: fp32, fp32 added to what is there, or bf16.
__device__ __forceinline__ void put_y(const Args& a, std::size_t i, float v) {
  if (a.y_bf16)
    a.y_bf16[i] = __float2bfloat16_rn(v);
  else if (a.accumulate)
    a.y[i] += v;
  else
    a.y[i] = v;
}

// Output of one accumulator element, or its partial sum when the tile's K is split in `splits` (the grid's split-K:
// a.splits; stream-K: the tile's segments): y[t][row] directly with one split, else partial[split][t][row] (rows_pad
// per batch row).
__device__ __forceinline__ void store_out(const Args& a, int split, int splits, int row, int t, float v) {
  if (splits == 1) {
    if (row < a.rows && t < a.n) put_y(a, static_cast<std::size_t>(t) * a.rows + row, v);
  } else if (t < a.n) {
    a.partial[(static_cast<std::size_t>(split) * a.n + t) * (a.stripes * 16) + row] = v;
  }
}

// The units (kernels/cuda/stream_k.hpp: tile · ktiles + k-tile) this block of a tiled kernel computes, [u0, u1):
// stream-K's share of block blockIdx.x, or the grid's tile (blockIdx.x, blockIdx.y) over split blockIdx.z's k-tiles.
struct BlockUnits {
  std::int64_t u0, u1;
};
__device__ __forceinline__ BlockUnits block_units(const Args& a) {
  if (a.stream_k.blocks > 0) return {a.stream_k.begin(blockIdx.x), a.stream_k.begin(blockIdx.x + 1)};
  const std::int64_t first = (static_cast<std::int64_t>(blockIdx.y) * gridDim.x + blockIdx.x) * a.ktiles;
  const int kt0 = blockIdx.z * a.tiles_per_split;
  return {first + kt0, first + min(kt0 + a.tiles_per_split, a.ktiles)};
}
// Which share of tile `tile`'s K this block computed (x) of how many (y): store_out's split and splits.
__device__ __forceinline__ int2 tile_share(const Args& a, std::int64_t tile) {
  if (a.stream_k.blocks > 0) return make_int2(static_cast<int>(blockIdx.x) - a.stream_k.first_block(tile), a.stream_k.segments(tile));
  return make_int2(static_cast<int>(blockIdx.z), a.splits);
}

// One step of the split-K reduction's fixed order: four splits' partial sums (absent splits 0). Both epilogues below add
// with it, so the global and the cluster reduction give the same bits.
__device__ __forceinline__ float split_sum_step(const float (&part)[4]) { return (part[0] + part[1]) + (part[2] + part[3]); }

// Split-K epilogue, after every thread stored its partial sums: the last of the `splits` blocks of output tile `tile`
// (rows [row0, row0 + nrows) × batch [t0, t0 + ncols)) to arrive sums all splits in a fixed order
// (((s0 + s1) + (s2 + s3)) + ((s4 + s5) + ...)), so the result does not depend on which block came last.
// Threads: the block's size (every thread takes part; the producer-decoded wgmma kernel has three warpgroups).
template <int Threads = kThreads>
__device__ __forceinline__ void split_k_finish(const Args& a, int splits, int tile, int row0, int nrows, int t0, int ncols) {
  __shared__ int is_last;
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) is_last = atomicAdd(a.counters + tile, 1) == splits - 1;
  __syncthreads();
  if (!is_last) return;
  __threadfence();
  const std::size_t rows_pad = static_cast<std::size_t>(a.stripes) * 16, split_stride = static_cast<std::size_t>(a.n) * rows_pad;
  const float* __restrict__ partial = a.partial;
  // kOut outputs per thread and round, all their loads issued before the first add: a round trip to L2
  // per round instead of per output (a 256×64 tile was 64 dependent round trips per thread, 45 µs).
  constexpr int kOut = 4;
  for (int first = threadIdx.x; first < nrows * ncols; first += kOut * Threads) {
    float sum[kOut];
#pragma unroll
    for (int u = 0; u < kOut; ++u) sum[u] = 0.0f;
    for (int s0 = 0; s0 < splits; s0 += 4) {
      float part[kOut][4];
#pragma unroll
      for (int u = 0; u < kOut; ++u) {
        const int idx = first + u * Threads, row = row0 + idx % nrows, t = t0 + idx / nrows;
        const bool ok = idx < nrows * ncols && row < a.rows && t < a.n;
#pragma unroll
        for (int k = 0; k < 4; ++k)
          part[u][k] = ok && s0 + k < splits ? __ldcg(partial + (s0 + k) * split_stride + static_cast<std::size_t>(t) * rows_pad + row) : 0.0f;
      }
#pragma unroll
      for (int u = 0; u < kOut; ++u) sum[u] += split_sum_step(part[u]);
    }
#pragma unroll
    for (int u = 0; u < kOut; ++u) {
      const int idx = first + u * Threads, row = row0 + idx % nrows, t = t0 + idx / nrows;
      if (idx < nrows * ncols && row < a.rows && t < a.n) put_y(a, static_cast<std::size_t>(t) * a.rows + row, sum[u]);
    }
  }
  if (threadIdx.x == 0) a.counters[tile] = 0;
}

// Split-K epilogue of the small kernel through its cluster (sm_90): the a.splits blocks of a row block form one
// thread-block cluster (1 × splits; rank = split). Each block leaves its partial sums in its own shared memory, and
// after one cluster barrier each block sums a share of the row block's outputs from every block's shared memory
// (distributed shared memory), in split_k_finish's fixed order, so both epilogues give the same bits. Why: the
// global epilogue costs three dependent round trips to L2 (the fence behind the block's stores, the counter's
// atomic, the last block's loads), each queued behind the whole GPU's code stream: 2.8 µs median, 11 µs at most
// per block at n = 1 on 14336 x 4096 (H100 trace, docs/GPU.md, issue 31). red: kWarps · 16 · n floats of this
// block's shared memory, free once every warp's stream has ended (the code ring).
template <int NT>
__device__ __forceinline__ void cluster_split_k_finish(const Args& a, const float (&acc)[NT][4], float* red) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  namespace cg = cooperative_groups;
  const cg::cluster_group cluster = cg::this_cluster();
  constexpr int R = kWarps * 16;  // the block's rows
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  __syncthreads();  // every warp is past its code ring, which red overwrites
#pragma unroll
  for (int j = 0; j < NT; ++j)
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int t = 8 * j + 2 * (lane & 3) + (i & 1);
      if (t < a.n) red[t * R + 16 * warp + (lane >> 2) + 8 * (i >> 1)] = acc[j][i];
    }
  cluster.sync();  // every block's partial sums are written and visible across the cluster
  const int S = a.splits, rank = static_cast<int>(cluster.block_rank());
  for (int e = rank * kThreads + threadIdx.x; e < R * a.n; e += S * kThreads) {
    float sum = 0.0f;
    for (int s0 = 0; s0 < S; s0 += 4) {
      float part[4];
#pragma unroll
      for (int k = 0; k < 4; ++k) part[k] = s0 + k < S ? *cluster.map_shared_rank(red + e, s0 + k) : 0.0f;
      sum += split_sum_step(part);
    }
    const int t = e / R, row = blockIdx.x * R + e % R;
    if (row < a.rows) put_y(a, static_cast<std::size_t>(t) * a.rows + row, sum);
  }
  cluster.sync();  // no block leaves while another still reads its shared memory
#else
  (void)a, (void)acc, (void)red;  // the host launches clusters only on sm_90 (LutMmaMatrix::Impl::make_small_plan)
#endif
}

template <int B>
struct TileRegs {
  std::uint32_t w[B];
  std::uint32_t scale[2], offset[2];  // groups of sub-tiles 0–1 and 2–3 (differ only when g = 32)
};

template <int B>
__device__ __forceinline__ void load_tile(const PassArgs& p, int stripe, int ktiles, int kt, int lane, TileRegs<B>& r) {
  load_words<B>(p.codes + ((static_cast<std::size_t>(stripe) * ktiles + kt) * 32 + lane) * B, r.w);
  const int j0 = (kt * 64) >> p.log2_group, j1 = (kt * 64 + 32) >> p.log2_group;
  const std::size_t base = static_cast<std::size_t>(stripe) * p.groups_alloc * 8 + (lane >> 2);
  r.scale[0] = __ldg(p.scales + base + 8 * j0);
  r.scale[1] = j1 == j0 ? r.scale[0] : __ldg(p.scales + base + 8 * j1);
  r.offset[0] = r.offset[1] = 0u;
  if (p.offsets != nullptr) {
    r.offset[0] = __ldg(p.offsets + base + 8 * j0);
    r.offset[1] = j1 == j0 ? r.offset[0] : __ldg(p.offsets + base + 8 * j1);
  }
}

// cp.async: 4, 8 or 16 bytes from global to shared memory; src_bytes 0 fills zeros.
template <int N>
__device__ __forceinline__ void cp_async(std::uint32_t dst, const void* src) {
  if constexpr (N == 16) asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(src));
  else asm volatile("cp.async.ca.shared.global [%0], [%1], %2;\n" ::"r"(dst), "l"(src), "n"(N));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

// Programmatic dependent launch (sm_90; no-ops before): a primary kernel lets its dependent start early, and the
// dependent waits, where it first needs the primary's output, for the primary to complete and its writes to be
// visible (cudaLaunchAttributeProgrammaticStreamSerialization on the dependent's launch).
__device__ __forceinline__ void launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::);
#endif
}
__device__ __forceinline__ void grid_dependency_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

// Hopper's bulk L2 prefetch: `bytes` (a multiple of 16, from a 16-byte aligned address) requested from
// DRAM into L2 by one instruction, with nothing to wait for; a no-op before sm_90.
__device__ __forceinline__ void prefetch_l2(const void* src, std::uint32_t bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;\n" ::"l"(src), "r"(bytes) : "memory");
#else
  (void)src, (void)bytes;
#endif
}

template <int B>
__device__ __forceinline__ void read_codes(std::uint32_t slot, int lane, std::uint32_t (&w)[B]) {
  if constexpr (B == 4) {
    asm volatile("ld.shared.v4.b32 {%0,%1,%2,%3}, [%4];\n" : "=r"(w[0]), "=r"(w[1]), "=r"(w[2]), "=r"(w[3]) : "r"(slot + 16 * lane));
  } else if constexpr (B == 2) {
    asm volatile("ld.shared.v2.b32 {%0,%1}, [%2];\n" : "=r"(w[0]), "=r"(w[1]) : "r"(slot + 8 * lane));
  } else {
#pragma unroll
    for (int i = 0; i < B; ++i) w[i] = lds32(slot + 4 * (B * lane + i));
  }
}

}  // namespace tqb::lut_mma
