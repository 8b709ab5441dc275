#pragma once
// Fused kernel: Y = X Ŵᵀ straight from packed codes, never materialising Ŵ.
//
// Every supported format is one or more passes (a residual stack sums its passes) in which the weight
// of row r, group j, code q is a[r][j]·lut[q] + b[r][j] applied to a per-group transform of the
// activations:
//   rtn sym:   lut[q] = q − qmax, a = scale, b = 0,        transform = identity
//   rtn asym:  lut[q] = q,        a = scale, b = minimum,  transform = identity
//   turboquant: lut = the unit-vector centroids, a = norm, transform = the group's rotation Π_j
//              (⟨Π_jᵀ c, x⟩ = ⟨c, Π_j x⟩, so activations are rotated once per group, not weights)
//   qjl:       lut[q] = ±1, a = √(π/2)/m·γ, transform = the projection S_j (m × g)
// so y_r = Σ_j a_rj·⟨lut[q_rj·], x̃_j⟩ + b_rj·Σ x̃_j. Codes of one (row, group) are decoded into a
// small buffer once (4-bit: shuffles of a 16-entry table) and dotted with each of the n activation rows;
// batches of 32 rows or more decode tiles of 256 weight rows and run one dense GEMM per tile (prefill).
// The inner loops are compiled for scalar, AVX2 and AVX-512 and picked by simd_level().
#include <memory>
#include <string>

#include "kernels/linear.hpp"

namespace tqb {

// Empty when the fused kernel can run this quantizer's format, else why not.
std::string fused_lut_supports(const Quantizer& quantizer);
// Throws std::invalid_argument when not supported.
std::unique_ptr<Linear> make_fused_lut_linear(const Quantizer& quantizer, QuantizedMatrix q);

}  // namespace tqb
