#pragma once
// Points whose data is a matrix (gaussian, sphere, student_t, ...): make the matrix (once per data point and
// repeat), quantize, dequantize, and compute the matrix metrics (weight error, inner products, distortion
// against the paper's bounds, sizes, kernel latency under the spec's `timing:` block).
#include "common/matrix.hpp"
#include "harness/evaluator.hpp"

namespace tqb {

class MatrixEvaluator final : public Evaluator {
 public:
  explicit MatrixEvaluator(const ExperimentSpec& spec);
  std::vector<Column> columns() const override;  // kernel, when a latency metric is listed
  PointOutcome evaluate(const SweepPoint& p, const PointProgress& progress) override;
  void describe_plan(const std::vector<SweepPoint>& points, std::ostream& out) const override;

 private:
  const ExperimentSpec& spec_;
  bool timed_ = false;
  Matrix current_;
  std::string current_data_;  // name and seed of current_
  // The last point's quantized matrix and its dequantized copy: points that differ only in their timing
  // kernel or batch (the spec's timing axes) quantize once.
  struct Quantized {
    std::string key;  // data, quantizer and seed
    QuantizedMatrix q;
    Matrix w_hat;
  };
  Quantized quantized_;
};

}  // namespace tqb
