#include "kernels/cuda/lut_mma_paths.hpp"

#include <algorithm>
#include <cmath>

namespace tqb {

namespace {
// Where wgmma is the fastest path on Hopper, measured on the H100 (2026-12-07, docs/GPU.md; bench_gpu --quick):
// - n > 16 (commit 779eccd, n = 64 … 512): on 14336 x 4096 and 4096 x 14336 at every n (49 against 72-74 us at
//   n = 64, 143-168 against 163-180 at 384-512); on 4096 x 4096 at n = 64 (30.9 against 38.8 dequantized) and
//   within 3% of the dequantized path at 96-128, which wins from 192 on (44 against 72 us).
// - n ≤ 16 (commit 7c794bd, N = 32): on 14336 x 4096 from n = 9 (41.0 against the small kernel's 43.3 us; n = 16:
//   41.3 against 65.9, and 69 against 109 for the 4+4 stack), not below (n = 1: 40.2 against 28.1); on 4096 x
//   4096 never (n = 16: 25.2 against 24.3). (4096 x 14336 was not reached: the call's time limit.) The 4+4 stack
//   (same call): wgmma on 4096 x 4096 as well at n = 16 (34.9 against 48.6 us; n = 9 not timed), whose two passes
//   decode as many codes as one pass of 2^25 weights; the dequantized path still wins there at n = 128 and 512
//   (77 and 99 against 90 and 133 us).
// - n ≤ 16 again (H100, 2026-12-07, third session, commit d0d5766, bench_gpu --n 1,9,16, every format; the small kernel
//   with the reduction lut_mma_small_cluster_reduces picks): on the wide shapes, one pass, the small kernel wins at n = 9
//   in all six rows (31.5-36.2 against wgmma's 39.6-41.2 µs) and wgmma at n = 16 in four of six (down 41.1 against
//   42.7; on gate/up the small kernel's 39.1 against 40.7); two passes (4+4, 4+2, 3+2) split three rows each way at
//   n = 9 and go to wgmma in four of six at 16. On 4096² the stacks' small kernel beats wgmma at n = 9 (24.3-28.8
//   against 33.4-34.6) and in two of three at 16.
// Hence, with 2^25 weights (between the measured sizes, the geometric middle: an interpolation) as the threshold:
// for n ≤ 16 wgmma from n = 9 with two passes and at n = 16 with one (n = 10-15 not measured: the small kernel's
// second n8 tile starts at 9, so the threshold sits at the measured point where one pass turned); for n > 16, where
// the dequantized path's cuBLAS GEMM wins on smaller matrices, by the weights, and every n ≤ 64.
constexpr std::size_t kWide = std::size_t{1} << 25;
bool wgmma_wins(const LutMmaPathInputs& m, std::size_t n) {
  const std::size_t weights = m.rows * m.cols;
  if (n <= 16) return weights >= kWide && n >= (m.passes >= 2 ? 9u : 16u);
  return n <= 64 || weights >= kWide;
}
}  // namespace

LutMmaPath lut_mma_default_path(const LutMmaPathInputs& m, std::size_t n) {
  if (m.wgmma_ok && (wgmma_wins(m, n) || (m.wgmma_everywhere && n > 16))) return LutMmaPath::wgmma;
  if (n <= 16) return LutMmaPath::small;
  return n >= m.prefill_min_batch ? LutMmaPath::dequantized : LutMmaPath::large;
}

// The dequantized path pays a decode pass that writes rows · cols bf16 weights whatever n, the large kernel's
// mma.sync work grows with n. Measured on the H100 (2026-12-07, bench_gpu --quick, docs/GPU.md): 4096 x 4096 is
// faster dequantized from n = 64 (38.6 against 46.4 us), 14336 x 4096 and 4096 x 14336 cross over near n = 190-210
// (at n = 64 the large kernel's 72-74 us beat 120-123 us; at n = 512, 162-179 us beat 261-312 us). One bf16 weight
// per 2^18 of the batch threshold fits both: 64 for 4096², 224 for 4096 x 14336. Larger matrices (an LM head) keep
// 224: once both paths fill the GPU, both grow with the matrix and their crossover stops moving (an inference from
// the two shapes, not a measurement).
std::size_t lut_mma_prefill_min_batch(std::size_t rows, std::size_t cols) {
  return std::clamp<std::size_t>((rows * cols + (std::size_t{1} << 18) - 1) >> 18, 64, 224);
}

// Chosen on the H100's per-block trace (docs/GPU.md, issue 31): in-kernel rotation cost 3.1 µs of prologue at 0.4
// tasks per warp (n = 1, 4096²), 5.6-5.9 µs at 5.5-6, 11.5 µs at 30 (n = 16, 14336 × 4096), against a rotation
// kernel's launch and pass before the small kernel. Above four tasks a warp, the rotation goes first.
// Six or more rotation tasks a warp. Same-run H100 timings (docs/GPU.md, 2026-12-07, µs, prologue / rotation kernel
// first): n = 4 on 4096² (12 tasks) 15.33 / 17.18, on 14336 × 4096 (44) 27.81 / 28.48, on 4096 × 14336 (40) 27.97 / 28.45;
// n = 16 on 4096² (48) 22.88 / 21.70, on 14336 × 4096 (240) 47.87 / 39.81, on 4096 × 14336 (160) 50.21 / 43.14.
bool lut_mma_small_pre_rotates(std::size_t n, std::size_t chunk_groups) { return n * chunk_groups >= 6 * 8; }

// Same-run H100 timings (2026-12-07, third session, commit d0d5766, bench_gpu --n 1,9,16, six formats, ten shapes;
// docs/GPU.md): below 2^25 weights the cluster's reduction won 139 of 144 rows against the global one, by up to 1.58×
// (1024 x 3072 at n = 16: 11.36 against 17.98 µs; 4096² at n = 16: 17.7 against 22.0), the five others 4096²'s
// stacks; on 14336 x 4096 and 4096 x 14336 it lost every n = 1 row (by 1-18%: 28.96 against 27.36 µs, one pass) and
// was erratic above (4096 x 14336, n = 9: 40.80 against 32.38; n = 4 in a second run: 35.81 against 27.65), where its
// clusters of 3-12 blocks left 8 of 132 SMs idle (traces: 124 SMs ran blocks, 88 of them three).
bool lut_mma_small_cluster_reduces(std::size_t rows, std::size_t cols) { return rows * cols < kWide; }

// Ties: the larger chunk of a split count used to win ("fewer partial sums", but a split count has the same partial
// sums whatever its chunk), which left 14336 x 4096 at n = 1 with chunks of 30, 30 and 4 tiles; the H100 traces show a
// warp's stream time proportional to its tiles (22-tile chunks at n = 4 there: 9.2 µs median against 12.0 with 30 at
// n = 1), so the longest chunk may set the launch. The tiled kernels' plan splits evenly the same way.
LutMmaSmallSplit lut_mma_small_split(int row_blocks, int ktiles, int align, int forced_tiles,
                                     const std::function<LutMmaResidency(int, int)>& resident) {
  align = std::max(1, align);
  const auto splits_of = [&](int tps) { return (ktiles + tps - 1) / tps; };
  // Blocks per SM worth insisting on: the most a chunk of at least 4 tiles reaches, up to 2 (with fewer than 16
  // resident warps the decode's shared-memory latency is exposed; measured on the H100).
  int want_per_sm = 1;
  if (forced_tiles == 0) {
    const int probe = std::max(align, 4);
    want_per_sm = std::max(1, std::min(resident(probe, 1).blocks_per_sm, 2));
  }
  const int max_tps = std::max(align, (ktiles + align - 1) / align * align);  // one chunk: the whole K
  const int forced = forced_tiles > 0 ? std::clamp(forced_tiles / align * align, align, max_tps) : 0;
  LutMmaSmallSplit best;
  double best_score = -1e30;
  for (int tps = align; tps <= max_tps; tps += align) {
    if (forced && tps != forced) continue;
    const int splits = splits_of(tps);
    const LutMmaResidency r = resident(tps, splits);
    if (r.blocks_per_sm < 0) break;
    if (r.blocks_per_sm == 0 || r.slots <= 0 || (!forced && r.blocks_per_sm < want_per_sm)) continue;
    const int items = row_blocks * splits, waves = (items + r.slots - 1) / r.slots;
    const double score = static_cast<double>(std::min(items, r.slots)) - 0.75 * r.slots * (waves - 1);
    if (score > best_score + 1e-9 || (std::fabs(score - best_score) <= 1e-9 && splits < best.splits)) {
      best_score = score;
      best = {tps, splits, r.blocks_per_sm};
    }
  }
  return best;
}

}  // namespace tqb
