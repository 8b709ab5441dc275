#pragma once
// rotated(Q, rotation=hadamard): the rotation stage as a modifier of any quantizer whose passes share one
// group width and have no transform of their own (rtn, residual stacks of rtn). Each group of g input
// columns is rotated by its own random rotation before Q quantizes it (TurboQuant §3's rotation, QuaRot's
// and QuIP#'s incoherence processing); dequantize applies Q's reference dequantizer and the inverse
// rotation. The decode description is Q's with the rotation as each pass's transform, so every kernel
// that reads Q with rotated activations (fused_i16, fused_lut, cuda_lut_mma) reads rotated(Q) unchanged.
#include "quantizers/registry.hpp"

namespace tqb {

QuantizerFamily rotated_family();

}  // namespace tqb
