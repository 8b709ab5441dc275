#pragma once
// Fused 4-bit kernel with 16-bit integer arithmetic for small batches (n < 32): per group the
// transformed activations are quantized to 14-bit integers (scale = max|x̃|/8191) and the 16-entry
// lookup table to 14-bit integers; codes become table entries through two byte shuffles (low and
// high bytes of the int16 table) and are multiplied-accumulated 16 at a time (pmaddwd), so each group
// costs about ten instructions per 16 weights instead of a float decode and dot. 14 bits keep every
// int32 lane below 2^31 for groups up to 256 columns. Error: about 1e-4 relative per product
// (tolerance 2e-3 in the parity test). Batches of 32 or more use fused_lut's tiled GEMM.
// Supports rtn and turboquant with 4-bit codes and groups of a multiple of 16 up to 256, and residual
// stacks of them.
#include <memory>
#include <string>

#include "kernels/linear.hpp"

namespace tqb {

std::string fused_i16_supports(const Quantizer& quantizer);
std::unique_ptr<Linear> make_fused_i16_linear(const Quantizer& quantizer, QuantizedMatrix q);

}  // namespace tqb
