#pragma once
// Points whose data is a model (`source: model`): eval/model_eval quantizes the selected layers with the
// point's quantizer (once per model, quantizer, seed and selection), runs the model on the corpus with the
// point's kernel and KV cache, and the metric registry turns what it measured into the row's metrics.
#include "eval/layer_quantization.hpp"
#include "eval/model_eval.hpp"
#include "harness/evaluator.hpp"

namespace tqb {

class ModelEvaluator final : public Evaluator {
 public:
  explicit ModelEvaluator(const ExperimentSpec& spec) : spec_(spec) {}
  std::vector<Column> columns() const override;  // layer_stats, kv_cache, kernel
  PointOutcome evaluate(const SweepPoint& p, const PointProgress& progress) override;
  void describe_plan(const std::vector<SweepPoint>& points, std::ostream& out) const override;
  void check_plan(const std::vector<SweepPoint>& points) const override;

 private:
  const ExperimentSpec& spec_;
  ModelSession session_;
};

}  // namespace tqb
