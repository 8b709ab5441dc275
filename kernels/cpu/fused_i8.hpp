#pragma once
// Fused 4-bit kernel with 8-bit integer arithmetic, for prefill (llama.cpp's approach for its 4-bit
// formats: activations in int8, VNNI dot products). Per group the transformed activations are quantized
// to int8 (scale = max|x̃|/127, stored as x̃q + 128 in uint8) and the 16-entry lookup table to int8
// (scale = max|lut|/127). On AVX-512 VNNI the codes are repacked once with 16 rows in the vector lanes
// (4 codes per row per 32 bytes, as llama.cpp's repacked layouts): one byte shuffle of the table decodes
// 64 weights, vpdpbusd (uint8 × int8 → int32) multiplies them with 4 broadcast activations per column, and
// each group ends in one vector FMA for 16 rows; the +128 offset of the activations is removed exactly with
// each (row, group)'s Σ lut8, precomputed. The batch goes through in slices of 8 columns per decode.
//
// Approximate: int8 activations per group and an int8 table lose more than fused_i16's 14 bits, so the
// perplexity it gives differs from the reference's (docs/PERF.md records ΔPPL). `auto` never takes it
// (LinearKernel::approximate); a spec or `--kernel fused_i8` names it, and result rows say it ran.
// Every SIMD level computes the same integer sums: AVX-512 VNNI (vpdpbusd), AVX2 (the int8 values
// widened to int16, pmaddwd: exact, no saturation) and scalar.
// Overflow: |x̃q·w| ≤ 127² per product, m ≤ 256 products per group: < 2^22.
// Supports rtn and turboquant with 4-bit codes and groups of a multiple of 32 up to 256, and their stacks.
#include <memory>
#include <string>

#include "kernels/linear.hpp"

namespace tqb {

std::string fused_i8_supports(const Quantizer& quantizer);
std::unique_ptr<Linear> make_fused_i8_linear(const Quantizer& quantizer, QuantizedMatrix q);

}  // namespace tqb
