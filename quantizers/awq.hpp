#pragma once
// Activation-aware weight scaling (AWQ, Lin et al. 2023, arXiv 2306.00978, §3.2-3.3) as a modifier of any quantizer Q:
// the layer's input channels are scaled by s = s_x^α before Q quantizes (s_x: the channel's mean |x| on the calibration
// inputs, s normalized to a geometric mean of max and min of 1), and divided back after: Ŵ = Q(W·diag(s))·diag(s)⁻¹.
// Salient channels (large |x|) get a finer share of Q's grid. α is searched on a grid of `grid` values in [0, 1) for
// the smallest output error tr((W − Ŵ) H (W − Ŵ)ᵀ) on the calibration inputs (H = Σ xᵀx), the paper's objective;
// α = 0 is Q itself, so the chosen scaling is never worse than Q on that data.
//
// Deployment folds diag(s)⁻¹ into what produces the input (the RMSNorm weight, the previous projection). scale=layer
// (the default): each layer keeps its own s as fp16 beside Q's codes (16 bits per input channel: 0.004 bits per weight
// for 4096 rows), so every layer may scale differently. scale=shared: the layers that read the same input (a block's
// q/k/v after the attention norm, its gate/up after the FFN norm) get one s, searched for their summed output error,
// as the paper deploys it (one s folded into the norm; the reference code scales q/k/v together); each still stores
// the s (the same values). Either way the result is read by dequantize-then-dense; the kernels do not read it.
// Q may itself be calibrated (awq(gptq(Q))): it then sees the scaled layer's statistics, H' = S⁻¹ H S⁻¹.
//
// clip=search (AWQ's weight clipping, the reference's auto_clip): after the scaling, each (row, group) of Q's groups is
// clipped to ±ratio·max|w| before Q quantizes, ratio from {1, 0.975, …, 0.525} (20 points, the reference's grid down
// to a shrink of 0.5) for the least output error of that group, δ H'_gg δᵀ on the calibration inputs (the group's own
// block of the statistics, as the reference measures each group on its own inputs). Ratio 1 is no clipping, so the
// search never raises a group's error; the clipped weights are what Q stores (nothing added to the format). Needs a Q
// whose groups quantize independently (checked) and that is not itself calibrated.
#include <cstddef>
#include <cstdint>

#include "quantizers/quantizer.hpp"
#include "quantizers/registry.hpp"

namespace tqb {

struct AwqOptions {
  int grid = 20;       // α ∈ {0, 1/grid, …, (grid − 1)/grid} (the paper's 20-point grid)
  bool clip = false;   // clip=search: each group's clipping ratio searched after the scaling
  bool shared = false; // scale=shared: one s for every layer in inputs.shared_input (each with its own seed)
};

// w: rows × cols, row-major. inputs: the layer's calibration statistics (hessian and mean_abs of cols; with shared, the
// layers sharing them, this one among them: same seed and weights). The result's passes[0] is Q's matrix of W·diag(s);
// its scales hold s (cols values, fp16). alpha: the α chosen (may be null).
QuantizedMatrix awq_quantize(const Quantizer& inner, const float* w, std::size_t rows, std::size_t cols, const InputStatistics& inputs,
                             std::uint64_t seed, const AwqOptions& options = {}, double* alpha = nullptr);

// awq(quantizer=Q, grid=20, clip=none|search, scale=layer|shared): the registry's modifier; quantizing needs a model's calibration (Quantizer::quantize_calibrated).
QuantizerFamily awq_family();

}  // namespace tqb
