#pragma once
// Fused 4-bit kernel with 16-bit integer arithmetic, for every batch size: per group the transformed
// activations are quantized to 14-bit integers (scale = max|x̃|/8191) and the 16-entry lookup table to
// 14-bit integers. 32 bytes of codes (64 weights) are decoded by four in-lane byte shuffles of the
// table's low and high bytes and four byte interleaves, then multiplied-accumulated 16 at a time
// (pmaddwd; vpdpwssd on AVX-512 VNNI, 32 at a time) against activations stored in the decode's order
// (no permute in the loop); the batch goes through in slices of 4 columns that share each decode
// (prefill included: at n = 512 this is about 2.3× Eigen's fp32 GEMM on the development VM). Per
// group the int32 sums are scaled by a_rj·xs_tj into float accumulators.
// Overflow: a multiply-add lane adds two products below 2^26 each; over a group of m ≤ 256 codes a
// lane of the int32 accumulator receives at most m/8 ≤ 32 products, < 2^31.
// Error: about 1e-4 relative per product (tolerance 2e-3 in the parity test).
// Supports rtn and turboquant with 4-bit codes and groups of a multiple of 32 up to 256, and residual
// stacks of them.
#include <memory>
#include <string>

#include "kernels/linear.hpp"

namespace tqb {

std::string fused_i16_supports(const Quantizer& quantizer);
std::unique_ptr<Linear> make_fused_i16_linear(const Quantizer& quantizer, QuantizedMatrix q);

}  // namespace tqb
