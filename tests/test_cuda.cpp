// The CUDA lut_mma kernels: the GPU layout (repacking) checked on any machine through its host
// emulation, then every kernel on a GPU against the reference ("dequantize, then dense" in double) and
// against the emulation, for every format of issue 10, odd shapes, batches 1..512, with poisoned outputs
// and guard zones. Without a GPU the GPU cases print why and pass without checking anything else.
//
// Error bound (bf16): with unit roundoff u = 2^-8, the kernels round each rotated activation once
// (≤ u·|x̃|) and decode each weight from bf16 operands a, lut[q], b with one rounding (≤ 3u·(|a·lut| + |b|)
// to first order); products are exact in fp32 and sums are fp32 (≤ K·2^-24 relative). So
// |y − y_ref| ≤ (4.5u + K·2^-23)·M with M = Σ (|a·lut[q]| + |b|)·|x̃| from lut_mma_emulate. The
// reference takes x rounded to bf16 (the kernels' input), so the activations' own rounding is not counted.
#include <doctest/doctest.h>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <set>

#include "common/error.hpp"
#include "kernels/cuda/gpu.hpp"
#include "kernels/cuda/lut_mma_layout.hpp"
#include "kernels/cuda/lut_mma_paths.hpp"
#include "kernels/cuda/stream_k.hpp"
#include "kernels/registry.hpp"
#include "quantizers/registry.hpp"
#include "test_util.hpp"

using namespace tqb;

namespace {

constexpr double kU = 1.0 / 256.0;

struct Case {
  std::string format;
  std::size_t rows, cols;
};

// Issue 10's formats: turboquant 4-bit at every group, fp32/fp16 norms, both codebooks, with and
// without rotation; rtn 4-bit sym/asym; the paper's stacks; 2- and 3-bit single passes. Odd shapes:
// rows not a multiple of 16, columns not a multiple of the 64-column tile (160 at g = 32).
std::vector<Case> cases() {
  return {
      {"turboquant(bits=4,group=128,rotation=hadamard)", 53, 384},
      {"turboquant(bits=4,group=32,rotation=hadamard,norm=fp16)", 53, 160},
      {"turboquant(bits=4,group=64,rotation=hadamard,codebook=gaussian)", 300, 384},
      {"turboquant(bits=4,group=256,rotation=hadamard,codebook=beta)", 77, 768},
      {"turboquant(bits=4,group=128,rotation=none)", 53, 384},
      {"turboquant(bits=3,group=128,rotation=hadamard)", 53, 384},
      {"turboquant(bits=2,group=64,rotation=hadamard)", 53, 384},
      {"rtn(bits=4,group=128,mode=sym)", 53, 384},
      {"rtn(bits=4,group=32,mode=asym,scale=fp16)", 53, 160},
      {"residual(stack=4+4,group=128,rotation=hadamard)", 53, 384},
      {"residual(stack=4+2,group=128,rotation=hadamard)", 53, 384},
      {"residual(stack=3+2,group=64,rotation=hadamard)", 300, 384},
      {"residual(stack=2+4,group=32,rotation=hadamard)", 53, 160},  // widest pass second: reordered
  };
}

}  // namespace

TEST_CASE("lut_mma layout: the repacked codes, tables, scales and signs compute the reference (host emulation)") {
  for (const auto& c : cases()) {
    CAPTURE(c.format);
    auto q = parse_quantizer(c.format);
    REQUIRE(lut_mma_supports(*q).empty());
    const Matrix w = test::random_normal_matrix(c.rows, c.cols, 11);
    const QuantizedMatrix qm = q->quantize(w.data(), c.rows, c.cols, 5);
    const LutMmaLayout L = make_lut_mma_layout(*q, qm);
    CHECK(L.rows_pad() % 16 == 0);
    CHECK(L.cols_pad() % 64 == 0);
    const std::size_t n = 3;
    const Matrix x = test::random_normal_matrix(n, c.cols, 12);
    const auto ref = test::bf16_reference(*q, qm, x);
    for (LutMmaArith arith : {LutMmaArith::bf16_decode, LutMmaArith::group_scale}) {
      std::vector<float> y(n * c.rows), mag(n * c.rows);
      lut_mma_emulate(L, x.data(), n, y.data(), mag.data(), arith);
      double worst = 0;
      for (std::size_t i = 0; i < y.size(); ++i) {
        const double bound = (4.5 * kU + c.cols * std::ldexp(1.0, -23)) * mag[i] + 1e-30;
        worst = std::max(worst, std::fabs(y[i] - ref[i]) / bound);
      }
      CHECK(worst <= 1.0);
    }
    // The bound is not vacuous: the emulation's error is a fraction of it and the outputs are not tiny.
    double norm = 0;
    for (double v : ref) norm += v * v;
    CHECK(norm > 0);
  }
  // Bytes: 4-bit codes + bf16 scales at g128 is 4.125 bits per weight, plus tables and signs.
  auto q = parse_quantizer("turboquant(bits=4,group=128,rotation=hadamard)");
  const Matrix w = test::random_normal_matrix(256, 1024, 3);
  const LutMmaLayout L = make_lut_mma_layout(*q, q->quantize(w.data(), 256, 1024, 1));
  CHECK(L.bytes() == 256 * 1024 / 2 + 256 * 8 * 2 + 1024 / 8 + 256 * 4);
}

TEST_CASE("lut_mma declares the formats it cannot read") {
  for (const std::string f : {"turboquant(bits=4,group=128,rotation=haar)", "turboquant(bits=5,group=128)", "rtn(bits=8,group=128)",
                              "turboquant(bits=4,group=16)", "turboquant(bits=4,group=row)", "qjl(sketch=d,group=32)",
                              "turboquant_prod(bits=3,group=64)", "residual(stack=4+4+4,group=128)", "residual(stack=3+1-qjl,group=64)"}) {
    CAPTURE(f);
    CHECK_FALSE(lut_mma_supports(*parse_quantizer(f)).empty());
  }
}

TEST_CASE("lut_mma's automatic path picks the H100's measured winners (docs/GPU.md), on any machine") {
  using P = LutMmaPath;
  const auto path = [](std::size_t rows, std::size_t cols, std::size_t passes, bool wgmma, std::size_t n, bool everywhere = false) {
    return lut_mma_default_path({rows, cols, passes, wgmma, everywhere, lut_mma_prefill_min_batch(rows, cols)}, n);
  };
  // The crossover of the large kernel and the dequantized path, by size: 64 for 4096², 224 for the MLP shapes.
  CHECK(lut_mma_prefill_min_batch(4096, 4096) == 64);
  CHECK(lut_mma_prefill_min_batch(4096, 14336) == 224);
  CHECK(lut_mma_prefill_min_batch(576, 576) == 64);
  CHECK(lut_mma_prefill_min_batch(128256, 4096) == 224);
  // Hopper, one pass, 14336 x 4096: the small kernel below n = 16 (n = 1: 27.4 against wgmma's 39.5 us; n = 9: 31.7
  // against 40.3, third session), wgmma at 16 (down: 41.1 against 42.7) and at every larger n (n = 64: 49.3 against
  // 71.7; 512: 147.0 against 163.1).
  for (const std::size_t n : {1, 4, 8, 9, 15}) CHECK(path(14336, 4096, 1, true, n) == P::small);
  for (const std::size_t n : {16, 17, 64, 128, 384, 512, 4096}) CHECK(path(14336, 4096, 1, true, n) == P::wgmma);
  // Two passes on the wide shapes: wgmma from n = 9 (the 4+4 stack on 4096 x 14336: 63.7 against 67.5).
  CHECK(path(4096, 14336, 2, true, 8) == P::small);
  CHECK(path(4096, 14336, 2, true, 9) == P::wgmma);
  CHECK(path(4096, 14336, 1, true, 512) == P::wgmma);
  // 4096², one pass: the small kernel to 16 (24.3 against 25.2), wgmma at 17-64 (n = 64: 30.9 against 38.8), the
  // dequantized path from 96 (39.8 against 41.0; 512: 55.2 against 89.7).
  for (const std::size_t n : {1, 9, 16}) CHECK(path(4096, 4096, 1, true, n) == P::small);
  for (const std::size_t n : {17, 32, 64}) CHECK(path(4096, 4096, 1, true, n) == P::wgmma);
  for (const std::size_t n : {96, 128, 512}) CHECK(path(4096, 4096, 1, true, n) == P::dequantized);
  // The stacks on 4096²: the small kernel to n = 16 (its cluster reduction, third session: n = 9 24.3-28.8 against
  // wgmma's 33.4-34.6 µs), dequantized at 128 and 512.
  CHECK(path(4096, 4096, 2, true, 9) == P::small);
  CHECK(path(4096, 4096, 2, true, 16) == P::small);
  CHECK(path(4096, 4096, 2, true, 128) == P::dequantized);
  // Without wgmma (not Hopper, or TQB_LUT_MMA_WGMMA=0): small, then large, then dequantized from the crossover.
  CHECK(path(14336, 4096, 1, false, 16) == P::small);
  CHECK(path(14336, 4096, 1, false, 64) == P::large);
  CHECK(path(14336, 4096, 1, false, 224) == P::dequantized);
  CHECK(path(4096, 4096, 1, false, 64) == P::dequantized);
  // TQB_LUT_MMA_WGMMA=1: wgmma for every n > 16, the small kernel still below.
  CHECK(path(4096, 4096, 1, true, 512, true) == P::wgmma);
  CHECK(path(4096, 4096, 1, true, 8, true) == P::small);
  // The small kernel's rotation: in each block's prologue while it is a few tasks a warp (n = 1 on 4096²: 3 groups of
  // 128 in a 384-column chunk; n = 4 there: 12; n = 4 on 14336 x 4096: 11 groups, 44 tasks), by the rotation kernel
  // first from six a warp (n = 16: 48 tasks on 4096², 240 on 14336 x 4096), the H100's same-run winners.
  CHECK_FALSE(lut_mma_small_pre_rotates(1, 3));
  CHECK_FALSE(lut_mma_small_pre_rotates(4, 3));
  CHECK_FALSE(lut_mma_small_pre_rotates(1, 15));
  CHECK_FALSE(lut_mma_small_pre_rotates(4, 11));
  CHECK_FALSE(lut_mma_small_pre_rotates(4, 10));
  CHECK(lut_mma_small_pre_rotates(16, 15));
  CHECK(lut_mma_small_pre_rotates(16, 10));
  CHECK(lut_mma_small_pre_rotates(16, 3));
  // The small kernel's split-K through the cluster below 2^25 weights (139 of 144 rows won there, third session), through
  // global memory on the wide shapes (every n = 1 row won there).
  CHECK(lut_mma_small_cluster_reduces(4096, 4096));
  CHECK(lut_mma_small_cluster_reduces(576, 1536));
  CHECK_FALSE(lut_mma_small_cluster_reduces(14336, 4096));
  CHECK_FALSE(lut_mma_small_cluster_reduces(4096, 14336));
}

TEST_CASE("stream-K shares: every k-tile of every tile in exactly one block, shares in k order, walked in order, on any machine") {
  for (const auto [tiles, ktiles, blocks] : {std::array{224, 64, 132}, std::array{64, 224, 132}, std::array{3, 16, 40}, std::array{1, 5, 5},
                                             std::array{7, 1, 3}, std::array{1000, 64, 264}, std::array{2, 64, 128}}) {
    CAPTURE(tiles);
    CAPTURE(ktiles);
    CAPTURE(blocks);
    const StreamK sk{std::int64_t{tiles} * ktiles, blocks, ktiles};
    std::vector<int> owner(static_cast<std::size_t>(sk.units), -1);
    for (int b = 0; b < blocks; ++b) {
      REQUIRE(sk.begin(b) < sk.begin(b + 1));  // at least one unit each
      for (std::int64_t u = sk.begin(b); u < sk.begin(b + 1); ++u) {
        REQUIRE(owner[static_cast<std::size_t>(u)] == -1);
        owner[static_cast<std::size_t>(u)] = b;
        REQUIRE(sk.block_of(u) == b);
      }
    }
    CHECK(sk.begin(0) == 0);
    CHECK(sk.begin(blocks) == sk.units);
    int widest = 0;
    for (std::int64_t t = 0; t < tiles; ++t) {
      // The tile's shares: blocks first_block … in k order, each block's share one run of the tile's k-tiles.
      const int first = sk.first_block(t), segments = sk.segments(t);
      REQUIRE(segments >= 1);
      widest = std::max(widest, segments);
      int previous = first;
      for (int kt = 0; kt < ktiles; ++kt) {
        const int b = owner[static_cast<std::size_t>(t * ktiles + kt)];
        REQUIRE(b >= previous);
        REQUIRE(b - first < segments);
        previous = b;
      }
      CHECK(owner[static_cast<std::size_t>(t * ktiles)] == first);
      CHECK(owner[static_cast<std::size_t>(t * ktiles + ktiles - 1)] == first + segments - 1);
    }
    CHECK(widest <= sk.max_segments());
    CHECK(sk.max_segments() <= ktiles);  // the workspace never holds more shares than a tile has k-tiles
    // The kernel's cursor walks units one at a time from where a block starts: the same tile and k-tile as dividing.
    for (int b = 0; b < blocks; b += std::max(1, blocks / 7)) {
      const std::int64_t u0 = sk.begin(b);
      UnitCursor at{static_cast<int>(u0 / ktiles), static_cast<int>(u0 % ktiles)};
      for (std::int64_t u = u0; u < sk.begin(b + 1); ++u, at.next(ktiles)) {
        REQUIRE(at.tile == u / ktiles);
        REQUIRE(at.kt == u % ktiles);
      }
    }
  }
  // 14336 × 4096 at n = 512 through the wgmma kernel: 224 tiles of 64 k-tiles on 132 blocks, 108-109 k-tiles each, so a
  // tile is shared by at most two blocks.
  CHECK(StreamK{224 * 64, 132, 64}.max_segments() == 2);
}

TEST_CASE("lut_mma's wgmma tiles in shared memory: the 128-byte swizzle, the activations' tiles and stmatrix's decoded tiles, on any machine") {
  // The swizzle: every 16-byte chunk of a 128-row tile at its own place, each 8-row atom within its 1024 bytes, and the 8
  // chunks of one column (the rows of an 8 × 8 matrix that stmatrix or ldmatrix moves at once) on 8 different bank quads.
  std::vector<int> hit(128 * 8, 0);
  for (int r = 0; r < 128; ++r)
    for (int c = 0; c < 8; ++c) {
      const std::uint32_t at = sw128_chunk_offset(r, c);
      REQUIRE(at % 16 == 0);
      REQUIRE(at / 1024 == static_cast<std::uint32_t>(r / 8));
      ++hit[at / 16];
    }
  CHECK(std::count(hit.begin(), hit.end(), 1) == 128 * 8);
  for (int r0 = 0; r0 < 128; r0 += 8)
    for (int c = 0; c < 8; ++c) {
      std::vector<int> quads;
      for (int j = 0; j < 8; ++j) quads.push_back(static_cast<int>(sw128_chunk_offset(r0 + j, c) % 128 / 16));
      std::sort(quads.begin(), quads.end());
      CHECK(std::unique(quads.begin(), quads.end()) == quads.end());
    }
  // The activations' tiles (the rotation kernel writes them so): element (t, k) of a tile at the swizzled place of its
  // row and chunk, and the tiles of R rows × 64 columns laid out pass, row block, k-tile.
  for (const int R : {32, 256})
    for (int t = 0; t < R; ++t)
      for (int k = 0; k < 64; ++k) REQUIRE(wg_tile_offset(0, t, k, R, 1, 1) == sw128_chunk_offset(t, k / 8) / 2 + k % 8);
  // ... and equal to the form the rotation and wgmma kernels were GPU-tested with ((t mod R)·64 + the chunk index xor t mod 8,
  // times 8; R a multiple of 8), over two row blocks and two k-tiles.
  for (const int R : {32, 64, 128, 256})
    for (int t = 0; t < 2 * R; ++t)
      for (int k = 0; k < 128; ++k)
        REQUIRE(wg_tile_offset(1, t, k, R, 2, 2) ==
                ((std::size_t{1} * 2 + t / R) * 2 + (k >> 6)) * (64 * std::size_t(R)) + (t % R) * 64 + ((((k >> 3) & 7) ^ (t & 7)) << 3) + (k & 7));
  CHECK(wg_tile_offset(1, 300, 200, 256, 2, 4) == ((1 * 2 + 1) * 4 + 3) * 64 * 256 + sw128_chunk_offset(300 % 256, (200 % 64) / 8) / 2 + 200 % 8);
  // The decoded tile (the producer-decoded kernel): stmatrix .x4 of stripe st's k16 step s from lane L writes row
  // 16·st + stmatrix_a_row(L), chunk stmatrix_a_chunk(s, L); over 8 stripes × 4 steps × 32 lanes every chunk of the
  // 128 × 64 tile exactly once, and lane L's row and chunk those of the A fragment's register m = L / 8 (rows + 8 for odd
  // m, columns + 8 for m ≥ 2; the m16n8k16 layout of lut_mma_layout.hpp).
  std::fill(hit.begin(), hit.end(), 0);
  for (int st = 0; st < 8; ++st)
    for (int s = 0; s < 4; ++s)
      for (int lane = 0; lane < 32; ++lane) {
        const int m = lane / 8, row = stmatrix_a_row(lane), chunk = stmatrix_a_chunk(s, lane);
        REQUIRE(row == lane % 8 + 8 * (m & 1));
        REQUIRE(chunk * 8 == 16 * s + 8 * (m >> 1));
        ++hit[sw128_chunk_offset(16 * st + row, chunk) / 16];
      }
  CHECK(std::count(hit.begin(), hit.end(), 1) == 128 * 8);
}

TEST_CASE("lut_mma's small-kernel split of K: one full wave, the chunks as even as whole groups allow, on any machine") {
  // A device like the H100 (132 SMs) whose shared memory holds 3 blocks up to 40-tile chunks, 2 up to 80, then none.
  const auto h100_like = [](int max_splits_in_cluster) {
    return [max_splits_in_cluster](int tps, int splits) -> LutMmaResidency {
      const int per_sm = tps <= 40 ? 3 : tps <= 80 ? 2 : -1;
      if (per_sm < 0) return {-1, 0};
      return {per_sm, max_splits_in_cluster > 0 && splits > max_splits_in_cluster ? 0 : per_sm * 132};
    };
  };
  struct Case {
    int row_blocks, ktiles, forced, max_cluster, tiles_per_split, splits;
  };
  const Case cases[] = {
      // 14336 x 4096 with groups of 128 (2 tiles): 112 row blocks, 64 tiles; three splits fill 336 of 396 slots, and
      // the chunk is 22 tiles (22, 22, 20), not 30 (30, 30, 4), though both make three splits.
      {112, 64, 0, 0, 22, 3},
      // 4096 x 14336: 32 row blocks, 224 tiles: twelve splits (384 blocks) of 20 tiles; 4096²: eleven of 6 (12 would
      // need chunks of 5.3 tiles, not whole groups).
      {32, 224, 0, 0, 20, 12},
      {32, 64, 0, 0, 6, 11},
      // More row blocks than slots: no split (a second wave either way, the fewest blocks), the whole K in one chunk.
      {500, 64, 0, 0, 64, 1},
      // Clusters of at most 8 blocks: 4096 x 14336 takes eight splits of 28 tiles instead of twelve.
      {32, 224, 0, 8, 28, 8},
      // A forced chunk (TQB_LUT_MMA_CHUNK) is taken as given, rounded down to whole groups and at most the whole K.
      {112, 64, 31, 0, 30, 3},
      {112, 64, 1000, 0, 64, 1},
  };
  for (const Case& c : cases) {
    CAPTURE(c.row_blocks);
    CAPTURE(c.ktiles);
    CAPTURE(c.forced);
    CAPTURE(c.max_cluster);
    const LutMmaSmallSplit s = lut_mma_small_split(c.row_blocks, c.ktiles, 2, c.forced, h100_like(c.max_cluster));
    CHECK(s.tiles_per_split == c.tiles_per_split);
    CHECK(s.splits == c.splits);
  }
  CHECK(lut_mma_small_split(112, 64, 2, 0, h100_like(0)).blocks_per_sm == 3);
  // A device that holds no chunk gives none.
  CHECK(lut_mma_small_split(112, 64, 2, 0, [](int, int) { return LutMmaResidency{-1, 0}; }).tiles_per_split == 0);
  CHECK(lut_mma_small_split(112, 64, 2, 0, [](int, int) { return LutMmaResidency{0, 0}; }).tiles_per_split == 0);
}

TEST_CASE("cuda_lut_mma in the kernel registry: named only, never auto, a clear error without a GPU") {
  const auto& ks = linear_kernels();
  const auto it = std::find_if(ks.begin(), ks.end(), [](const LinearKernel& k) { return k.name == "cuda_lut_mma"; });
  REQUIRE(it != ks.end());
  CHECK(it->needs_gpu);
  auto q = parse_quantizer("turboquant(bits=4,group=128,rotation=hadamard)");
  const Matrix w = test::random_normal_matrix(32, 256, 1);
  const QuantizedMatrix qm = q->quantize(w.data(), 32, 256, 1);
  CHECK(make_linear("auto", *q, qm)->kernel().rfind("cuda", 0) != 0);
  const std::string why = gpu::unavailable_reason();
  if (!why.empty()) {
    MESSAGE("no GPU here (" << why << "): checking the error a GPU kernel gives without one");
    try {
      make_linear("cuda_lut_mma", *q, qm);
      FAIL("expected an error");
    } catch (const InputError& e) {
      CHECK(std::string(e.what()).find("needs a CUDA GPU") != std::string::npos);
    }
    return;
  }
  const auto k = make_linear("cuda_lut_mma", *q, qm);
  CHECK(k->kernel() == "cuda_lut_mma");
  const Matrix x = test::random_normal_matrix(5, 256, 2);
  Matrix y(5, 32);
  k->forward(x.data(), 5, y.data());
  const auto ref = test::bf16_reference(*q, qm, x);
  double err = 0, norm = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    err += (y.data()[i] - ref[i]) * (y.data()[i] - ref[i]);
    norm += ref[i] * ref[i];
  }
  CHECK(std::sqrt(err / norm) < 1e-2);
}

TEST_CASE("lut_mma CUDA kernels match the reference and the emulation: every format, odd shapes, n = 1..512, guard zones") {
  const std::string why = gpu::unavailable_reason();
  if (!why.empty()) {
    MESSAGE("SKIPPED: the CUDA parity tests need a GPU: " << why);
    return;
  }
  MESSAGE("GPU: " << gpu::device_description());
  std::vector<Case> all = cases();
  if (std::getenv("TQB_CUDA_TEST_QUICK") == nullptr) {  // set under compute-sanitizer, which runs the rest 100× slower
    all.push_back({"turboquant(bits=4,group=128,rotation=hadamard)", 1000, 4096});  // split-K over many chunks
    all.push_back({"residual(stack=4+4,group=128,rotation=hadamard)", 520, 2048});
  }
  constexpr std::size_t kGuard = 64;
  const float poison = std::numeric_limits<float>::quiet_NaN();
  for (const auto& c : all) {
    auto q = parse_quantizer(c.format);
    const Matrix w = test::random_normal_matrix(c.rows, c.cols, 21);
    const QuantizedMatrix qm = q->quantize(w.data(), c.rows, c.cols, 9);
    const LutMmaLayout L = make_lut_mma_layout(*q, qm);
    gpu::LutMmaMatrix m(L);
    // n > 16 through each kernel: the large kernel, the dequantized path (bf16 weights + cuBLAS) and, on Hopper,
    // wgmma at each of its widths N (9, 16 and 17: N = 32; 64: 64; 100: 128; 130: 256 for one pass, partly filled, and
    // for two passes a second, partial block of 128; 512: several blocks), the layout of the activations changing
    // with N; and the tiled paths forced below n = 17, where the small kernel is the default.
    using Path = gpu::LutMmaMatrix::BatchPath;
    constexpr Path kAuto = Path::automatic, kLarge = Path::large, kDequantized = Path::dequantized, kWgmma = Path::wgmma;
    // The small kernel also with its activations rotated each way (rot: 0 in every block's prologue, 1 by the
    // rotation kernel first; -1 the automatic choice), and with its split-K summed through global memory instead of its
    // cluster's shared memory (cluster: 0 global, 1 cluster, -1 automatic; set_small_cluster_reduce, sm_90). And the
    // wgmma path through the kernel whose producer warpgroup decodes into shared memory (ws: 1; one pass, n > 64:
    // N = 128 at 100, 256 at 130 and 512), and through the other at the same n (ws: 0); that other kernel also over
    // stream-K shares (sk: 1; on these small matrices every block gets a few k-tiles and most tiles are shared by many
    // blocks, the summing of their shares tested hardest).
    struct Run {
      std::size_t n;
      Path path;
      int rot = -1;
      int cluster = -1;
      int ws = -1;
      int sk = -1;
    };
    const Run runs[] = {
        {1, kAuto},    {2, kAuto},         {3, kAuto},   {8, kAuto},   {16, kAuto},         {5, kLarge},   {5, kDequantized},
        {9, kWgmma},   {16, kWgmma},       {17, kLarge}, {17, kDequantized}, {17, kWgmma}, {64, kLarge}, {64, kDequantized},
        {64, kWgmma},  {100, kWgmma},      {130, kWgmma}, {512, kLarge}, {512, kDequantized}, {512, kWgmma},
        {1, Path::small, 1}, {3, Path::small, 0}, {3, Path::small, 1}, {16, Path::small, 0}, {16, Path::small, 1},
        {1, Path::small, 0, 0}, {3, Path::small, 1, 0}, {16, Path::small, 0, 0}, {16, Path::small, 1, 0},
        {1, Path::small, 0, 1}, {3, Path::small, 1, 1}, {16, Path::small, 0, 1}, {16, Path::small, 1, 1},
        {100, kWgmma, -1, -1, 1}, {130, kWgmma, -1, -1, 1}, {512, kWgmma, -1, -1, 1}, {100, kWgmma, -1, -1, 0}, {512, kWgmma, -1, -1, 0},
        {17, kWgmma, -1, -1, 0, 1}, {100, kWgmma, -1, -1, 0, 1}, {130, kWgmma, -1, -1, 0, 1}, {512, kWgmma, -1, -1, 0, 1}};
    if (!m.wgmma_available()) MESSAGE("the wgmma kernel's runs are left out: it needs compute capability 9.0 (" << gpu::device_description() << ")");
    for (const auto& [n, path, rot, cluster, ws, sk] : runs) {
      if (c.rows * c.cols * n > std::size_t{600} << 20) continue;  // keep the double reference quick
      if (path == kWgmma && !m.wgmma_available()) continue;
      if (ws == 1 && !m.wgmma_producer_available()) continue;  // stacks: the producer-decoded kernel is one pass only
      m.set_batch_path(path);
      m.set_small_pre_rotation(rot);
      m.set_small_cluster_reduce(cluster);
      m.set_wgmma_producer(ws);
      m.set_wgmma_stream_k(sk);
      if (ws >= 0) CHECK((m.variant(n).rfind("wgmma_ws", 0) == 0) == (ws == 1));
      if (sk >= 0) CHECK((m.variant(n).find("stream_k=") != std::string::npos) == (sk == 1));
      CAPTURE(c.format);
      CAPTURE(c.rows);
      CAPTURE(c.cols);
      CAPTURE(n);
      CAPTURE(m.variant(n));
      const Matrix x = test::random_normal_matrix(n, c.cols, 1000 + n);
      std::vector<std::uint16_t> xb(n * c.cols);
      for (std::size_t i = 0; i < xb.size(); ++i) xb[i] = to_bf16_bits(x.data()[i]);
      gpu::DeviceBuffer xd(xb.size() * 2), yd((n * c.rows + 2 * kGuard) * 4);
      xd.upload(xb.data(), xb.size() * 2);
      std::vector<float> y(n * c.rows + 2 * kGuard, poison);
      for (std::size_t g = 0; g < kGuard; ++g) y[g] = y[kGuard + n * c.rows + g] = 4321.0f;
      std::vector<float> emu(n * c.rows), mag(n * c.rows);
      lut_mma_emulate(L, x.data(), n, emu.data(), mag.data(), m.arith(n));
      const auto ref = test::bf16_reference(*q, qm, x);
      for (int rep = 0; rep < 2; ++rep) {  // twice: the split-K counters must be left reset
        yd.upload(y.data(), y.size() * 4);
        m.multiply(xd.as<const std::uint16_t>(), n, yd.as<float>() + kGuard, nullptr);
        std::vector<float> got(y.size());
        yd.download(got.data(), got.size() * 4);
        for (std::size_t g = 0; g < kGuard; ++g) {
          REQUIRE(got[g] == 4321.0f);
          REQUIRE(got[kGuard + n * c.rows + g] == 4321.0f);
        }
        double worst_ref = 0, worst_emu = 0, err2 = 0, norm2 = 0;
        for (std::size_t i = 0; i < n * c.rows; ++i) {
          const double v = got[kGuard + i];
          REQUIRE(std::isfinite(v));  // also: every output was written (the poison is NaN)
          worst_ref = std::max(worst_ref, std::fabs(v - ref[i]) / ((4.5 * kU + c.cols * std::ldexp(1.0, -23)) * mag[i] + 1e-30));
          worst_emu = std::max(worst_emu, std::fabs(v - emu[i]) / ((c.cols * std::ldexp(1.0, -22) + 1e-6) * mag[i] + 1e-30));
          err2 += (v - ref[i]) * (v - ref[i]);
          norm2 += ref[i] * ref[i];
        }
        CHECK(worst_ref <= 1.0);
        CHECK(worst_emu <= 1.0);
        if (worst_emu > 1.0) {  // where the wrong outputs' values belong: a layout slip shows as a permutation
          int shown = 0;
          for (std::size_t i = 0; i < n * c.rows && shown < 4; ++i) {
            const double v = got[kGuard + i];
            if (std::fabs(v - emu[i]) <= (c.cols * std::ldexp(1.0, -22) + 1e-6) * mag[i] + 1e-30) continue;
            const std::size_t t = i / c.rows, row = i % c.rows;
            std::size_t best = i;
            for (std::size_t j = 0; j < n * c.rows; ++j)
              if (std::fabs(v - emu[j]) < std::fabs(v - emu[best])) best = j;
            MESSAGE(fmt::format("wrong output (batch {}, row {}): {:.6g}, emulation {:.6g}; nearest emulated value {:.6g} at (batch {}, row {})", t,
                                row, v, emu[i], emu[best], best / c.rows, best % c.rows));
            ++shown;
          }
        }
        if (rep == 0 && (n == 1 || n == 512 || (n == 130 && c.rows >= 1000) || sk == 1))
          MESSAGE(fmt::format("{} {}x{} n={} {}: rel err vs reference {:.2e}, bound use {:.2f} (reference), {:.2f} (emulation)", c.format, c.rows,
                              c.cols, n, m.variant(n), std::sqrt(err2 / norm2), worst_ref, worst_emu));
      }
    }
    m.set_small_pre_rotation(-1);
    CHECK_THROWS_AS(m.set_small_pre_rotation(2), std::invalid_argument);
    m.set_small_pre_rotation(-1);
    CHECK_THROWS_WITH_AS(m.set_small_cluster_reduce(2), doctest::Contains("valid: -1 automatic, 0 global, 1 cluster"), std::invalid_argument);
    m.set_small_cluster_reduce(-1);
    CHECK_THROWS_WITH_AS(m.set_wgmma_producer(2), doctest::Contains("valid: -1 automatic, 0 off, 1 on"), std::invalid_argument);
    m.set_wgmma_producer(-1);
    CHECK_THROWS_WITH_AS(m.set_wgmma_stream_k(-2), doctest::Contains("valid: -1 automatic, 0 off, 1 on"), std::invalid_argument);
    m.set_wgmma_stream_k(-1);
    // Activations not 16-byte aligned (two bf16 into a buffer): the small kernel copies them 4 bytes at a time and
    // equals the emulation; not 4-byte aligned (one bf16 in): refused, naming the alignment.
    {
      constexpr std::size_t n = 3;
      m.set_batch_path(Path::small);
      m.set_small_pre_rotation(0);  // the copy from x itself, not from the rotation kernel's output
      const Matrix x = test::random_normal_matrix(n, c.cols, 77);
      std::vector<std::uint16_t> xb(n * c.cols + 2, 0);
      for (std::size_t i = 0; i < n * c.cols; ++i) xb[2 + i] = to_bf16_bits(x.data()[i]);
      gpu::DeviceBuffer xd(xb.size() * 2), yd(n * c.rows * 4);
      xd.upload(xb.data(), xb.size() * 2);
      m.multiply(xd.as<const std::uint16_t>() + 2, n, yd.as<float>(), nullptr);
      std::vector<float> got(n * c.rows), emu(n * c.rows), mag(n * c.rows);
      yd.download(got.data(), got.size() * 4);
      lut_mma_emulate(L, x.data(), n, emu.data(), mag.data(), m.arith(n));
      double worst_emu = 0;
      for (std::size_t i = 0; i < got.size(); ++i)
        worst_emu = std::max(worst_emu, std::fabs(got[i] - emu[i]) / ((c.cols * std::ldexp(1.0, -22) + 1e-6) * mag[i] + 1e-30));
      CAPTURE(c.format);
      CHECK(worst_emu <= 1.0);
      CHECK_THROWS_WITH_AS(m.multiply(xd.as<const std::uint16_t>() + 1, n, yd.as<float>(), nullptr), doctest::Contains("4-byte aligned"),
                           std::invalid_argument);
      m.set_small_pre_rotation(-1);
    }
    // The small kernel forced on a batch it cannot serve: refused before anything is read or launched.
    m.set_batch_path(Path::small);
    CHECK(m.variant(17).find("none") == 0);
    CHECK_THROWS_WITH_AS(m.multiply(nullptr, 17, nullptr, nullptr), doctest::Contains("at most 16, not 17"), std::invalid_argument);
    m.set_batch_path(kAuto);
  }
}

TEST_CASE("lut_mma's small-kernel trace: per block, ordered timer readings and the SM that ran it") {
  const std::string why = gpu::unavailable_reason();
  if (!why.empty()) {
    MESSAGE("SKIPPED: the trace test needs a GPU: " << why);
    return;
  }
  auto q = parse_quantizer("turboquant(bits=4,group=128,rotation=hadamard)");
  const std::size_t rows = 1000, cols = 4096;
  const Matrix w = test::random_normal_matrix(rows, cols, 31);
  gpu::LutMmaMatrix m(make_lut_mma_layout(*q, q->quantize(w.data(), rows, cols, 2)));
  CHECK(m.last_trace().empty());
  std::vector<std::uint16_t> xb(cols);
  const Matrix x = test::random_normal_matrix(1, cols, 32);
  for (std::size_t i = 0; i < cols; ++i) xb[i] = to_bf16_bits(x.data()[i]);
  gpu::DeviceBuffer xd(cols * 2), yd(rows * 4);
  xd.upload(xb.data(), cols * 2);
  m.set_trace(true);
  m.multiply(xd.as<const std::uint16_t>(), 1, yd.as<float>(), nullptr);
  const std::vector<std::uint64_t> t = m.last_trace();
  constexpr std::size_t F = gpu::LutMmaMatrix::kTraceFields;
  REQUIRE(t.size() % F == 0);
  const std::size_t blocks = t.size() / F;
  CHECK(blocks >= (rows + 127) / 128);  // at least one block per 128 rows (split-K adds more)
  std::set<std::uint64_t> sms;
  for (std::size_t b = 0; b < blocks; ++b) {
    CAPTURE(b);
    CHECK(t[F * b] > 0);
    for (std::size_t i = 1; i < 4; ++i) CHECK(t[F * b + i - 1] <= t[F * b + i]);
    CHECK(t[F * b + 3] - t[F * b] < std::uint64_t{1000000000});  // under a second: readings of one launch, in ns
    CHECK(t[F * b + 4] < 1024);                                    // an SM id, not a time
    sms.insert(t[F * b + 4]);
  }
  CHECK(sms.size() > 1);  // the blocks ran on more than one SM
  m.set_trace(false);
}

TEST_CASE("lut_mma's epilogue writes bf16 or adds into y: the fp32 product rounded once, or added once (split-K or not)") {
  const std::string why = gpu::unavailable_reason();
  if (!why.empty()) {
    MESSAGE("SKIPPED: the CUDA epilogue test needs a GPU: " << why);
    return;
  }
  auto q = parse_quantizer("turboquant(bits=4,group=128,rotation=hadamard)");
  for (const auto& [rows, cols] : {std::pair<std::size_t, std::size_t>{53, 384}, {1000, 4096}}) {
    const Matrix w = test::random_normal_matrix(rows, cols, 5);
    const QuantizedMatrix qm = q->quantize(w.data(), rows, cols, 3);
    gpu::LutMmaMatrix m(make_lut_mma_layout(*q, qm));
    using Path = gpu::LutMmaMatrix::BatchPath;
    for (const auto& [n, path] : {std::pair<std::size_t, Path>{1, Path::automatic}, {16, Path::automatic}, {64, Path::large}, {64, Path::dequantized},
                                  {64, Path::wgmma}, {200, Path::wgmma}}) {
      if (path == Path::wgmma && !m.wgmma_available()) continue;
      m.set_batch_path(path);  // 64 through each kernel
      CAPTURE(rows);
      CAPTURE(n);
      CAPTURE(m.variant(n));
      const Matrix x = test::random_normal_matrix(n, cols, 77 + n);
      std::vector<std::uint16_t> xb(n * cols);
      for (std::size_t i = 0; i < xb.size(); ++i) xb[i] = to_bf16_bits(x.data()[i]);
      gpu::DeviceBuffer xd(xb.size() * 2), yd(n * rows * 4), bd(n * rows * 2);
      xd.upload(xb.data(), xb.size() * 2);
      std::vector<float> plain(n * rows), base(n * rows), added(n * rows);
      m.multiply(xd.as<const std::uint16_t>(), n, yd.as<float>(), nullptr);
      yd.download(plain.data(), plain.size() * 4);
      for (std::size_t i = 0; i < base.size(); ++i) base[i] = 0.25f * static_cast<float>(i % 17) - 2.0f;
      yd.upload(base.data(), base.size() * 4);
      m.multiply(xd.as<const std::uint16_t>(), n, yd.as<float>(), nullptr, true, nullptr);
      yd.download(added.data(), added.size() * 4);
      m.multiply(xd.as<const std::uint16_t>(), n, nullptr, bd.as<std::uint16_t>(), false, nullptr);
      std::vector<std::uint16_t> rounded(n * rows);
      bd.download(rounded.data(), rounded.size() * 2);
      for (std::size_t i = 0; i < plain.size(); ++i) {
        REQUIRE(added[i] == base[i] + plain[i]);  // the same sums in the same order, added once
        REQUIRE(rounded[i] == to_bf16_bits(plain[i]));
      }
    }
  }
}
