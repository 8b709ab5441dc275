#pragma once
// The lut_mma kernels' launch arguments (Args: the matrix's passes, the batch, the output, the split-K workspace, the
// diagnostics), the per-block trace, and how the rotated activations are laid out for each kernel (XrLayout).
#include <cuda_bf16.h>

#include <cstddef>
#include <cstdint>

#include "kernels/cuda/gpu.hpp"
#include "kernels/cuda/lut_mma.cuh"
#include "kernels/cuda/stream_k.hpp"

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
  int col_blocks = 1;  // the tiled kernels: output tiles per row block (tile = row block · col_blocks + column block)
  StreamK stream_k{};  // the wgmma kernel: blocks 0, the grid's tiles (x, y) and splits (z); else a 1-D grid of that many
                       // blocks sharing the tiles' k-tiles evenly (kernels/cuda/stream_k.hpp; partial, counters per tile)
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
// (Element offsets in the wgmma tiles: wg_tile_offset, kernels/cuda/lut_mma_layout.hpp, tested on any machine.)

}  // namespace tqb::lut_mma
