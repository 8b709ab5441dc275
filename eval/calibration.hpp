#pragma once
// Activation statistics of a model's linear layers on calibration text, for calibrated quantization (issue 30): the
// Hessian GPTQ weights a layer's errors by (Frantar et al. 2022, §2: H = Σ xᵀx over the positions' inputs x of the
// layer) and the per-channel mean |x| of activation-aware scaling (AWQ, Lin et al. 2023, §3.2). Collected in one
// forward of the unquantized model on the CPU: every layer sees full-precision activations (GPTQ's non-sequential
// variant). The sequential one (each layer after the quantized layers before it) is left for the quantization pass.
#include <cstddef>
#include <map>
#include <string>
#include <vector>

#include <Eigen/Dense>

#include "eval/layer_quantization.hpp"
#include "models/checkpoint.hpp"

namespace tqb {

struct LayerStatistics {
  Eigen::MatrixXd hessian;   // in × in: Σ xᵀx (not divided by the count; GPTQ's damping is relative)
  Eigen::VectorXd mean_abs;  // in: mean |x| per input channel
  std::size_t samples = 0;   // positions seen
};

// tokens: `sequences` chunks of `ctx` tokens, one after the other (each forwarded from position 0). include: the
// layers (a regular expression over tensor names, as a spec's include). Throws InputError for a token stream that does
// not split into the chunks or a pattern that selects no layer.
std::map<std::string, LayerStatistics> collect_layer_statistics(const Checkpoint& ck, const std::vector<int>& tokens, std::size_t ctx,
                                                                 const std::string& include = kBlockLinearLayers);

}  // namespace tqb
