#pragma once
// Metrics: a registry of named measurements of one quantized matrix, each with a description and a
// direction (which way is better) that plots and tables use.
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "harness/data_source.hpp"
#include "harness/kernel_timing.hpp"
#include "quantizers/quantized_matrix.hpp"
#include "quantizers/quantizer.hpp"

namespace tqb {

struct ModelMeasurements;  // eval/model_eval.hpp
struct ChunkLosses;        // eval/chunk_losses.hpp

// zero: closer to 0 is better (a bias); one: closer to 1 is better (a slope or ratio).
enum class Direction { lower, higher, zero, one };
std::string to_string(Direction d);

// Statistics of the inner-product estimate over every (query y, row w) pair: a = <y, w>, â = <y, ŵ>,
// e = â − a. Confidence intervals treat the pairs as independent (rows and queries are), so they are
// approximate when rows are few.
struct InnerProductErrors {
  double mean = 0;          // bias: mean(e)
  double mean_ci95 = 0;     // half-width of its 95% interval, 1.96·sd(e)/√n
  double variance = 0;      // sample variance of e
  double rmse = 0;          // sqrt(mean(e²))
  double normalized = 0;    // mean(e² / ‖w‖²): D_prod of the paper for unit queries
  double slope = 0;         // least squares â ≈ slope·a through the origin: 1 = unbiased, 2/π for 1-bit MSE
  double slope_ci95 = 0;    // half-width of its 95% interval
  std::size_t pairs = 0;
};

// What a metric sees for one sweep point. Shared intermediate results are computed once, on demand.
class EvalContext {
 public:
  // w, w_hat: rows x cols. queries: a function producing n x cols unit rows when first needed.
  // timing: runs the spec's kernel timing when a latency metric first asks for it.
  EvalContext(const Matrix& w, const Matrix& w_hat, const QuantizedMatrix& q, const Quantizer& quantizer,
              std::function<Matrix()> queries, std::function<KernelTiming()> timing = {})
      : w(w), w_hat(w_hat), q(q), quantizer(quantizer), make_queries_(std::move(queries)), time_kernel_(std::move(timing)) {}
  const Matrix& w;
  const Matrix& w_hat;
  const QuantizedMatrix& q;
  const Quantizer& quantizer;
  const InnerProductErrors& inner_product_errors();
  const KernelTiming& kernel_timing();
  bool timed() const { return timing_.has_value(); }

 private:
  std::function<Matrix()> make_queries_;
  std::function<KernelTiming()> time_kernel_;
  std::optional<InnerProductErrors> ip_;
  std::optional<KernelTiming> timing_;
};

struct Metric {
  std::string name;
  std::string description;
  Direction direction;
  std::function<double(EvalContext&)> compute;  // matrix data: from the point's matrices; empty if it does not apply
  // Matrix data: only when a spec lists it (a latency: not repeatable, never in the default set).
  bool timing = false;
  bool queries = false;   // uses the spec's random queries (rows x queries products in doubles)
  std::function<double(const ModelMeasurements&)> measure;  // model data: from what eval/model_eval measured; empty if not
  // Model data, for a metric that is a mean over the scored chunks (or a function of one): the half-width of its
  // 95% interval over the chunks, and over the seeds when given several repeats' losses (eval/paired.hpp). Rows
  // get it as METRIC_ci95, summary rows over their repeats; empty for other metrics.
  std::function<double(const std::vector<ChunkLosses>&)> chunk_ci95;
  // Whether it measures this kind of data (the function for it is there); a metric may measure both.
  bool applies_to(DataKind k) const { return k == DataKind::matrix ? static_cast<bool>(compute) : static_cast<bool>(measure); }
};

const std::vector<Metric>& metrics();
const Metric* find_metric(const std::string& name);
std::vector<std::string> metric_names();


}  // namespace tqb
