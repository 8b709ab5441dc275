#pragma once
// Which lut_mma path serves a batch of n by default: the rule fitted to same-run H100 timings (docs/GPU.md, issues 10
// and 31), as plain functions, so that the CUDA side and a test on any machine read one definition.
#include <cstddef>
#include <functional>

namespace tqb {

// The ways LutMmaMatrix serves a batch (gpu::LutMmaMatrix::BatchPath): automatic (this file's rule), the small
// kernel (n ≤ 16), the mma.sync tiled kernel, the dequantized path (bf16 chunks + cuBLAS), Hopper's wgmma kernel.
enum class LutMmaPath { automatic, small, large, dequantized, wgmma };

struct LutMmaPathInputs {
  std::size_t rows = 0, cols = 0, passes = 1;  // the matrix: out × in, residual passes
  bool wgmma_ok = false;                       // a Hopper device where the wgmma kernel fits
  bool wgmma_everywhere = false;               // TQB_LUT_MMA_WGMMA=1: wgmma for every n > 16
  std::size_t prefill_min_batch = 224;         // the dequantized path from this n (lut_mma_prefill_min_batch)
};

// The default's choice for a batch of n ≥ 1 (never automatic).
LutMmaPath lut_mma_default_path(const LutMmaPathInputs& m, std::size_t n);

// The batch from which the dequantized path beats the large kernel on a matrix of rows × cols (without wgmma).
std::size_t lut_mma_prefill_min_batch(std::size_t rows, std::size_t cols);

// Whether the small kernel (n ≤ 16) takes its activations rotated once per launch by the rotation kernel (a launch
// before it) instead of rotating its K-chunk in every block: chunk_groups is the chunk's groups of the pass with the
// most, so n · chunk_groups is each block's rotation tasks, a warp's each, 8 warps a block. Every block along a
// chunk repeats them (4096 rows: 32 blocks), and the per-block trace measured ~0.3 µs of prologue per task and warp.
bool lut_mma_small_pre_rotates(std::size_t n, std::size_t chunk_groups);

// Whether the small kernel's split-K partial sums of a rows × cols matrix are summed through its cluster's distributed
// shared memory (the splits of a row block launched as one cluster, sm_90) rather than through global memory. The
// cluster's reduction costs no round trip to L2 but constrains where blocks go: it wins on smaller matrices.
bool lut_mma_small_cluster_reduces(std::size_t rows, std::size_t cols);

// The small kernel's split of K for one batch: each block takes one stripe group (row_blocks of them) and a chunk of
// tiles_per_split 64-column tiles (a multiple of align, the tiles of the largest group), so the grid is row_blocks ×
// splits blocks. resident(tiles_per_split, splits) says what the device holds for that chunk: blocks per SM at its
// shared memory (0: none; -1: the chunk exceeds the device's shared memory, and so do all larger ones), and the
// grid's blocks resident at once (blocks per SM × SMs, or fewer where cluster shapes constrain placement; 0: not
// launchable). The choice: the chunk whose grid best fills one wave (the blocks of the first wave, less three
// quarters of a wave for every further wave: each block pays a fixed prologue and epilogue, H100, docs/GPU.md); ties
// to fewer splits, and among chunks of the same splits to the smallest, so that the K chunks are as even as whole
// groups allow. Chunks whose residency is below min(2, what a 4-tile chunk reaches) are passed over. forced_tiles
// > 0 (TQB_LUT_MMA_CHUNK) takes that chunk whatever its residency. tiles_per_split 0 in the result: no chunk fits.
struct LutMmaResidency {
  int blocks_per_sm = 0, slots = 0;
};
struct LutMmaSmallSplit {
  int tiles_per_split = 0, splits = 0, blocks_per_sm = 0;
};
LutMmaSmallSplit lut_mma_small_split(int row_blocks, int ktiles, int align, int forced_tiles,
                                     const std::function<LutMmaResidency(int tiles_per_split, int splits)>& resident);

}  // namespace tqb
