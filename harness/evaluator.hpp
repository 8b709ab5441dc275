#pragma once
// One evaluator per kind of data (DataKind, harness/data_source.hpp): it evaluates a sweep point, computes
// the spec's metrics through the metric registry (harness/metrics.hpp), and owns the columns a row of its
// kind has beyond the shared ones (point, data and quantizer parameters, metrics, provenance:
// harness/result_row.hpp). harness/runner.cpp holds one per run. To add a kind of data: a DataKind, its
// sources, its metrics (with `kind` set) and an evaluator here, picked in evaluator.cpp.
#include <functional>
#include <iosfwd>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "harness/spec.hpp"
#include "harness/store.hpp"
#include "harness/sweep.hpp"

namespace tqb {

struct Metric;  // harness/metrics.hpp

struct PointOutcome {
  bool ok = true;
  std::string error;                        // why the point failed (ok = false)
  std::map<std::string, double> metrics;    // every metric the spec lists, when ok
  std::map<std::string, std::string> text;  // the evaluator's own columns (columns()), by name
};

using PointProgress = std::function<void(const std::string&)>;

class Evaluator {
 public:
  virtual ~Evaluator() = default;
  // The columns this kind of row adds after the metrics (text columns; their values go in PointOutcome::text).
  virtual std::vector<Column> columns() const = 0;
  // Throws InputError when the run's input is bad (a model file, a corpus): the whole run stops. Any other
  // failure is the point's: ok = false with the reason.
  virtual PointOutcome evaluate(const SweepPoint& p, const PointProgress& progress) = 0;
  // `run --dry-run`: what is known before running: the points' memory; for models, each point's exact bits per
  // weight and effective quantizers, and points that would run the same configuration.
  virtual void describe_plan(const std::vector<SweepPoint>& points, std::ostream& out) const = 0;
  // Before a run starts: InputError naming the point for one that cannot run as specified (a model layer its
  // group does not divide), so that a sweep does not stop at its hundredth point for a reason known at the first.
  virtual void check_plan(const std::vector<SweepPoint>&) const {}
};

// The evaluator of the spec's kind of data (data_kind(spec)).
std::unique_ptr<Evaluator> make_evaluator(const ExperimentSpec& spec);

// The spec's metrics from a metric registry lookup each (InputError naming an unknown one: a typo is an
// error, never an empty cell); `value` computes one by its registry entry.
std::map<std::string, double> compute_metrics(const ExperimentSpec& spec, const std::function<double(const Metric&)>& value);

}  // namespace tqb
