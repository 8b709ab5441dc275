#pragma once
// Metrics: a registry of named measurements of one quantized matrix, each with a description and a
// direction (which way is better) that plots and tables use.
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "harness/data_source.hpp"
#include "quantizers/quantized_matrix.hpp"

namespace tqb {

enum class Direction { lower, higher, zero };  // zero: closer to 0 is better (a bias)
std::string to_string(Direction d);

// Statistics of e = <y, ŵ> - <y, w> over every (query y, row w) pair.
struct InnerProductErrors {
  double mean = 0;      // bias
  double variance = 0;  // sample variance
  double rmse = 0;      // sqrt(mean(e^2))
  std::size_t pairs = 0;
};

// What a metric sees for one sweep point. Shared intermediate results are computed once, on demand.
class EvalContext {
 public:
  // w, w_hat: rows x cols. queries: a function producing n x cols unit rows when first needed.
  EvalContext(const Matrix& w, const Matrix& w_hat, const QuantizedMatrix& q, std::function<Matrix()> queries)
      : w(w), w_hat(w_hat), q(q), make_queries_(std::move(queries)) {}
  const Matrix& w;
  const Matrix& w_hat;
  const QuantizedMatrix& q;
  const InnerProductErrors& inner_product_errors();

 private:
  std::function<Matrix()> make_queries_;
  std::optional<InnerProductErrors> ip_;
};

struct Metric {
  std::string name;
  std::string description;
  Direction direction;
  std::function<double(EvalContext&)> compute;
};

const std::vector<Metric>& metrics();
const Metric* find_metric(const std::string& name);
std::vector<std::string> metric_names();

}  // namespace tqb
