#pragma once
// The GPU layout of the lut_mma CUDA kernels (lut_mma.cuh): a QuantizedMatrix repacked once, at load,
// so that each thread of a warp reads exactly the codes of its mma.sync A fragments (as Marlin repacks
// GPTQ weights; here for any 2-, 3- or 4-bit codebook, not only uniform grids). Plain C++: built and
// tested on machines without a GPU.
//
// Every supported format is one or more passes (kernels/lut_plan.hpp): the weight of row r, column k of
// pass p is a[r][j]·lut[q] + b[r][j] (j = k / g) applied to Π_j x, the group's randomized Hadamard
// rotation of the activations (TurboQuant, Algorithm 1 dequantizes to Π_jᵀ·norm·c[q], so w·x =
// norm·c[q]·(Π_j x)); RTN has no rotation, asymmetric RTN an offset b.
//
// Layout of one pass of b-bit codes, W padded to rows_pad = 16·stripes rows and cols_pad = 64·ktiles:
// - codes: uint32 [stripes][ktiles][32 lanes][b]. One (stripe, ktile) is a 16×64 tile = four 16×16
//   sub-tiles s, i.e. four m16n8k16 A fragments. Lane L (group gid = L/4, tid = L%4) holds, per
//   sub-tile s, four pairs of codes, pair r = 0..3 at row 16·stripe + gid + 8·(r&1) and columns
//   64·ktile + 16·s + 2·tid + 8·(r>>1) + {0, 1}: the PTX ISA's A-fragment registers a0..a3 of
//   mma.m16n8k16. Pair i = 4s + r is the 2b-bit field at bit 2b·i of the lane's b words (first code in
//   the low b bits); b = 3 fields straddle words, which a funnel shift reads.
// - scales: uint32 [stripes][groups_alloc][8]: word gid = bf16(a[row gid][j]) | bf16(a[row gid+8][j]) << 16.
// - offsets: the same for b (asymmetric RTN), else empty.
// - signs: uint32 [cols_pad / 32], bit k set where the rotation's sign D_kk is −1 (rotated passes).
// - pair_lut: 2^(2b) words, entry c_lo | c_hi << b = bf16(lut[c_lo]) | bf16(lut[c_hi]) << 16: one
//   shared-memory load decodes two weights (FLUTE's vectorised lookup); the kernel keeps 32 copies, one
//   per lane, so the random lookups of a warp never conflict on a bank.
// Padded rows and columns have code 0 and scale 0, so they decode to weight 0.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/float_format.hpp"
#include "kernels/cuda/host_device.hpp"

namespace tqb {

class Quantizer;
struct QuantizedMatrix;

struct LutMmaPass {
  int bits = 0;            // 2, 3 or 4
  int log2_group = 0;      // g = 2^log2_group, 32..256
  bool rotated = false;    // randomized Hadamard per group on the activations
  bool has_offset = false; // asymmetric RTN: + b
  std::vector<std::uint32_t> codes, scales, offsets, signs;
  std::vector<std::uint32_t> pair_lut;
};

struct LutMmaLayout {
  std::size_t rows = 0, cols = 0;
  std::size_t stripes = 0, ktiles = 0;  // rows_pad = 16·stripes, cols_pad = 64·ktiles
  std::vector<LutMmaPass> passes;

  std::size_t rows_pad() const { return 16 * stripes; }
  std::size_t cols_pad() const { return 64 * ktiles; }
  std::size_t groups_alloc(const LutMmaPass& p) const { return (cols_pad() + (std::size_t{1} << p.log2_group) - 1) >> p.log2_group; }
  // Bytes the layout occupies on the GPU (codes, scales, offsets, signs, one copy of each table).
  std::size_t bytes() const;
};

// Empty when the lut_mma kernels read quantizer's format, else why not.
std::string lut_mma_supports(const Quantizer& quantizer);
// Throws std::invalid_argument for a format lut_mma_supports() refuses.
LutMmaLayout make_lut_mma_layout(const Quantizer& quantizer, const QuantizedMatrix& q);

// bf16 of a float, round to nearest even (NaN kept a NaN).
inline std::uint16_t to_bf16_bits(float x) { return bf16_bits(x); }  // common/float_format.hpp's, by the layout's names
inline float from_bf16_bits(std::uint16_t h) { return bf16_value(h); }

// Pair field i (0..15) of a lane's b tile words: the 2b-bit index into the pair table. Shared by the
// kernels and the host emulation, so that the test of the repacking reads the bits as the GPU does.
template <int B>
TQB_HOST_DEVICE std::uint32_t lut_mma_pair_field(const std::uint32_t* w, int i) {
  const int bit = 2 * B * i, word = bit >> 5, shift = bit & 31;
  const std::uint32_t mask = (1u << (2 * B)) - 1u;
  if (shift + 2 * B <= 32) return (w[word] >> shift) & mask;
  const std::uint64_t pair = static_cast<std::uint64_t>(w[word]) | (static_cast<std::uint64_t>(w[word + 1]) << 32);
  return static_cast<std::uint32_t>(pair >> shift) & mask;
}

// Hopper's wgmma reads both operands from shared memory as K-major tiles with the 128-byte swizzle: a row of 64 bf16
// (128 bytes, one k-tile) per row, 8-row atoms of 1024 bytes, the 16-byte chunk c of row r stored at chunk c ^ (r mod 8)
// (PTX ISA, "Shared Memory Matrix Layout", 128B swizzling). Byte offset of chunk c (0..7) of row r in such a tile:
TQB_HOST_DEVICE std::uint32_t sw128_chunk_offset(int r, int c) { return static_cast<std::uint32_t>(r * 128 + ((c ^ (r & 7)) << 4)); }
// The activations in that form (the wgmma kernels' B operand, written so by the rotation kernel, kXrWgmmaTiles):
// element offset of (pass p, batch row t, column k) in [passes][ceil(n / R)][ktiles] tiles of R rows × 64 columns.
TQB_HOST_DEVICE std::size_t wg_tile_offset(int p, int t, int k, int R, int row_blocks, int ktiles) {
  return ((static_cast<std::size_t>(p) * row_blocks + t / R) * ktiles + (k >> 6)) * (64 * static_cast<std::size_t>(R)) +
         sw128_chunk_offset(t % R, (k >> 3) & 7) / 2 + (k & 7);
}
// The decoded weights in that form (the producer-decoded wgmma kernel's A operand, 128 rows × 64 columns per k-tile),
// written by stmatrix .x4 from the m16n8k16 A fragment of stripe st's k16 step s: lane L addresses row
// stmatrix_a_row(L) of the stripe and 16-byte chunk stmatrix_a_chunk(s, L) of the k-tile (matrix m = L / 8 is the
// fragment's register m: rows +8 for odd m, the step's second 8 columns for m ≥ 2; row L mod 8 within it).
TQB_HOST_DEVICE int stmatrix_a_row(int lane) { return (lane & 7) + 8 * ((lane >> 3) & 1); }
TQB_HOST_DEVICE int stmatrix_a_chunk(int s, int lane) { return 2 * s + (lane >> 4); }

// The two ways the kernels apply scales: the large-batch kernel decodes each weight as one bf16 rounding
// of lut·a + b (bf16 operands) before the mma; the small-batch kernel multiplies the mma's per-group sums
// of lut·x̃ by a in fp32 and adds b·Σx̃ (no rounding of the weight at all).
enum class LutMmaArith { bf16_decode, group_scale };
// Which kernel uses which: gpu::LutMmaMatrix::arith(n).

// Host emulation of the kernels' arithmetic on this layout: x rounded to bf16, rotated in fp32 and
// rounded to bf16; weights per `arith`; products and sums exact (double). y: n × rows from x: n × cols,
// row-major. Exists to test the repacking without a GPU, and as the GPU kernels' oracle (they differ
// from it only in fp32 accumulation). magnitude (optional, n × rows): Σ over passes and columns of
// (|a·lut[q]| + |b|)·|x̃|, the scale of the bf16 rounding errors (the parity tests' bound is a multiple).
void lut_mma_emulate(const LutMmaLayout& layout, const float* x, std::size_t n, float* y, float* magnitude = nullptr,
                     LutMmaArith arith = LutMmaArith::bf16_decode);

}  // namespace tqb
