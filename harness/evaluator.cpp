#include "harness/evaluator.hpp"

#include <fmt/format.h>

#include "common/error.hpp"
#include "common/suggest.hpp"
#include "harness/matrix_evaluator.hpp"
#include "harness/metrics.hpp"
#include "harness/model_evaluator.hpp"

namespace tqb {

std::unique_ptr<Evaluator> make_evaluator(const ExperimentSpec& spec) {
  switch (data_kind(spec)) {
    case DataKind::model: return std::make_unique<ModelEvaluator>(spec);
    case DataKind::matrix: break;
  }
  return std::make_unique<MatrixEvaluator>(spec);
}

std::map<std::string, double> compute_metrics(const ExperimentSpec& spec, const std::function<double(const Metric&)>& value) {
  std::map<std::string, double> out;
  for (const auto& name : spec.metrics) {
    const Metric* m = find_metric(name);
    if (!m)
      throw InputError(fmt::format("{}: unknown metric '{}'{}; valid: {}", spec.path, name, did_you_mean(name, metric_names()),
                                   join(metric_names())));
    out[name] = value(*m);
  }
  return out;
}

}  // namespace tqb
