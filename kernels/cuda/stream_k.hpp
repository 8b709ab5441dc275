#pragma once
// Stream-K: a tiled GEMM's work split evenly over a fixed number of blocks (Osama, Merrill, Cecka, Garland and Owens,
// "Stream-K: Work-centric Parallel Decomposition for Dense Matrix Multiplication on the GPU", PPoPP 2023). Why: a grid
// of one block per output tile runs in whole waves, so 224 tiles on 132 SMs (14336 × 4096 at n = 512 through the
// wgmma kernel) take two waves' time for 1.7 waves of work; here every block takes the same share of the tiles'
// k-tiles (its "units"), whole tiles where its share covers them, and a tile shared by several blocks is summed from
// their partial sums by the last to finish (the split-K epilogue, in k order: the bits do not depend on timing).
// Plain C++ (the kernels and the host's plan, and their test on any machine, read the same arithmetic).
//
// Units: tile t's k-tile kt is unit t · ktiles + kt, tiles row-block-major (t = row_block · col_blocks + col_block: the
// two column blocks of a row block's weights run next to each other). Block b of G takes units [begin(b), begin(b+1)).
#include <cstdint>

#include "kernels/cuda/host_device.hpp"

namespace tqb {

struct StreamK {
  std::int64_t units = 0;  // tiles · ktiles
  int blocks = 0;          // G ≤ units: every block has at least one unit
  int ktiles = 0;          // units per tile

  // First unit of block b (b = blocks: the end).
  TQB_HOST_DEVICE std::int64_t begin(int b) const { return static_cast<std::int64_t>(b) * units / blocks; }
  // The block whose units hold unit u: the largest b with begin(b) ≤ u.
  TQB_HOST_DEVICE int block_of(std::int64_t u) const { return static_cast<int>(((u + 1) * blocks - 1) / units); }
  // The blocks that share tile t: first_block(t) … last_block(t); block b's partial sums of t are segment
  // b − first_block(t) of segments(t) (1: the block writes the tile's outputs itself).
  TQB_HOST_DEVICE int first_block(std::int64_t t) const { return block_of(t * ktiles); }
  TQB_HOST_DEVICE int segments(std::int64_t t) const { return block_of(t * ktiles + ktiles - 1) - first_block(t) + 1; }
  // At most this many blocks share a tile (the partial sums' workspace): a tile's ktiles units meet a block's last
  // unit, then blocks of at least floor(units / blocks) units each.
  int max_segments() const {
    const std::int64_t least = units / blocks;
    return 1 + static_cast<int>((ktiles - 1 + least - 1) / least);
  }
};

// Unit tile · ktiles + kt as its tile and k-tile, walked one unit at a time: a kernel's loop moves on by a compare
// instead of dividing a 64-bit unit (whose subroutine call inside a wgmma pipeline serializes it, docs/GPU.md).
struct UnitCursor {
  int tile = 0, kt = 0;
  TQB_HOST_DEVICE void next(int ktiles) {
    if (++kt == ktiles) kt = 0, ++tile;
  }
};

}  // namespace tqb
