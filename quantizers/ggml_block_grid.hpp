#pragma once
// llama.cpp's block formats seen as a grid, where they are one: in group j of a row every weight is a·lut[code] + b.
//  - the 32-weight blocks q4_0, q4_1, q5_0, q5_1, q8_0, iq4_nl: a group is a block, a = its fp16 d, b = its fp16 m (the
//    _1 types) or 0, lut the format's levels (q4_0: k − 8, q5_0: k − 16, q8_0: the int8 k − 128, iq4_nl: its 16 fixed
//    levels, the _1 types: k);
//  - the k-quants, whose sub-block scales are quantized against their super-block of 256, so the grids of a
//    super-block's groups are set together (`span`): q4_K, q5_K (groups of 32: a = d·sc, b = −dmin·m, lut = k), q2_K
//    (groups of 16, the same form), q3_K (groups of 16: a = d·sc, lut = k − 4) and q6_K (groups of 16: lut = k − 32).
// A column-wise search (gptq, quantizers/gptq.hpp) reads the grids, chooses codes on them and writes the codes back,
// scales untouched, so the result is the format's bytes, read by llama.cpp as any other file of that type.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "quantizers/ggml_blocks.hpp"

namespace tqb {

// The format's levels (2^code_bits of them), its group (weights a grid covers), how many consecutive groups are set
// together (a block's) and whether the grids have offsets; empty levels when `f` is not such a grid.
struct GgmlBlockGrid {
  std::vector<float> lut;
  std::size_t group = 0, span = 1;
  bool offset = false;
};
GgmlBlockGrid ggml_block_grid(const GgmlBlockFormat& f);

// `rows` rows of `cols` weights (a multiple of f.block) in f's blocks, row-major; group (r, j) is at a[r·cols/group + j].
// scales: a per group, b per group (left empty without offsets).
void ggml_block_scales(const GgmlBlockFormat& f, const std::uint8_t* bytes, std::size_t rows, std::size_t cols, std::vector<float>& a,
                       std::vector<float>& b);
// codes: rows × cols, one byte a weight (an index into the grid's lut).
void ggml_block_codes(const GgmlBlockFormat& f, const std::uint8_t* bytes, std::size_t rows, std::size_t cols, std::uint8_t* codes);
void ggml_block_set_codes(const GgmlBlockFormat& f, std::uint8_t* bytes, std::size_t rows, std::size_t cols, const std::uint8_t* codes);

}  // namespace tqb
