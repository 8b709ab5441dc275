#pragma once
// llama.cpp's k-quants (q2_K, q3_K, q4_K, q5_K, q6_K: super-blocks of 256 weights with 16 or 8 sub-block
// scales quantized against one or two fp16 super-scales) and iq4_nl (blocks of 32 on a fixed non-uniform
// 16-level grid), in ggml's byte layout. Quantization reproduces what `llama-quantize` writes without an
// importance matrix, bit for bit (bench/peers/check_ggml_formats.py compares against ggml itself):
//  - the k-quants: ggml's reference path (quantize_row_*_K_ref), which llama-quantize calls when no
//    importance matrix is given;
//  - iq4_nl: the path llama-quantize calls (a 15-step scale search, weights x²), not ggml's cheaper
//    quantize_row_iq4_nl_ref (one step), which no shipped file uses.
// The searches are float arithmetic in a fixed order; the file is compiled with -ffp-contract=off, as
// ggml's base library is (no FMA in its x86-64 baseline build), so the bytes do not depend on the CPU.
// All functions: n weights, a multiple of the block (256, or 32 for iq4_nl), into n / block blocks.
#include <cstddef>
#include <cstdint>

#include "quantizers/ggml_block_layouts.hpp"

namespace tqb::ggml_kquant {

inline constexpr std::size_t kSuperBlock = ggml_layout::kSuperBlock;  // QK_K
inline constexpr std::size_t kIq4Block = ggml_layout::kBlock;          // QK4_NL

// Bytes per block (ggml_block_layouts.hpp).
inline constexpr std::size_t kQ2KBytes = sizeof(ggml_layout::BlockQ2_K), kQ3KBytes = sizeof(ggml_layout::BlockQ3_K),
                             kQ4KBytes = sizeof(ggml_layout::BlockQ4_K), kQ5KBytes = sizeof(ggml_layout::BlockQ5_K),
                             kQ6KBytes = sizeof(ggml_layout::BlockQ6_K), kIq4NlBytes = sizeof(ggml_layout::BlockIQ4_NL);

// iq4_nl's 16 levels (int8, ×d): denser near zero, as the weights are.
inline constexpr std::int8_t kIq4NlLevels[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

// The k-quants as grids (quantizers/ggml_block_grid.hpp: what gptq searches on). kind: 2, 3, 4, 5 or 6 (q2_K … q6_K). A
// super-block's sub-blocks (16 of 16 weights; 8 of 32 for q4_K/q5_K) decode as a·lut[code] + b with a = d·sc and
// b = −dmin·m (q2_K, q4_K, q5_K: lut = code) or b = 0 (q3_K: code − 4, sc signed; q6_K: code − 32); codes are
// 0..2^bits − 1.
void kquant_grid_scales(int kind, const std::uint8_t* block, float* a, float* b);  // one per sub-block (b: q2_K/q4_K/q5_K)
unsigned kquant_code(int kind, const std::uint8_t* block, std::size_t i);
void kquant_set_code(int kind, std::uint8_t* block, std::size_t i, unsigned code);

void quantize_q2_k(const float* x, std::uint8_t* out, std::size_t n);
void quantize_q3_k(const float* x, std::uint8_t* out, std::size_t n);
void quantize_q4_k(const float* x, std::uint8_t* out, std::size_t n);
void quantize_q5_k(const float* x, std::uint8_t* out, std::size_t n);
void quantize_q6_k(const float* x, std::uint8_t* out, std::size_t n);
void quantize_iq4_nl(const float* x, std::uint8_t* out, std::size_t n);

void dequantize_q2_k(const std::uint8_t* in, float* y, std::size_t n);
void dequantize_q3_k(const std::uint8_t* in, float* y, std::size_t n);
void dequantize_q4_k(const std::uint8_t* in, float* y, std::size_t n);
void dequantize_q5_k(const std::uint8_t* in, float* y, std::size_t n);
void dequantize_q6_k(const std::uint8_t* in, float* y, std::size_t n);
void dequantize_iq4_nl(const std::uint8_t* in, float* y, std::size_t n);

}  // namespace tqb::ggml_kquant
