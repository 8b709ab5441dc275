#pragma once
// Activation statistics of a model's linear layers on calibration text, for calibrated quantization (issue 30): the
// Hessian GPTQ weights a layer's errors by (Frantar et al. 2022, §2: H = Σ xᵀx over the positions' inputs x of the
// layer) and the per-channel mean |x| of activation-aware scaling (AWQ, Lin et al. 2023, §3.2), collected by the layers
// themselves in the model's forward on the evaluation's device (the CPU's, or a GPU's: ForwardOps::input_statistics).
//
// Two orders. Independent: one forward of the unquantized model; every layer sees full-precision inputs. Sequential
// (GPTQ's layer-by-layer loop): block by block, each block's statistics from the residual stream the already quantized
// blocks before it produce, so a layer's error feedback also answers the drift the quantized layers before it cause.
// The chunks' streams are carried through the blocks once (LlamaModel::run_blocks): a block runs twice in the
// sequential order (its statistics, then its quantized output), so calibration costs about two forwards.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <Eigen/Dense>

#include "eval/layer_quantization.hpp"
#include "models/checkpoint.hpp"

namespace tqb {

using LayerStatistics = InputStatistics;  // quantizers/quantizer.hpp
using LayerStatisticsMap = std::map<std::string, LayerStatistics>;

// A selected layer quantized with its statistics, as the weights the forward then uses (rows × cols, dequantized).
using QuantizedWeightsFn = std::function<Matrix(const std::string& name, const Matrix& w, const LayerStatistics& stats)>;

// tokens: chunks of `ctx` tokens, one after the other (each forwarded from position 0). selection: the layers.
// quantized: empty for the independent order; otherwise the sequential order, with each selected layer of an earlier
// block computed by quantized(name, w, its statistics), once. device: where the forward and the sums run (a device of
// --device: "cpu", "cuda", "cuda-fp32"; the streams and statistics stay there until a block's are complete). Throws
// InputError for a token stream that does not split into the chunks or a selection of no layer.
// shared_input_seed: when given, each layer's statistics also list the selected layers that read the same input
// (InputStatistics::shared_input: their full-precision weights, and their seeds from this function), for a quantizer
// that needs them (Quantizer::needs_shared_inputs); in the sequential order they are dropped once the block is quantized.
LayerStatisticsMap collect_layer_statistics(const Checkpoint& ck, const std::vector<int>& tokens, std::size_t ctx,
                                            const LayerSelection& selection, const QuantizedWeightsFn& quantized = {},
                                            const std::string& device = "cpu",
                                            const std::function<std::uint64_t(const std::string&)>& shared_input_seed = {});
inline LayerStatisticsMap collect_layer_statistics(const Checkpoint& ck, const std::vector<int>& tokens, std::size_t ctx,
                                                   const std::string& include = kBlockLinearLayers) {
  return collect_layer_statistics(ck, tokens, ctx, LayerSelection(include, "^$"));
}

// Where a calibrated quantizer's text comes from, as a spec's calibration_* keys and the model commands' flags say.
struct CalibrationSpec {
  std::string corpus;  // the text (a path or a named corpus); chunks from its end
  int chunks = 16, ctx = 512;
  bool sequential = true;
  int held_out = 4;  // chunks just before the calibration chunks, for the layers' output error on unseen inputs
  // How many tokens of the corpus' beginning an evaluation reads (0: all; kNotEvaluated: none, it is another text):
  // the calibration must not overlap them.
  static constexpr std::size_t kNotEvaluated = static_cast<std::size_t>(-1);
  std::size_t evaluated_tokens = kNotEvaluated;
  std::string device = "cpu";  // where the calibration's forward runs: the evaluation's device (--device)
};
inline constexpr const char* kCalibrationOrders[] = {"sequential", "independent"};

// `spec` beside an evaluation of `corpus` that reads its first `evaluated_tokens` tokens (0: all of them): no calibration
// corpus means that corpus (its end calibrates), and a calibration corpus that is that corpus must not overlap them.
CalibrationSpec beside_evaluation(CalibrationSpec spec, const std::string& corpus, std::size_t evaluated_tokens);

struct Calibration {
  LayerStatisticsMap layers;
  // The layers the sequential order quantized on the way (every selected layer of the blocks), for quantize_model to take
  // instead of quantizing them again (ModelQuantization::prequantized).
  std::map<std::string, QuantizedLayer> quantized;
  double seconds = 0;  // tokenizing the text and collecting (including the sequential order's quantization)
  std::string label;   // "the last 16 chunks of 512 tokens of FILE, sequential"
};

// The statistics `quantizer` needs for the layers `how` selects of `ck`, with the point's seed (the sequential
// order quantizes the earlier blocks exactly as quantize_model will). InputError naming the flag-free facts (chunks,
// tokens needed, tokens free) when the text is too short or the model has no tokenizer.
Calibration calibrate_model(const Checkpoint& ck, const Quantizer& quantizer, std::uint64_t seed, const std::string& include,
                            const std::string& exclude, GroupFallback fallback, const CalibrationSpec& spec);

// The unquantized model's statistics on the spec's `held_out` chunks (before the calibration chunks, not seen by a
// calibrated quantizer), for every layer the selection takes: what layer_output_error measures with.
LayerStatisticsMap held_out_statistics(const Checkpoint& ck, const std::string& include, const std::string& exclude,
                                       const CalibrationSpec& spec);

// A layer's relative output error on inputs X whose statistics are H = Σ xᵀx: ‖(W − Ŵ)Xᵀ‖² / ‖W Xᵀ‖²
// = tr(E H Eᵀ) / tr(W H Wᵀ), E = W − Ŵ (rows × cols; H cols × cols).
double relative_output_error(const Matrix& w, const Matrix& w_hat, const Eigen::MatrixXd& hessian);

}  // namespace tqb
