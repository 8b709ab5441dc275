#pragma once
// GPTQ (Frantar et al. 2022, arXiv 2210.17323, Algorithm 1) over any quantizer whose weights sit on one pass of
// per-group codes on a grid, a·lut[code] + b, with or without a per-group rotation (Quantizer::search_grid: the decode
// description of rtn, turboquant, rotated(rtn); llama.cpp's q4_0 … q8_0, iq4_nl and the k-quants, whose bytes take
// the codes back, quantizers/ggml_block_grid.hpp — what llama.cpp's imatrix does for its formats, by another rule):
// the columns are quantized one at a time on that grid, and each column's rounding error, weighted by the inverse
// Hessian of the layer's inputs, is spread over the columns not yet quantized (lazy batches of `block` columns, the
// inverse Hessian through its Cholesky factor, §3 "Cholesky reformulation"). A rotated format runs in its rotated
// basis, with the Hessian rotated alike (H' = R H Rᵀ, R the per-group rotations), so the kernels read the result
// unchanged: only the codes differ from the inner quantizer's.
//
// The grid (scales, norms, offsets) of a group is the inner quantizer's on the group's weights as the error feedback has
// left them when the group's first column comes up ("dynamic", the reference implementation's behaviour with groups),
// or on the unmodified W ("static", AutoGPTQ's static_groups): then the feedback moves codes, not scales.
#include <cstddef>
#include <cstdint>

#include <Eigen/Dense>

#include "quantizers/quantizer.hpp"
#include "quantizers/registry.hpp"

namespace tqb {

struct GptqOptions {
  double damp = 0.01;  // λ = damp · mean(diag H) added to the diagonal (the paper's 1%)
  int block = 128;     // columns per lazy batch (§3 "Lazy batch-updates"); the result does not depend on it
  bool act_order = false;  // columns in order of decreasing diag(H) (the reference implementation's desc_act)
  bool dynamic_groups = true;  // each group's grid from its updated weights (false: from W, static_groups)
};

// w: rows × cols, row-major (rows = output channels). hessian: cols × cols, XᵀX of the layer's inputs X (samples ×
// cols) or any positive semi-definite matrix (columns with zero diagonal are dead: their weights quantize as zero input
// would leave them). Throws InputError naming the option or input that is invalid, or the quantizer without such a
// decode description.
QuantizedMatrix gptq_quantize(const Quantizer& inner, const float* w, std::size_t rows, std::size_t cols, const Eigen::MatrixXd& hessian,
                              std::uint64_t seed, const GptqOptions& options = {});

// U, the upper Cholesky factor of H⁻¹ (H⁻¹ = Uᵀ U; h: C × C symmetric positive definite), from one Cholesky of H in
// reversed order and one triangular inverse (its blocks of columns on OpenMP's threads; the result does not depend on
// their number). InputError when h is not positive definite.
Eigen::MatrixXd inverse_hessian_factor(const Eigen::MatrixXd& h);

// gptq(quantizer=Q, damp=0.01, block=128, act_order=off, groups=dynamic): the registry's modifier. Its results are Q's format
// (Q's dequantizer, decode description and kernels) with GPTQ's codes; quantizing needs the layer's Hessian
// (Quantizer::quantize_calibrated), which a model's calibration provides (eval/calibration.hpp).
QuantizerFamily gptq_family();

}  // namespace tqb
