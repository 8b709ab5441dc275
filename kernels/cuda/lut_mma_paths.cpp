#include "kernels/cuda/lut_mma_paths.hpp"

#include <algorithm>

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
// Hence, with 2^25 (between the measured sizes, the geometric middle: an interpolation) as the threshold: for
// n ≤ 16, where both kernels are bound by decoding and streaming codes, by the codes (weights × passes) from
// n = 9; for n > 16, where the dequantized path's cuBLAS GEMM wins on smaller matrices, by the weights, and every
// n ≤ 64.
bool wgmma_wins(const LutMmaPathInputs& m, std::size_t n) {
  constexpr std::size_t kWide = std::size_t{1} << 25;
  const std::size_t weights = m.rows * m.cols;
  if (n <= 16) return n >= 9 && weights * m.passes >= kWide;
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

}  // namespace tqb
