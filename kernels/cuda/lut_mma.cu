// lut_mma: y = Ŵx from 2/3/4-bit codebook codes (TurboQuant, RTN, residual stacks of two passes) on
// NVIDIA GPUs of compute capability 8.0+, through the layout of lut_mma_layout.hpp. Design, error bound
// and measured figures: docs/GPU.md.
//
// Both kernels decode weights straight into mma.sync A fragments: per pair of codes one shared-memory
// lookup in a 32-way replicated pair table (conflict-free: lane L reads copy L); the activations,
// rotated per group by the randomized Hadamard transform, are the B operand in shared memory, read
// with ldmatrix. Accumulation is fp32.
//
// - small (n ≤ 16): one launch. Each block owns 8 stripes (128 rows) and a K-chunk (split-K, the chunk
//   chosen per n so that one wave of resident blocks fills the GPU); each warp streams its stripe's
//   16×64 code tiles through a 6-tile cp.async ring in shared memory, issued before the prologue, which
//   copies the pair tables, stages the chunk's scales and rotates the chunk's activations
//   (hadamard_in_registers: a warp per (batch column, group), butterflies by shuffles). The mma sums
//   each group in fp32 and the group is scaled at its end (GroupScaled). Partial sums of the chunks are
//   reduced in a fixed order by the block that finishes a row block last, so results are deterministic.
// - large (n > 16): a standalone rotation kernel writes the rotated activations (bf16, one copy per
//   pass), then a tiled kernel: block = 256 rows × 64 batch columns, each warp 32 rows; 64-column
//   activation tiles arrive by cp.async, three stages deep, code tiles one tile ahead in registers; one
//   bf16x2 fma per pair of weights applies scale and offset; split-K where the grid is small.

#include <cooperative_groups.h>
#include <cublas_v2.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>

#include "common/env.hpp"
#include "kernels/cuda/cuda_check.hpp"
#include "kernels/cuda/gpu.hpp"
#include "kernels/cuda/lut_mma.cuh"
#include "kernels/cuda/bulk_copy.cuh"
#include "kernels/cuda/wgmma.cuh"

namespace tqb::lut_mma {

struct PassArgs {
  const std::uint32_t* codes = nullptr;
  const std::uint32_t* scales = nullptr;
  const std::uint32_t* offsets = nullptr;  // null: no offset
  const std::uint32_t* signs = nullptr;
  const std::uint32_t* lut = nullptr;      // 2^(2b) entries
  int log2_group = 0, groups_alloc = 0, rotated = 0, lut_offset = 0;  // lut_offset: words into the shared tables
};

struct Args {
  PassArgs pass[2];
  int rows = 0, cols = 0, stripes = 0, ktiles = 0, n = 0;
  int lut_words = 0;                      // shared-memory words of the replicated tables
  const __nv_bfloat16* x = nullptr;       // n × cols
  const __nv_bfloat16* xr = nullptr;      // the rotated activations, laid out as xr_layout says
  int xr_layout = 0;                      // XrLayout
  int xr_tile_rows = 0;                   // kXrWgmmaTiles: batch rows per tile (the wgmma kernel's N: 32, 64, 128 or 256)
  __nv_bfloat16* w_hat = nullptr;         // dequantized path: [rows of the chunk][passes · cols_pad] bf16
  int row_stripe0 = 0;                    // dequantized path: the chunk's first stripe
  float* y = nullptr;                     // n × rows
  __nv_bfloat16* y_bf16 = nullptr;        // n × rows, instead of y when given (the next product's input)
  int accumulate = 0;                     // y += Ŵx (a residual connection) instead of y = Ŵx
  float* partial = nullptr;               // small, splits > 1: [splits][n][rows_pad]
  int* counters = nullptr;                // splits > 1: one per output tile, zero between launches
  int tiles_per_split = 0, splits = 1;
  int x_aligned16 = 0;  // x is 16-byte aligned (the small kernel copies it 16 bytes at a time, else 4)
  int pre_rotated = 0;  // small kernel: xr holds the rotated activations (kXrPassMajor, by rotate_kernel) to copy, not x
  int cluster_splits = 0;  // small kernel, splits > 1 on sm_90: the splits of a row block are one thread-block cluster
                           // (1 × splits) and sum their partial sums through distributed shared memory
                           // (cluster_split_k_finish); 0: through global memory (partial, counters, split_k_finish)
  int stream_only = 0;  // diagnostic (TQB_LUT_MMA_STREAM_ONLY=1): the small kernel moves the codes but skips the decode and mma
  int ws_skip = 0;      // diagnostic (TQB_LUT_MMA_WS_SKIP): wgmma_ws_kernel's producer skips the decode (1) or its consumers the
                        // wgmmas (2), the pipeline's barriers and copies unchanged: which side sets the pace (wrong results)
  int prefetch_tiles = 0;  // small kernel on sm_90+: up to this many of the chunk's code tiles past the ring asked into L2 at the start
  // Diagnostic (LutMmaMatrix::set_trace): the small kernel's blocks write kTracePoints values each, [block (x-major)]
  // [point]: the global timer (ns) at start, prologue done, warp 0's stream done, block done; then the SM's id.
  unsigned long long* trace = nullptr;
};
constexpr int kTracePoints = gpu::LutMmaMatrix::kTraceFields;
static_assert(kTracePoints == 5, "four timer readings and the SM's id");

// Field i of this block's trace (thread 0 only; nothing when tracing is off).
__device__ __forceinline__ void trace_store(const Args& a, int i, unsigned long long v) {
  if (a.trace != nullptr && threadIdx.x == 0) a.trace[(static_cast<std::size_t>(blockIdx.y) * gridDim.x + blockIdx.x) * kTracePoints + i] = v;
}
// Timer point i (0-3) of this block's trace.
__device__ __forceinline__ void trace_point(const Args& a, int i) {
  if (a.trace == nullptr) return;
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  trace_store(a, i, t);
}
// The block's SM (the trace's last field): which blocks shared an SM, and whether the SMs holding more blocks end later.
__device__ __forceinline__ void trace_sm(const Args& a) {
  if (a.trace == nullptr) return;
  unsigned sm;
  asm volatile("mov.u32 %0, %%smid;" : "=r"(sm));
  trace_store(a, 4, sm);
}

__host__ __device__ constexpr int passes_of(int b1) { return b1 == 0 ? 1 : 2; }

// How the rotation lays out the activations for the kernel that reads them (Args::xr).
enum XrLayout : int {
  kXrPassMajor = 0,   // the large kernel: [passes][n][cols_pad]
  kXrBatchMajor = 1,  // the dequantized path: [n][passes][cols_pad] (its GEMM's K is passes · cols_pad)
  kXrWgmmaTiles = 2,  // wgmma: [passes][ceil(n / R)][ktiles] tiles of R = xr_tile_rows batch rows × 64 columns, each
                      // R · 128 bytes contiguous and already 128-byte swizzled (the 16-byte chunk c of row r at chunk
                      // c ^ (r mod 8)), so that one bulk copy puts a tile in shared memory as wgmma's B operand reads it
};
// Element offset of (pass p, batch row t, column k) in the wgmma tiles of R rows; row_blocks = ceil(n / R).
__host__ __device__ constexpr std::size_t wg_tile_offset(int p, int t, int k, int R, int row_blocks, int ktiles) {
  return ((static_cast<std::size_t>(p) * row_blocks + t / R) * ktiles + (k >> 6)) * (64 * static_cast<std::size_t>(R)) + (t % R) * 64 +
         ((((k >> 3) & 7) ^ (t & 7)) << 3) + (k & 7);
}

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

// Output of one accumulator element, or its partial sum when K is split: y[t][row] directly with one
// split, else partial[split][t][row] (rows_pad per batch row).
__device__ __forceinline__ void store_out(const Args& a, int split, int row, int t, float v) {
  if (a.splits == 1) {
    if (row < a.rows && t < a.n) put_y(a, static_cast<std::size_t>(t) * a.rows + row, v);
  } else if (t < a.n) {
    a.partial[(static_cast<std::size_t>(split) * a.n + t) * (a.stripes * 16) + row] = v;
  }
}

// One step of the split-K reduction's fixed order: four splits' partial sums (absent splits 0). Both epilogues below add
// with it, so the global and the cluster reduction give the same bits.
__device__ __forceinline__ float split_sum_step(const float (&part)[4]) { return (part[0] + part[1]) + (part[2] + part[3]); }

// Split-K epilogue, after every thread stored its partial sums: the last block of output tile `tile`
// (rows [row0, row0 + nrows) × batch [t0, t0 + ncols)) to arrive sums all splits in a fixed order
// (((s0 + s1) + (s2 + s3)) + ((s4 + s5) + ...)), so the result does not depend on which block came last.
// Threads: the block's size (every thread takes part; the producer-decoded wgmma kernel has three warpgroups).
template <int Threads = kThreads>
__device__ __forceinline__ void split_k_finish(const Args& a, int tile, int row0, int nrows, int t0, int ncols) {
  __shared__ int is_last;
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) is_last = atomicAdd(a.counters + tile, 1) == a.splits - 1;
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
    for (int s0 = 0; s0 < a.splits; s0 += 4) {
      float part[kOut][4];
#pragma unroll
      for (int u = 0; u < kOut; ++u) {
        const int idx = first + u * Threads, row = row0 + idx % nrows, t = t0 + idx / nrows;
        const bool ok = idx < nrows * ncols && row < a.rows && t < a.n;
#pragma unroll
        for (int k = 0; k < 4; ++k)
          part[u][k] = ok && s0 + k < a.splits ? __ldcg(partial + (s0 + k) * split_stride + static_cast<std::size_t>(t) * rows_pad + row) : 0.0f;
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

// ---------------------------------------------------------------------------------------------------
// small: n ≤ 16 (NT = 1 or 2 n8-tiles)

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
        for (int i = 0; i < 4; ++i) store_out(a, blockIdx.y, 16 * stripe + (lane >> 2) + 8 * (i >> 1), 8 * j + 2 * (lane & 3) + (i & 1), acc[j][i]);
    if (a.splits > 1) split_k_finish(a, blockIdx.x, blockIdx.x * kWarps * 16, kWarps * 16, 0, a.n);
  }
  trace_point(a, 3);
}

// ---------------------------------------------------------------------------------------------------
// large: n > 16

constexpr int kLargeStripes = 2;                      // stripes per warp
constexpr int kLargeRows = kWarps * kLargeStripes * 16;  // 256 rows per block
constexpr int kLargeCols = 64;                        // batch columns per block (8 n8-tiles)
constexpr int kLargeStages = 3;
constexpr int kLargeStride = 64 + kPad;               // one 64-column k-tile per stage

// Rotated activations for every pass: grid (ceil(n·groups / 8), passes), a warp per (row, group).
__global__ void __launch_bounds__(kThreads) rotate_kernel(const Args a) {
  launch_dependents();  // the small kernel, when launched as its dependent, starts its prologue meanwhile
  const PassArgs& p = a.pass[blockIdx.y];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int cols_pad = a.ktiles * 64;
  by_group_width(p.log2_group, [&](auto e) {
    constexpr int E = decltype(e)::value;
    const int groups = a.cols / (32 * E);
    const int task = blockIdx.x * kWarps + warp;
    if (task >= a.n * groups) return;
    const int t = task / groups, j = task % groups;
    const int k = j * 32 * E, kl = k + E * lane;
    std::size_t at;
    if (a.xr_layout == kXrWgmmaTiles) {
      at = wg_tile_offset(blockIdx.y, t, kl, a.xr_tile_rows, (a.n + a.xr_tile_rows - 1) / a.xr_tile_rows, a.ktiles);
    } else {
      const std::size_t row = a.xr_layout == kXrBatchMajor ? static_cast<std::size_t>(t) * gridDim.y + blockIdx.y : static_cast<std::size_t>(blockIdx.y) * a.n + t;
      at = row * cols_pad + kl;
    }
    rotate_one<E>(a, p, t, k, const_cast<__nv_bfloat16*>(a.xr) + at, lane);
  });
}

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
        if (stripe0 + s < a.stripes) store_out(a, blockIdx.z, row, t, acc[s][j][i]);
      }
  if (a.splits > 1)
    split_k_finish(a, blockIdx.y * gridDim.x + blockIdx.x, blockIdx.y * kLargeRows, kLargeRows, t0, kLargeCols);
}

// ---------------------------------------------------------------------------------------------------
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
  const int t0 = blockIdx.x * kWgCols;
  int stripe[kWgStripes];
#pragma unroll
  for (int s = 0; s < kWgStripes; ++s) stripe[s] = blockIdx.y * (kWarps * kWgStripes) + 4 * kWgStripes * wg + 4 * s + wq;
  const int kt0 = blockIdx.z * a.tiles_per_split, kt1 = min(kt0 + a.tiles_per_split, a.ktiles);  // split-K range
  const int x_row_blocks = (a.n + kWgCols - 1) / kWgCols;
  auto stage_addr = [&](int kt) { return xs + static_cast<std::uint32_t>(((kt - kt0) % kStages) * kStageBytes); };
  auto stage_bar = [&](int kt) { return bars + 8u * static_cast<std::uint32_t>((kt - kt0) % kStages); };
  // This warp's code slot of (stripe s, pass p) in a stage: 128·B bytes per stripe, passes after each other.
  auto code_slot = [&](std::uint32_t st, int s, int p) {
    return st + kCodes + (warp * kWgStripes + s) * 128 * (B0 + B1) + (p == 0 ? 0 : 128 * B0);
  };
  auto side_slot = [&](std::uint32_t st, int s, int p) { return st + kSide + ((p * kWarps + warp) * kWgStripes + s) * kWgSideBytes; };
  // Lane 0 of each warp: tile kt of its stripes' codes and side words, and (warp 0) the activation tiles, all
  // announced on the stage's barrier (one arrival per warp) before they are issued.
  auto issue = [&](int kt) {
    if (lane != 0) return;
    const std::uint32_t st = stage_addr(kt), bar = stage_bar(kt);
    std::uint32_t bytes = warp == 0 ? P * kWgTileBytes : 0u;
#pragma unroll
    for (int p = 0; p < P; ++p) {
      const std::uint32_t side = (a.pass[p].log2_group == 5 ? 64u : 32u) * (a.pass[p].offsets != nullptr ? 2u : 1u);
      bytes += kWgStripes * (128u * (p == 0 ? B0 : B1) + side);
    }
    mbarrier_arrive_expect_tx(bar, bytes);
    if (warp == 0)
#pragma unroll
      for (int p = 0; p < P; ++p)
        bulk_copy_g2s(st + p * kWgTileBytes, a.xr + wg_tile_offset(p, t0, kt * 64, kWgCols, x_row_blocks, a.ktiles), kWgTileBytes, bar);
#pragma unroll
    for (int s = 0; s < kWgStripes; ++s) {
      const int src = min(stripe[s], a.stripes - 1);  // rows past the matrix compute garbage that is never stored
#pragma unroll
      for (int p = 0; p < P; ++p) {
        const PassArgs& pa = a.pass[p];
        const int b = p == 0 ? B0 : B1;
        bulk_copy_g2s(code_slot(st, s, p), pa.codes + (static_cast<std::size_t>(src) * a.ktiles + kt) * 32 * b, 128u * b, bar);
        // The tile's groups: one (g ≥ 64) or two adjacent (g = 32), 8 words each, scales then offsets.
        const std::uint32_t gbytes = pa.log2_group == 5 ? 64u : 32u;
        const std::size_t side = (static_cast<std::size_t>(src) * pa.groups_alloc + ((kt * 64) >> pa.log2_group)) * 8;
        bulk_copy_g2s(side_slot(st, s, p), pa.scales + side, gbytes, bar);
        if (pa.offsets != nullptr) bulk_copy_g2s(side_slot(st, s, p) + 64, pa.offsets + side, gbytes, bar);
      }
    }
  };

  if (threadIdx.x == 0) {
    for (int s = 0; s < kStages; ++s) mbarrier_init(bars + 8u * s, kWarps);
    fence_barrier_init();
  }
  __syncthreads();
  issue(kt0);
  if (kt0 + 1 < kt1) issue(kt0 + 1);
  fill_tables<B0, B1>(a, lut_s);

  float acc[kWgStripes][kWgCols / 2] = {};
#pragma unroll
  for (int s = 0; s < kWgStripes; ++s) wgmma_fence_operands(acc[s]);
  std::uint32_t af[2][kWgStripes][4];  // fragment buffers: step i decodes into af[i & 1]
  const std::uint32_t lut_addr[2] = {smem_addr(lut_s) + 4 * lane, smem_addr(lut_s) + 4 * (a.pass[1].lut_offset + lane)};
  const int gid = lane >> 2;
  for (int kt = kt0; kt < kt1; ++kt) {
    if constexpr (kStages == 3) wgmma_wait<0>();  // the stage rewritten below was read by tile kt - 1
    __syncthreads();  // (and, the first time, the tables are filled)
    if (kt + 2 < kt1) issue(kt + 2);  // four stages: the stage of tile kt - 2, whose wgmmas were waited for in tile kt - 1
    const std::uint32_t st = stage_addr(kt);
    mbarrier_wait(stage_bar(kt), static_cast<std::uint32_t>(((kt - kt0) / kStages) & 1));
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

  // Accumulator i of n8 block j (the m16n8 C layout per warp): row gid + 8·(i >> 1), batch column 8j + 2·tig + (i & 1).
#pragma unroll
  for (int s = 0; s < kWgStripes; ++s)
#pragma unroll
    for (int j = 0; j < kWgCols / 8; ++j)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int row = 16 * stripe[s] + gid + 8 * (i >> 1), t = t0 + 8 * j + 2 * (lane & 3) + (i & 1);
        if (stripe[s] < a.stripes) store_out(a, blockIdx.z, row, t, acc[s][4 * j + i]);
      }
  if (a.splits > 1) split_k_finish(a, blockIdx.y * gridDim.x + blockIdx.x, blockIdx.y * kWgRows, kWgRows, t0, kWgCols);
}

// ---------------------------------------------------------------------------------------------------
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
// The widest case (4-bit tables, N = 256) within Hopper's 227 KB of opt-in shared memory less the 1 KB the host keeps
// back (LutMmaMatrix): otherwise the kernel would never be available, and its tests would skip it silently.
static_assert(4 * (32 << 8) + 8 + kWsBarrierBytes + 1024 + ws_b_stages(256) * 256 * 128 + ws_a_slots(256) * kWsRows * 128 +
                      kWsLoadDepth * ws_load_bytes(4) <=
                  227 * 1024 - 1024,
              "wgmma_ws_kernel's stages fit an H100's shared memory");

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
    const std::uint32_t gbytes = pa.log2_group == 5 ? 64u : 32u;  // a k-tile's groups: two of 32, or one larger
    auto issue_codes_of = [&](int i) {
      const int l = i % kWsLoadDepth, kt = kt0 + i;
      const std::uint32_t slot = l_base + l * kLoadBytes + warp * kWarpLoadBytes, bar = l_full + 8 * (4 * l + warp);
      mbarrier_arrive_expect_tx(bar, 2 * (128u * B + gbytes * (pa.offsets != nullptr ? 2u : 1u)));
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int src = min(stripe0 + 2 * warp + h, a.stripes - 1);  // rows past the matrix compute garbage never stored
        bulk_copy_g2s(slot + h * 128 * B, pa.codes + (static_cast<std::size_t>(src) * a.ktiles + kt) * 32 * B, 128u * B, bar);
        const std::uint32_t side_slot = slot + 2 * 128 * B + h * kWgSideBytes;
        const std::size_t side = (static_cast<std::size_t>(src) * pa.groups_alloc + ((kt * 64) >> pa.log2_group)) * 8;
        bulk_copy_g2s(side_slot, pa.scales + side, gbytes, bar);
        if (pa.offsets != nullptr) bulk_copy_g2s(side_slot + 64, pa.offsets + side, gbytes, bar);
      }
    };
    if (lane == 0)
      for (int i = 0; i < min(tiles, kWsLoadDepth); ++i) issue_codes_of(i);
    if (threadIdx.x == 0)
      for (int i = 0; i < min(tiles, kBStages); ++i) issue_b(i);
    const std::uint32_t lut_addr = smem_addr(lut_s) + 4 * lane;
    // stmatrix: lanes 8m … 8m + 7 address the rows of matrix m (register m of the A fragment): rows +8 for odd m,
    // the second 8-column chunk of the k16 step for m ≥ 2.
    const int m_row = (lane & 7) + 8 * ((lane >> 3) & 1), m_chunk = lane >> 4;
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
          const int r = 16 * st + m_row, chunk = 2 * sub + m_chunk;  // row r's 16-byte chunk c sits at c ^ (r mod 8)
          stmatrix_x4(a_tile + r * 128 + ((chunk ^ (r & 7)) << 4), af);
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
        if (stripe < a.stripes) store_out(a, blockIdx.z, row, t, acc[4 * j + e]);
      }
  }
  if (a.splits > 1) split_k_finish<kWsThreads>(a, blockIdx.y * gridDim.x + blockIdx.x, blockIdx.y * kWsRows, kWsRows, t0, N);
}

// ---------------------------------------------------------------------------------------------------
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

namespace tqb::gpu {

using namespace tqb::lut_mma;

namespace {

using KernelFn = void (*)(Args);

struct Kernels {
  KernelFn small[2] = {nullptr, nullptr};  // NT = 1, 2
  KernelFn large = nullptr;
  KernelFn dequantize = nullptr;
  KernelFn wgmma[4] = {nullptr, nullptr, nullptr, nullptr};  // N = 32, 64, 128, 256 (wg_cols_for); 256 for one pass only
  KernelFn wgmma_ws[2] = {nullptr, nullptr};  // the producer-decoded wgmma kernel, N = 128, 256 (ws_cols_for); one pass only
};
constexpr int kWgWidths[4] = {32, 64, 128, 256};
constexpr int wg_index(int cols) { return cols == 32 ? 0 : cols == 64 ? 1 : cols == 128 ? 2 : 3; }

template <int B0, int B1>
Kernels kernels_for() {
  KernelFn wg256 = nullptr, ws128 = nullptr, ws256 = nullptr;
  if constexpr (B1 == 0) wg256 = wgmma_kernel<B0, B1, 256>, ws128 = wgmma_ws_kernel<B0, 128>, ws256 = wgmma_ws_kernel<B0, 256>;
  return {{small_kernel<B0, B1, 1>, small_kernel<B0, B1, 2>}, large_kernel<B0, B1>, dequantize_kernel<B0, B1>,
          {wgmma_kernel<B0, B1, 32>, wgmma_kernel<B0, B1, 64>, wgmma_kernel<B0, B1, 128>, wg256}, {ws128, ws256}};
}

// Passes are summed, so a stack runs with its widest pass first: (b0, b1) with b0 ≥ b1.
Kernels pick_kernels(int b0, int b1) {
  switch (b0 * 10 + b1) {
    case 20: return kernels_for<2, 0>();
    case 30: return kernels_for<3, 0>();
    case 40: return kernels_for<4, 0>();
    case 22: return kernels_for<2, 2>();
    case 32: return kernels_for<3, 2>();
    case 33: return kernels_for<3, 3>();
    case 42: return kernels_for<4, 2>();
    case 43: return kernels_for<4, 3>();
    case 44: return kernels_for<4, 4>();
  }
  throw std::invalid_argument("lut_mma: no kernel for passes of " + std::to_string(b0) + " and " + std::to_string(b1) + " bits");
}

}  // namespace

// The dequantized path's shared state: one cuBLAS handle for every matrix (a handle per matrix would be
// 224 handles in an 8B forward) and one bf16 workspace per stream, grown on demand to at most
// kDequantChunkBytes (larger matrices, e.g. an LM head, go through it in chunks of stripes). Both live
// while any matrix does (DequantUser counts them) and go with the last one, so that nothing is left for
// exit, when the CUDA context may already be gone (and compute-sanitizer's leak check finds nothing).
constexpr std::size_t kDequantChunkBytes = std::size_t{64} << 20;  // TQB_LUT_MMA_DEQUANT_CHUNK_MB overrides it (tuning)
struct DequantShared {
  std::mutex mutex;
  cublasHandle_t handle = nullptr;
  std::map<cudaStream_t, DeviceBuffer> workspace;
  int users = 0;
};
DequantShared& dequant_shared() {
  static DequantShared* s = new DequantShared();  // never destroyed: matrices in static storage may outlive it
  return *s;
}
// One matrix's claim on DequantShared; the last to go releases the handle and the workspaces.
struct DequantUser {
  DequantUser() {
    DequantShared& sh = dequant_shared();
    std::lock_guard<std::mutex> lock(sh.mutex);
    ++sh.users;
  }
  ~DequantUser() {
    DequantShared& sh = dequant_shared();
    std::lock_guard<std::mutex> lock(sh.mutex);
    if (--sh.users > 0) return;
    if (sh.handle) cublasDestroy(sh.handle);  // its status is of no use here: a destructor must not throw
    sh.handle = nullptr;
    sh.workspace.clear();
  }
  DequantUser(const DequantUser&) = delete;
  DequantUser& operator=(const DequantUser&) = delete;
};
void cublas_ok(cublasStatus_t st, const char* what) {
  if (st != CUBLAS_STATUS_SUCCESS) throw std::runtime_error(std::string("lut_mma dequantized path: cuBLAS error in ") + what + ": " + cublasGetStatusString(st));
}

struct SmallPlan {
  int tiles_per_split = 0, splits = 0;
  std::size_t smem = 0;
  int blocks_per_sm = 0;
  bool cluster = false;  // splits > 1 summed through the cluster's shared memory (Args::cluster_splits)
};
// The most splits one cluster holds: 16 on the H100 with cudaFuncAttributeNonPortableClusterSizeAllowed (8 portable).
constexpr int kMaxClusterSplits = 16;
namespace {
// The launch attribute that makes the `splits` small-kernel blocks of a row block one cluster (grid: row blocks × splits).
cudaLaunchAttribute small_cluster_attr(int splits) {
  cudaLaunchAttribute attr{};
  attr.id = cudaLaunchAttributeClusterDimension;
  attr.val.clusterDim.x = 1, attr.val.clusterDim.y = static_cast<unsigned>(splits), attr.val.clusterDim.z = 1;
  return attr;
}
}  // namespace

struct LutMmaMatrix::Impl {
  LutMmaLayout shape;  // the layout's sizes and per-pass flags (code arrays released after upload)
  std::vector<int> order;  // passes by decreasing width
  std::vector<DeviceBuffer> buffers;
  Args base;
  Kernels kernels;
  int sms = 0;
  // By split-K reduction (0 global, 1 cluster) and batch size n = 1..16: the global plans at construction (they also
  // serve earlier GPUs, and their failure is the layout's error), the cluster plans when first needed (a Hopper matrix
  // that the rule gives the global reduction never pays their occupancy queries).
  mutable SmallPlan small[2][16];
  mutable std::once_flag cluster_plans_once;
  // The small kernel's choices as set (set_small_cluster_reduce, set_small_pre_rotation: 1 / 0, -1 automatic) and as the
  // environment forces them (TQB_LUT_MMA_CLUSTER, TQB_LUT_MMA_PREROTATE; -1 unset), which the automatic choice obeys,
  // so that a program resetting its own choice to automatic (bench_gpu after its columns) keeps the environment's.
  int cluster_reduce = -1, env_cluster_reduce = -1;  // the split-K through the cluster (sm_90), else global memory
  int pre_rotate = -1, env_pre_rotate = -1;          // the rotation kernel first, else in every block's prologue
  int smem_optin = 0;  // the device's shared memory per block with opt-in
  int stream_only = 0;  // TQB_LUT_MMA_STREAM_ONLY: a diagnostic, see Args
  int pdl = 1;           // TQB_LUT_MMA_PDL=0: the pre-rotated small kernel launched in plain stream order
  // Off by default: on the H100 it gained nothing at 4096 x 4096 (16.77 against 16.83 us at n = 1) and cost 16%
  // at 14336 x 4096 (32.70 against 28.16 us): docs/GPU.md, issue 31. set_l2_prefetch or TQB_LUT_MMA_PREFETCH=1.
  int l2_prefetch = 0;
  int l2_bytes = 0, cc_major = 0;
  std::size_t prefill_min_batch = SIZE_MAX;  // lut_mma_prefill_min_batch; TQB_LUT_MMA_PREFILL_MIN overrides it
  std::size_t dequant_chunk_bytes = kDequantChunkBytes;
  using BatchPath = LutMmaMatrix::BatchPath;
  BatchPath batch_path = BatchPath::automatic;  // set_batch_path
  int wgmma_ok = 0;         // compute capability 9.0 and the wgmma kernel's shared memory fits
  int wgmma_everywhere = 0;  // TQB_LUT_MMA_WGMMA=1: the automatic choice takes wgmma for every n > 16; =0: no wgmma
  // The producer-decoded wgmma kernel (wgmma_ws_kernel) for the wgmma path's one-pass batches of n > 64: as set
  // (set_wgmma_producer: 1 / 0, -1 automatic) and as TQB_LUT_MMA_WGMMA_WS forces it (-1 unset).
  int wgmma_producer = -1, env_wgmma_producer = -1;
  int ws_ok = 0;              // the kernel exists for this format (one pass) and its shared memory fits
  int ws_resident[2] = {};    // its blocks per SM at N = 128, 256
  int ws_skip = 0;            // TQB_LUT_MMA_WS_SKIP: a diagnostic, see Args
  DequantUser dequant_user;  // keeps the shared cuBLAS handle and workspaces while this matrix lives
  mutable DeviceBuffer partial, counters, xr;
  mutable int xr_layout = kXrPassMajor;  // the layout the rotation last wrote xr in
  mutable int xr_tile_rows = 0;          // and its rows per tile (kXrWgmmaTiles)
  int tracing = 0;                        // set_trace
  mutable DeviceBuffer trace;             // the last traced call's [blocks][kTracePoints] timer readings
  mutable std::size_t trace_blocks = 0;

  // The kernel that serves a batch of n: the forced one, or the measured rule (kernels/cuda/lut_mma_paths.cpp).
  BatchPath path_for(std::size_t n) const {
    if (batch_path != BatchPath::automatic) return batch_path;
    return lut_mma_default_path({shape.rows, shape.cols, shape.passes.size(), wgmma_ok != 0, wgmma_everywhere != 0, prefill_min_batch}, n);
  }

  int max_group_log2() const {
    int m = 6;
    for (const auto& p : shape.passes) m = std::max(m, p.log2_group);
    return m;
  }
  std::size_t small_smem_bytes(int n, int tiles_per_split) const {
    const int b0 = shape.passes[0].bits, b1 = shape.passes.size() > 1 ? shape.passes[1].bits : 0;
    const int kc = tiles_per_split * 64;
    // The code ring; after the stream, the block's partial sums when the cluster reduces them (cluster_split_k_finish).
    const std::size_t ring = std::max<std::size_t>(static_cast<std::size_t>(kWarps) * kRing * 32 * (b0 + b1) * 4, static_cast<std::size_t>(kWarps) * 16 * n * 4);
    std::size_t bytes = static_cast<std::size_t>(base.lut_words) * 4 + ring;
    for (const auto& p : shape.passes) bytes += static_cast<std::size_t>(side_words(kc, p.log2_group, p.has_offset)) * 4;
    bytes += shape.passes.size() * static_cast<std::size_t>((n * (kc >> 5) + 3) & ~3) * 4;  // group sums
    bytes += shape.passes.size() * static_cast<std::size_t>(small_sign_stride(kc)) * 4;     // sign words
    return bytes + shape.passes.size() * static_cast<std::size_t>(n + 1) * (kc + kPad) * 2;
  }
  bool small_cluster_reduces() const {
    const int mode = cluster_reduce >= 0 ? cluster_reduce : env_cluster_reduce;
    if (cc_major < 9 || mode == 0) return false;
    return mode == 1 || lut_mma_small_cluster_reduces(shape.rows, shape.cols);
  }
  const SmallPlan& small_plan(int n) const {
    if (!small_cluster_reduces()) return small[0][n - 1];
    std::call_once(cluster_plans_once, [this] {
      for (int m = 1; m <= 16; ++m) small[1][m - 1] = make_small_plan(m, true);
    });
    return small[1][n - 1];
  }
  // Resident clusters of (1 × splits) small-kernel blocks the runtime reports for this grid; 0 where that cluster
  // cannot be launched.
  int active_clusters(int nt, int row_blocks, int splits, std::size_t smem) const {
    cudaLaunchConfig_t cfg{};
    cfg.gridDim = dim3(row_blocks, splits);
    cfg.blockDim = dim3(kThreads);
    cfg.dynamicSmemBytes = smem;
    cudaLaunchAttribute attr[1] = {small_cluster_attr(splits)};
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    int clusters = 0;
    if (cudaOccupancyMaxActiveClusters(&clusters, kernels.small[nt - 1], &cfg) != cudaSuccess) {
      (void)cudaGetLastError();  // an unsupported cluster shape: not a plan
      return 0;
    }
    return clusters;
  }
  // Split-K for the small kernel (lut_mma_small_split, kernels/cuda/lut_mma_paths.cpp): occupancy from the CUDA runtime
  // at each chunk's shared memory, with `cluster` also the resident clusters of its splits (at most kMaxClusterSplits).
  // With `cluster` where no chunk gives a launchable cluster, the global reduction's plan. TQB_LUT_MMA_CHUNK (tiles of
  // 64 columns) forces the chunk for tuning experiments.
  SmallPlan make_small_plan(int n, bool cluster) const {
    const int nt = n <= 8 ? 1 : 2;
    const int row_blocks = (static_cast<int>(shape.stripes) + kWarps - 1) / kWarps;
    const int align = std::max(1, 1 << (max_group_log2() - 6));  // tiles per largest group
    const auto resident = [&](int tps, int splits) -> LutMmaResidency {
      const std::size_t smem = small_smem_bytes(n, tps);
      if (smem > static_cast<std::size_t>(smem_optin)) return {-1, 0};
      int per_sm = 0;
      TQB_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernels.small[nt - 1], kThreads, smem));
      int slots = per_sm * sms;
      if (cluster && splits > 1 && per_sm > 0)
        slots = splits > kMaxClusterSplits ? 0 : std::min(slots, active_clusters(nt, row_blocks, splits, smem) * splits);
      return {per_sm, slots};
    };
    const int forced = static_cast<int>(env_count("TQB_LUT_MMA_CHUNK", 1, 1 << 20).value_or(0));
    const LutMmaSmallSplit split = lut_mma_small_split(row_blocks, static_cast<int>(shape.ktiles), align, forced, resident);
    SmallPlan best;
    if (split.tiles_per_split > 0)
      best = {split.tiles_per_split, split.splits, small_smem_bytes(n, split.tiles_per_split), split.blocks_per_sm, cluster && split.splits > 1};
    if (best.tiles_per_split == 0 && cluster) return make_small_plan(n, false);
    if (best.tiles_per_split == 0) throw std::runtime_error("lut_mma: no chunk size fits in shared memory");
    return best;
  }
  // A tiled kernel's grid (the large kernel: 256 rows × 64 batch columns per block; wgmma: wgmma_plan), K split
  // when that leaves SMs idle (n = 64 on a 4096-row matrix is 16 large blocks), at most one wave, chunks of at
  // least 4 tiles.
  struct TiledPlan {
    unsigned col_blocks, row_blocks, splits;
    int tiles_per_split;
  };
  TiledPlan tiled_plan(std::size_t n, int block_rows, int block_cols, int blocks_per_sm = 1) const {
    TiledPlan p;
    p.col_blocks = static_cast<unsigned>((n + block_cols - 1) / block_cols);
    p.row_blocks = static_cast<unsigned>((shape.stripes + block_rows / 16 - 1) / (block_rows / 16));
    const int ktiles = static_cast<int>(shape.ktiles), blocks = static_cast<int>(p.col_blocks * p.row_blocks);
    const int align = std::max(1, 1 << (max_group_log2() - 6));
    const int slots = sms * blocks_per_sm;
    int splits = blocks < slots ? std::min(slots / blocks, std::max(1, ktiles / 4)) : 1;
    int tps = (ktiles + splits - 1) / splits;
    tps = (tps + align - 1) / align * align;
    p.tiles_per_split = tps;
    p.splits = static_cast<unsigned>((ktiles + tps - 1) / tps);
    return p;
  }
  // The small kernel's batch of n: activations rotated by rotate_kernel first (one rotation per launch), or in
  // every block's prologue.
  bool small_pre_rotates(std::size_t n) const {
    if (const int mode = pre_rotate >= 0 ? pre_rotate : env_pre_rotate; mode >= 0) return mode == 1;
    const int kc = small_plan(n).tiles_per_split * 64;
    int min_log2 = 30;
    for (const auto& p : shape.passes) min_log2 = std::min(min_log2, p.log2_group);
    return lut_mma_small_pre_rotates(n, static_cast<std::size_t>(kc >> min_log2));
  }
  // The rotated activations of a batch of n into the workspace xr in a.xr_layout (a.xr_tile_rows for the wgmma tiles),
  // by rotate_kernel on the stream; sets a.xr.
  void rotate_into_xr(Args& a, std::size_t n, cudaStream_t stream) const {
    const std::size_t xr_rows = a.xr_layout == kXrWgmmaTiles ? (n + a.xr_tile_rows - 1) / a.xr_tile_rows * a.xr_tile_rows : n;
    const std::size_t need = shape.passes.size() * xr_rows * shape.cols_pad() * 2;
    if (xr.size() < need) {
      xr = DeviceBuffer(need);
      xr.fill_zero();  // the columns past cols stay zero: the rotation never writes them
      xr_layout = a.xr_layout;
      xr_tile_rows = a.xr_tile_rows;
    } else if (xr_layout != a.xr_layout || xr_tile_rows != a.xr_tile_rows) {
      // The columns past cols sit elsewhere in the tiled layouts (and differ with their rows per tile) than in the
      // row layouts (whose padding columns coincide): zero the buffer when the layout changes, which only a change
      // of batch path or of the wgmma's N does.
      if (shape.cols_pad() != static_cast<std::size_t>(a.cols)) TQB_CUDA_CHECK(cudaMemsetAsync(xr.get(), 0, xr.size(), stream));
      xr_layout = a.xr_layout;
      xr_tile_rows = a.xr_tile_rows;
    }
    a.xr = xr.as<const __nv_bfloat16>();
    int max_groups = 0;
    for (std::size_t p = 0; p < shape.passes.size(); ++p) max_groups = std::max(max_groups, a.cols >> a.pass[p].log2_group);
    const dim3 rgrid(static_cast<unsigned>((n * max_groups + kWarps - 1) / kWarps), static_cast<unsigned>(shape.passes.size()));
    rotate_kernel<<<rgrid, kThreads, 0, stream>>>(a);
    TQB_CUDA_CHECK_LAUNCH("lut_mma rotate_kernel");
  }
  // The split-K workspace for `splits` partial sums of an n-column batch, grown on demand.
  float* partials(int splits, std::size_t n) {
    const std::size_t need = static_cast<std::size_t>(splits) * n * shape.rows_pad() * sizeof(float);
    if (partial.size() < need) partial = DeviceBuffer(need);
    return partial.as<float>();
  }
  void ensure_counters(std::size_t count) {
    if (counters.size() >= count * sizeof(int)) return;
    counters = DeviceBuffer(count * sizeof(int));
    counters.fill_zero();
  }
  // y = Ŵx through bf16 weights: chunks of stripes decoded into the stream's workspace, each followed by
  // one GEMM with K = passes · cols_pad (xr rotated batch-major, [n][passes][cols_pad]).
  void multiply_dequantized(Args a, std::size_t n, cudaStream_t stream) const {
    const std::size_t P = shape.passes.size(), ld = P * shape.cols_pad();
    const std::size_t stripe_bytes = 16 * ld * 2;
    const int chunk_stripes = static_cast<int>(std::max<std::size_t>(1, std::min<std::size_t>(shape.stripes, dequant_chunk_bytes / stripe_bytes)));
    DequantShared& sh = dequant_shared();
    std::lock_guard<std::mutex> lock(sh.mutex);  // the handle's stream and the workspace: one caller at a time
    if (!sh.handle) cublas_ok(cublasCreate(&sh.handle), "cublasCreate");
    DeviceBuffer& ws = sh.workspace[stream];
    if (ws.size() < chunk_stripes * stripe_bytes) ws = DeviceBuffer(chunk_stripes * stripe_bytes);
    a.w_hat = ws.as<__nv_bfloat16>();
    cublas_ok(cublasSetStream(sh.handle, stream), "cublasSetStream");
    const float one = 1.0f, zero = 0.0f;
    const float* beta = a.accumulate ? &one : &zero;
    const std::size_t dsmem = static_cast<std::size_t>(base.lut_words) * 4 + kWarps * 16 * (64 + kPad) * 2;
    for (int s0 = 0; s0 < a.stripes; s0 += chunk_stripes) {
      const int stripes_here = std::min(chunk_stripes, a.stripes - s0);
      a.row_stripe0 = s0;
      const dim3 grid(static_cast<unsigned>(stripes_here), static_cast<unsigned>((a.ktiles + kWarps - 1) / kWarps));
      kernels.dequantize<<<grid, kThreads, dsmem, stream>>>(a);
      TQB_CUDA_CHECK_LAUNCH("lut_mma dequantize_kernel");
      const int row0 = 16 * s0, m = std::min(16 * stripes_here, a.rows - row0);
      if (m <= 0) break;
      // Column-major view, as the dense baseline: Yᵀ (rows × n) = Ŵ (row-major, hence OP_T) · xrᵀ.
      void* c = a.y_bf16 ? static_cast<void*>(a.y_bf16 + row0) : static_cast<void*>(a.y + row0);
      cublas_ok(cublasGemmEx(sh.handle, CUBLAS_OP_T, CUBLAS_OP_N, m, static_cast<int>(n), static_cast<int>(ld), &one, a.w_hat, CUDA_R_16BF,
                             static_cast<int>(ld), a.xr, CUDA_R_16BF, static_cast<int>(ld), beta, c, a.y_bf16 ? CUDA_R_16BF : CUDA_R_32F, a.rows,
                             CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                "cublasGemmEx");
    }
  }
  std::size_t large_smem_bytes() const {
    const std::size_t P = shape.passes.size();
    return static_cast<std::size_t>(base.lut_words) * 4 + kLargeStages * P * kLargeCols * kLargeStride * 2;
  }
  // The wgmma kernel of N = cols: the tables, the barriers, up to 1 KB to align the swizzled stages, the stages.
  std::size_t wgmma_smem_bytes(int cols) const {
    const int b0 = shape.passes[0].bits, b1 = shape.passes.size() > 1 ? shape.passes[1].bits : 0;
    return static_cast<std::size_t>(base.lut_words) * 4 + 8 + kWgBarrierBytes + 1024 + static_cast<std::size_t>(wg_stages(b1 ? 2 : 1)) * wg_stage_bytes(b0, b1, cols);
  }
  // The producer-decoded kernel of N = cols: the tables, the barriers, 1 KB to align the stages, the operand stages,
  // the load slots.
  std::size_t wgmma_ws_smem_bytes(int cols) const {
    return static_cast<std::size_t>(base.lut_words) * 4 + 8 + kWsBarrierBytes + 1024 + static_cast<std::size_t>(ws_b_stages(cols)) * cols * 128 +
           static_cast<std::size_t>(ws_a_slots(cols)) * kWsRows * 128 + static_cast<std::size_t>(kWsLoadDepth) * ws_load_bytes(shape.passes[0].bits);
  }
  // Whether the wgmma path's batch of n goes to the producer-decoded kernel: one pass, n > 64, forced or by the rule.
  bool wgmma_ws_for(std::size_t n) const {
    if (!ws_ok || n <= 64) return false;
    const int mode = wgmma_producer >= 0 ? wgmma_producer : env_wgmma_producer;
    return mode == 1;  // automatic: off until measured (docs/GPU.md, issue 31)
  }
  // Its grid for a batch of n: N, blocks of wg_rows × N (the producer-decoded kernel: 128 × N), split-K over the
  // resident blocks.
  struct WgmmaPlan {
    int cols = 0;
    bool producer = false;  // wgmma_ws_kernel
    TiledPlan tiled{};
  };
  WgmmaPlan wgmma_plan(std::size_t n) const {
    const int P = static_cast<int>(shape.passes.size());
    if (wgmma_ws_for(n)) {
      const int cols = ws_cols_for(n);
      return {cols, true, tiled_plan(n, kWsRows, cols, std::max(1, ws_resident[cols == 256 ? 1 : 0]))};
    }
    const int cols = wg_cols_for(n, P);
    return {cols, false, tiled_plan(n, wg_rows(P), cols, std::max(1, wg_resident[wg_index(cols)]))};
  }
  int wg_resident[4] = {};  // blocks per SM of each N's kernel (the runtime's occupancy at its shared memory)
};

LutMmaMatrix::LutMmaMatrix(const LutMmaLayout& layout) : impl_(std::make_unique<Impl>()) {
  if (auto why = unavailable_reason(); !why.empty()) throw std::runtime_error("lut_mma needs a CUDA GPU: " + why);
  Impl& I = *impl_;
  if (layout.passes.empty() || layout.passes.size() > 2) throw std::invalid_argument("lut_mma: one or two passes");
  int device = 0;
  TQB_CUDA_CHECK(cudaGetDevice(&device));
  TQB_CUDA_CHECK(cudaDeviceGetAttribute(&I.sms, cudaDevAttrMultiProcessorCount, device));
  TQB_CUDA_CHECK(cudaDeviceGetAttribute(&I.l2_bytes, cudaDevAttrL2CacheSize, device));
  TQB_CUDA_CHECK(cudaDeviceGetAttribute(&I.cc_major, cudaDevAttrComputeCapabilityMajor, device));
  if (const auto env = env_switch("TQB_LUT_MMA_STREAM_ONLY")) I.stream_only = *env;
  if (const auto env = env_switch("TQB_LUT_MMA_PREFETCH")) I.l2_prefetch = *env;
  if (const auto env = env_switch("TQB_LUT_MMA_PREROTATE")) I.env_pre_rotate = *env;
  if (const auto env = env_switch("TQB_LUT_MMA_PDL")) I.pdl = *env;
  I.prefill_min_batch = lut_mma_prefill_min_batch(layout.rows, layout.cols);
  if (const auto env = env_count("TQB_LUT_MMA_DEQUANT_CHUNK_MB", 1, 1 << 16)) I.dequant_chunk_bytes = static_cast<std::size_t>(*env) << 20;
  if (const auto env = env_count("TQB_LUT_MMA_PREFILL_MIN", 17, std::uint64_t{1} << 20)) I.prefill_min_batch = *env;
  I.order = {0};
  if (layout.passes.size() == 2) I.order = layout.passes[1].bits > layout.passes[0].bits ? std::vector<int>{1, 0} : std::vector<int>{0, 1};
  I.shape.rows = layout.rows;
  I.shape.cols = layout.cols;
  I.shape.stripes = layout.stripes;
  I.shape.ktiles = layout.ktiles;
  Args& a = I.base;
  a.rows = static_cast<int>(layout.rows);
  a.cols = static_cast<int>(layout.cols);
  a.stripes = static_cast<int>(layout.stripes);
  a.ktiles = static_cast<int>(layout.ktiles);
  auto upload = [&](const std::vector<std::uint32_t>& v) -> const std::uint32_t* {
    if (v.empty()) return nullptr;
    I.buffers.emplace_back(v.size() * 4);
    I.buffers.back().upload(v.data(), v.size() * 4);
    return I.buffers.back().as<const std::uint32_t>();
  };
  for (std::size_t i = 0; i < I.order.size(); ++i) {
    const LutMmaPass& src = layout.passes[I.order[i]];
    LutMmaPass meta;
    meta.bits = src.bits;
    meta.log2_group = src.log2_group;
    meta.rotated = src.rotated;
    meta.has_offset = src.has_offset;
    I.shape.passes.push_back(meta);
    PassArgs& p = a.pass[i];
    p.codes = upload(src.codes);
    p.scales = upload(src.scales);
    p.offsets = upload(src.offsets);
    p.signs = upload(src.signs);
    p.lut = upload(src.pair_lut);
    p.log2_group = src.log2_group;
    p.groups_alloc = static_cast<int>(layout.groups_alloc(src));
    p.rotated = src.rotated ? 1 : 0;
  }
  // Tables: pass 0's at word 0; pass 1 shares it when the tables are equal (e.g. 4+4 TurboQuant).
  a.lut_words = 32 << (2 * layout.passes[I.order[0]].bits);
  if (I.order.size() == 2) {
    const auto& t0 = layout.passes[I.order[0]].pair_lut;
    const auto& t1 = layout.passes[I.order[1]].pair_lut;
    if (t0 == t1) {
      a.pass[1].lut_offset = 0;
    } else {
      a.pass[1].lut_offset = a.lut_words;
      a.lut_words += 32 << (2 * layout.passes[I.order[1]].bits);
    }
  }
  I.kernels = pick_kernels(I.shape.passes[0].bits, I.order.size() == 2 ? I.shape.passes[1].bits : 0);
  const int row_blocks = (a.stripes + kWarps - 1) / kWarps;
  I.ensure_counters(static_cast<std::size_t>(row_blocks));
  a.counters = I.counters.as<int>();
  // Every kernel may take the device's whole opt-in shared memory; each launch asks for what its plan needs.
  TQB_CUDA_CHECK(cudaDeviceGetAttribute(&I.smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  I.smem_optin -= 1024;  // headroom for the kernels' static shared memory (a few bytes)
  for (const void* k : {reinterpret_cast<const void*>(I.kernels.small[0]), reinterpret_cast<const void*>(I.kernels.small[1]),
                        reinterpret_cast<const void*>(I.kernels.large), reinterpret_cast<const void*>(I.kernels.dequantize)})
    TQB_CUDA_CHECK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, I.smem_optin));
  // Clusters of up to kMaxClusterSplits small-kernel blocks (the split-K reduction through distributed shared memory).
  // The small kernels also ask for the largest shared-memory carveout: their plan counts on the residency the runtime
  // reports for it (3 blocks of 58-75 KB at n <= 4), and an H100 trace at n = 4 on 14336 x 4096 had only 2 blocks per
  // SM at once (72 of 336 blocks starting a block's run late) with the carveout left to the driver; the rotation
  // kernel's carveout, the earlier suspect, made no difference (docs/GPU.md, issue 31).
  for (const KernelFn k : I.kernels.small) {
    TQB_CUDA_CHECK(cudaFuncSetAttribute(reinterpret_cast<const void*>(k), cudaFuncAttributePreferredSharedMemoryCarveout, cudaSharedmemCarveoutMaxShared));
    if (I.cc_major >= 9) TQB_CUDA_CHECK(cudaFuncSetAttribute(reinterpret_cast<const void*>(k), cudaFuncAttributeNonPortableClusterSizeAllowed, 1));
  }
  int cc_minor = 0;
  TQB_CUDA_CHECK(cudaDeviceGetAttribute(&cc_minor, cudaDevAttrComputeCapabilityMinor, device));
  const int wg_widest = wg_max_cols(static_cast<int>(layout.passes.size()));
  I.wgmma_ok = I.cc_major == 9 && cc_minor == 0 && I.wgmma_smem_bytes(wg_widest) <= static_cast<std::size_t>(I.smem_optin);
  if (I.wgmma_ok)
    for (int i = 0; i < 4; ++i)
      if (const KernelFn k = I.kernels.wgmma[i]) {
        TQB_CUDA_CHECK(cudaFuncSetAttribute(reinterpret_cast<const void*>(k), cudaFuncAttributeMaxDynamicSharedMemorySize, I.smem_optin));
        TQB_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&I.wg_resident[i], k, kThreads, I.wgmma_smem_bytes(kWgWidths[i])));
      }
  I.ws_ok = I.wgmma_ok && I.kernels.wgmma_ws[1] != nullptr && I.wgmma_ws_smem_bytes(256) <= static_cast<std::size_t>(I.smem_optin);
  if (I.ws_ok)
    for (int i = 0; i < 2; ++i) {
      const void* k = reinterpret_cast<const void*>(I.kernels.wgmma_ws[i]);
      TQB_CUDA_CHECK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, I.smem_optin));
      TQB_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&I.ws_resident[i], k, kWsThreads, I.wgmma_ws_smem_bytes(128 << i)));
    }
  if (const auto env = env_switch("TQB_LUT_MMA_WGMMA_WS")) I.env_wgmma_producer = *env;
  if (const auto env = env_count("TQB_LUT_MMA_WS_SKIP", 0, 2)) I.ws_skip = static_cast<int>(*env);
  // TQB_LUT_MMA_WGMMA: 1 makes the automatic choice take wgmma for every n > 16, 0 switches the kernel off (a
  // device where it fails); unset, the automatic choice takes it where it was measured to win (lut_mma_default_path).
  if (const auto env = env_switch("TQB_LUT_MMA_WGMMA")) {
    I.wgmma_everywhere = *env;
    if (!*env) I.wgmma_ok = 0, I.ws_ok = 0;
  }
  if (const auto env = env_switch("TQB_LUT_MMA_CLUSTER")) I.env_cluster_reduce = *env;
  for (int n = 1; n <= 16; ++n) I.small[0][n - 1] = I.make_small_plan(n, false);
}

LutMmaMatrix::~LutMmaMatrix() = default;
std::size_t LutMmaMatrix::rows() const { return impl_->shape.rows; }
std::size_t LutMmaMatrix::cols() const { return impl_->shape.cols; }

std::size_t LutMmaMatrix::weight_bytes() const {
  std::size_t b = 0;
  for (const auto& buf : impl_->buffers) b += buf.size();
  return b;
}
void LutMmaMatrix::set_l2_prefetch(bool on) { impl_->l2_prefetch = on ? 1 : 0; }
void LutMmaMatrix::set_small_pre_rotation(int mode) {
  if (mode < -1 || mode > 1) throw std::invalid_argument("lut_mma: small-kernel rotation mode " + std::to_string(mode) + " (valid: -1 automatic, 0 prologue, 1 kernel first)");
  impl_->pre_rotate = mode;
}
void LutMmaMatrix::set_small_cluster_reduce(int mode) {
  if (mode < -1 || mode > 1) throw std::invalid_argument("lut_mma: small-kernel reduction mode " + std::to_string(mode) + " (valid: -1 automatic, 0 global, 1 cluster)");
  impl_->cluster_reduce = mode;
}
void LutMmaMatrix::set_wgmma_producer(int mode) {
  if (mode < -1 || mode > 1) throw std::invalid_argument("lut_mma: wgmma producer mode " + std::to_string(mode) + " (valid: -1 automatic, 0 off, 1 on)");
  impl_->wgmma_producer = mode;
}
bool LutMmaMatrix::wgmma_producer_available() const { return impl_->ws_ok != 0; }
void LutMmaMatrix::set_trace(bool on) { impl_->tracing = on ? 1 : 0; }
std::vector<std::uint64_t> LutMmaMatrix::last_trace() const {
  std::vector<std::uint64_t> t(impl_->trace_blocks * kTracePoints);
  if (!t.empty()) impl_->trace.download(t.data(), t.size() * sizeof(std::uint64_t));
  return t;
}
bool LutMmaMatrix::wgmma_available() const { return impl_->wgmma_ok != 0; }
void LutMmaMatrix::set_batch_path(BatchPath path) {
  if (path == BatchPath::wgmma && !impl_->wgmma_ok)
    throw std::invalid_argument("lut_mma: the wgmma kernel needs a device of compute capability 9.0 (Hopper, sm_90a) with " +
                                std::to_string(impl_->wgmma_smem_bytes(wg_max_cols(static_cast<int>(impl_->shape.passes.size())))) +
                                " bytes of shared memory per block");
  impl_->batch_path = path;
}
std::size_t LutMmaMatrix::workspace_bytes() const { return impl_->partial.size() + impl_->counters.size() + impl_->xr.size(); }

LutMmaArith LutMmaMatrix::arith(std::size_t n) const {
  return impl_->path_for(n) == Impl::BatchPath::small ? LutMmaArith::group_scale : LutMmaArith::bf16_decode;
}

std::string LutMmaMatrix::variant(std::size_t n) const {
  const Impl::BatchPath path = impl_->path_for(n);
  if (path == Impl::BatchPath::small) {
    if (n > 16) return "none (the small kernel serves n <= 16)";
    const SmallPlan& p = impl_->small_plan(static_cast<int>(n));
    const bool pre_rotates = impl_->small_pre_rotates(n);
    return "small(n8_tiles=" + std::to_string(n <= 8 ? 1 : 2) + ",split_k=" + std::to_string(p.splits) + ",chunk=" + std::to_string(p.tiles_per_split * 64) +
           ",blocks/SM=" + std::to_string(p.blocks_per_sm) + ",rotation=" + (pre_rotates ? "kernel_first" : "prologue") +
           (p.splits > 1 ? (p.cluster ? ",reduce=cluster" : ",reduce=global") : "") +
           (impl_->l2_prefetch && impl_->cc_major >= 9 ? ",l2_prefetch" : "") + ")";
  }
  if (path == Impl::BatchPath::dequantized) return "dequantized(bf16 chunks of stripes, cublasGemmEx)";
  if (path == Impl::BatchPath::wgmma) {
    const int P = static_cast<int>(impl_->shape.passes.size());
    const auto p = impl_->wgmma_plan(n);
    if (p.producer)
      return "wgmma_ws(block=" + std::to_string(kWsRows) + "x" + std::to_string(p.cols) + ",m64n" + std::to_string(p.cols) +
             "k16 ss,producer decodes,x_stages=" + std::to_string(ws_b_stages(p.cols)) + ",a_slots=" + std::to_string(ws_a_slots(p.cols)) +
             ",code_slots=" + std::to_string(kWsLoadDepth) + ",blocks/SM=" + std::to_string(impl_->ws_resident[p.cols == 256 ? 1 : 0]) + ",split_k=" + std::to_string(p.tiled.splits) + ")";
    return "wgmma(block=" + std::to_string(wg_rows(P)) + "x" + std::to_string(p.cols) + ",m64n" + std::to_string(p.cols) +
           "k16,stages=" + std::to_string(wg_stages(P)) + ",blocks/SM=" + std::to_string(impl_->wg_resident[wg_index(p.cols)]) +
           ",split_k=" + std::to_string(p.tiled.splits) + ")";
  }
  const auto p = impl_->tiled_plan(n, kLargeRows, kLargeCols);
  return "large(block=" + std::to_string(kLargeRows) + "x" + std::to_string(kLargeCols) + ",stages=" + std::to_string(kLargeStages) +
         ",split_k=" + std::to_string(p.splits) + ")";
}

void LutMmaMatrix::multiply(const std::uint16_t* x, std::size_t n, float* y, void* stream_ptr) const {
  multiply(x, n, y, nullptr, false, stream_ptr);
}

void LutMmaMatrix::multiply(const std::uint16_t* x, std::size_t n, float* y, std::uint16_t* y_bf16, bool accumulate, void* stream_ptr) const {
  Impl& I = *impl_;
  if (y_bf16 && accumulate) throw std::invalid_argument("lut_mma: a bf16 output is not accumulated into");
  if (n == 0) return;
  if (n > (1u << 20)) throw std::invalid_argument("lut_mma: batch too large");
  cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
  Args a = I.base;
  a.counters = I.counters.as<int>();  // the buffer may have grown since construction
  a.stream_only = I.stream_only;
  a.n = static_cast<int>(n);
  a.x = reinterpret_cast<const __nv_bfloat16*>(x);
  a.y = y;
  a.y_bf16 = reinterpret_cast<__nv_bfloat16*>(y_bf16);
  a.accumulate = accumulate ? 1 : 0;
  const std::size_t P = I.shape.passes.size();
  const Impl::BatchPath path = I.path_for(n);
  if (path == Impl::BatchPath::small) {
    if (n > 16) throw std::invalid_argument("lut_mma: the small kernel serves batches of at most 16, not " + std::to_string(n));
    const auto x_addr = reinterpret_cast<std::uintptr_t>(x);
    if (x_addr % 4 != 0) throw std::invalid_argument("lut_mma: the activations x must be 4-byte aligned (got an address ending in " + std::to_string(x_addr % 16) + " mod 16)");
    a.x_aligned16 = x_addr % 16 == 0 ? 1 : 0;
    if (I.small_pre_rotates(n)) {
      a.xr_layout = kXrPassMajor;
      a.xr_tile_rows = 0;
      I.rotate_into_xr(a, n, stream);
      a.pre_rotated = 1;
    }
    const int nt = n <= 8 ? 1 : 2;
    const SmallPlan& plan = I.small_plan(static_cast<int>(n));
    a.tiles_per_split = plan.tiles_per_split;
    a.splits = plan.splits;
    if (plan.cluster) a.cluster_splits = plan.splits;
    else if (a.splits > 1) a.partial = I.partials(a.splits, n);
    const dim3 grid((a.stripes + kWarps - 1) / kWarps, a.splits);
    if (I.tracing) {
      I.trace_blocks = std::size_t{grid.x} * grid.y;
      if (I.trace.size() < I.trace_blocks * kTracePoints * 8) I.trace = DeviceBuffer(I.trace_blocks * kTracePoints * 8);
      a.trace = I.trace.as<unsigned long long>();
    }
    if (I.l2_prefetch) {  // the tiles a wave of resident blocks asks into L2 stay within 60% of it
      const std::size_t wave_warps = std::min<std::size_t>(std::size_t{grid.x} * grid.y, std::size_t(I.sms) * plan.blocks_per_sm) * kWarps;
      std::size_t tile_bytes = 0;
      for (std::size_t p = 0; p < P; ++p) tile_bytes += 128 * static_cast<std::size_t>(I.shape.passes[p].bits);
      a.prefetch_tiles = static_cast<int>(std::min<std::size_t>(1 << 20, std::size_t(0.6 * I.l2_bytes) / (wave_warps * tile_bytes)));
    }
    // Launch attributes: after rotate_kernel as its programmatic dependent (sm_90; the blocks' tables and code ring go
    // out while it runs), and the splits of a row block as one cluster.
    cudaLaunchAttribute attr[2];
    unsigned attrs = 0;
    if (a.pre_rotated && I.cc_major >= 9 && I.pdl) {
      attr[attrs].id = cudaLaunchAttributeProgrammaticStreamSerialization;
      attr[attrs++].val.programmaticStreamSerializationAllowed = 1;
    }
    if (plan.cluster) attr[attrs++] = small_cluster_attr(plan.splits);
    if (attrs > 0) {
      cudaLaunchConfig_t cfg{};
      cfg.gridDim = grid;
      cfg.blockDim = dim3(kThreads);
      cfg.dynamicSmemBytes = plan.smem;
      cfg.stream = stream;
      cfg.attrs = attr;
      cfg.numAttrs = attrs;
      TQB_CUDA_CHECK(cudaLaunchKernelEx(&cfg, I.kernels.small[nt - 1], a));
    } else {
      I.kernels.small[nt - 1]<<<grid, kThreads, plan.smem, stream>>>(a);
    }
    TQB_CUDA_CHECK_LAUNCH("lut_mma small_kernel");
    return;
  }
  const bool dequantized = path == Impl::BatchPath::dequantized, wgmma = path == Impl::BatchPath::wgmma;
  a.xr_layout = dequantized ? kXrBatchMajor : wgmma ? kXrWgmmaTiles : kXrPassMajor;
  // The wgmma tiles hold whole blocks of N batch rows (rows past n are read, and their products never stored).
  const Impl::WgmmaPlan wg = wgmma ? I.wgmma_plan(n) : Impl::WgmmaPlan{};
  const int wg_n = wg.cols;
  a.xr_tile_rows = wg_n;
  I.rotate_into_xr(a, n, stream);
  if (dequantized) {
    I.multiply_dequantized(a, n, stream);
    return;
  }
  const auto plan = wgmma ? wg.tiled : I.tiled_plan(n, kLargeRows, kLargeCols);
  a.tiles_per_split = plan.tiles_per_split;
  a.splits = plan.splits;
  if (plan.splits > 1) {
    a.partial = I.partials(static_cast<int>(plan.splits), n);
    I.ensure_counters(static_cast<std::size_t>(plan.col_blocks) * plan.row_blocks);
    a.counters = I.counters.as<int>();
  }
  const dim3 grid(plan.col_blocks, plan.row_blocks, plan.splits);
  if (wgmma && wg.producer) {
    a.ws_skip = I.ws_skip;
    I.kernels.wgmma_ws[wg_n == 256 ? 1 : 0]<<<grid, kWsThreads, I.wgmma_ws_smem_bytes(wg_n), stream>>>(a);
    TQB_CUDA_CHECK_LAUNCH("lut_mma wgmma_ws_kernel");
  } else if (wgmma) {
    I.kernels.wgmma[wg_index(wg_n)]<<<grid, kThreads, I.wgmma_smem_bytes(wg_n), stream>>>(a);
    TQB_CUDA_CHECK_LAUNCH("lut_mma wgmma_kernel");
  } else {
    I.kernels.large<<<grid, kThreads, I.large_smem_bytes(), stream>>>(a);
    TQB_CUDA_CHECK_LAUNCH("lut_mma large_kernel");
  }
}

}  // namespace tqb::gpu
