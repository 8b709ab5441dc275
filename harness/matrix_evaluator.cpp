#include "harness/matrix_evaluator.hpp"

#include <fmt/format.h>

#include <ostream>

#include "common/error.hpp"
#include "common/memory.hpp"
#include "common/rng.hpp"
#include "eval/finite_weights.hpp"
#include "harness/data_source.hpp"
#include "harness/kernel_timing.hpp"
#include "harness/memory_estimate.hpp"
#include "harness/metrics.hpp"

namespace tqb {

MatrixEvaluator::MatrixEvaluator(const ExperimentSpec& spec) : spec_(spec) {
  for (const auto& m : spec.metrics)
    if (const Metric* metric = find_metric(m)) timed_ |= metric->timing;
}

std::vector<Column> MatrixEvaluator::columns() const {
  if (!timed_) return {};
  return {{"kernel", ColumnType::text, "point", "kernel the latency metrics timed (kernels/registry.hpp name with SIMD level)", ""}};
}

PointOutcome MatrixEvaluator::evaluate(const SweepPoint& p, const PointProgress&) {
  PointOutcome r;
  if (const std::string refusal = memory_refusal(spec_, p, available_memory_bytes()); !refusal.empty()) {
    r.ok = false;
    r.error = refusal;
    return r;
  }
  // Repeats share the data's name but not its seed.
  const std::string data_id = fmt::format("{} seed {}", p.data->name, p.data->seed);
  try {
    if (current_data_ != data_id) {
      current_ = Matrix();  // release the previous matrix before making the next
      current_ = find_data_source(p.data->source)->make(p.data->params, p.data->seed);
      current_data_ = data_id;
    }
  } catch (const InputError&) {
    throw;
  } catch (const std::exception& e) {
    current_data_.clear();
    r.ok = false;
    r.error = e.what();
    return r;
  }
  const Matrix& w = current_;
  try {
    const std::string quantized_key = fmt::format("{} | {} | {}", data_id, p.quantizer->name(), p.seed);
    if (quantized_.key != quantized_key) {
      quantized_ = Quantized{};
      quantized_.q = p.quantizer->quantize(w.data(), w.rows(), w.cols(), p.seed);
      quantized_.w_hat = Matrix(w.rows(), w.cols());
      p.quantizer->dequantize(quantized_.q, quantized_.w_hat.data());
      require_finite_weights(w, quantized_.w_hat, p.quantizer->name());
      quantized_.key = quantized_key;
    }
    const QuantizedMatrix& q = quantized_.q;
    const Matrix& w_hat = quantized_.w_hat;
    const std::uint64_t query_seed = derive_seed(spec_.seed, fmt::format("queries {} {}", p.data->name, spec_.queries));
    const std::uint64_t timing_seed = derive_seed(spec_.seed, "timing activations " + p.data->name);
    TimingSpec timing = spec_.timing;  // this point's values of the timing axes
    timing.kernel = p.timing_kernel;
    timing.batch = p.timing_batch;
    EvalContext ctx(w, w_hat, q, *p.quantizer, [&] { return random_unit_rows(spec_.queries, w.cols(), query_seed); },
                    [&] { return time_kernel(timing, w, *p.quantizer, q, timing_seed); });
    r.metrics = compute_metrics(spec_, [&](const Metric& m) { return m.compute(ctx); });
    if (ctx.timed()) r.text["kernel"] = ctx.kernel_timing().kernel;
  } catch (const std::exception& e) {
    r = PointOutcome{};
    r.ok = false;
    r.error = e.what();
  }
  return r;
}

void MatrixEvaluator::describe_plan(const std::vector<SweepPoint>& points, std::ostream& out) const {
  const SweepPoint* largest = nullptr;
  std::uint64_t most = 0;
  for (const auto& p : points)
    if (const auto b = estimate_point_bytes(spec_, p); b && *b > most) {
      most = *b;
      largest = &p;
    }
  const std::size_t available = available_memory_bytes();
  if (largest) {
    out << fmt::format("largest point: {} needs about {} ({} available now){}\n", largest->index,
                       format_bytes(static_cast<double>(most)), available ? format_bytes(static_cast<double>(available)) : "unknown",
                       available && most > available ? "; points that do not fit will be refused" : "");
  }
}

}  // namespace tqb
