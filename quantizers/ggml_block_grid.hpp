#pragma once
// llama.cpp's 32-weight blocks (q4_0, q4_1, q5_0, q5_1, q8_0, iq4_nl) seen as a grid: in block j of a row every weight
// is d·lut[code] + m, with d (and m, for the _1 types) the block's fp16 fields and lut the format's levels (q4_0: k − 8,
// q5_0: k − 16, q8_0: the int8 k − 128, iq4_nl: its 16 fixed levels, the _1 types: k). A column-wise search (gptq,
// quantizers/gptq.hpp) reads each block's d and m, chooses codes on them and writes the codes back, d and m untouched,
// so the result is the format's bytes, read by llama.cpp as any other file of that type. The k-quants are not
// such a grid: their sub-block scales are quantized against the whole super-block of 256.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "quantizers/ggml_blocks.hpp"

namespace tqb {

// The format's levels (2^code_bits of them) and whether its blocks have a minimum; empty levels when `f` is not a
// 32-weight block format.
struct GgmlBlockGrid {
  std::vector<float> lut;
  bool offset = false;
};
GgmlBlockGrid ggml_block_grid(const GgmlBlockFormat& f);

// `rows` rows of `cols` weights (a multiple of 32) in f's blocks, row-major; block (r, j) is at a[r·cols/32 + j].
// scales: d per block into a, m per block into b (left empty without minimums).
void ggml_block_scales(const GgmlBlockFormat& f, const std::uint8_t* bytes, std::size_t rows, std::size_t cols, std::vector<float>& a,
                       std::vector<float>& b);
// codes: rows × cols, one byte a weight (an index into the grid's lut).
void ggml_block_codes(const GgmlBlockFormat& f, const std::uint8_t* bytes, std::size_t rows, std::size_t cols, std::uint8_t* codes);
void ggml_block_set_codes(const GgmlBlockFormat& f, std::uint8_t* bytes, std::size_t rows, std::size_t cols, const std::uint8_t* codes);

}  // namespace tqb
