#include "harness/memory_estimate.hpp"

#include <fmt/format.h>

#include "common/memory.hpp"
#include "harness/data_source.hpp"
#include "harness/metrics.hpp"

namespace tqb {

std::optional<std::uint64_t> estimate_point_bytes(const ExperimentSpec& spec, const SweepPoint& point) {
  const DataSource* source = find_data_source(point.data->source);
  if (!source || !source->shape) return std::nullopt;  // a model: known once it is loaded
  const auto [rows, cols] = source->shape(point.data->params);
  if (rows == 0 || cols == 0) return std::nullopt;
  const std::uint64_t r = rows, c = cols, n = r * c;
  std::uint64_t bytes = 2 * n * 4;  // the matrix and its dequantized copy
  bytes += point.quantizer->working_bytes(rows, cols);
  bool queries = false, timing = false;
  for (const auto& name : spec.metrics)
    if (const Metric* m = find_metric(name)) {
      queries |= m->queries;
      timing |= m->timing;
    }
  if (queries) {  // see EvalContext::inner_product_errors: w and w_hat - w in doubles, y, a, e, a + e
    const std::uint64_t q = static_cast<std::uint64_t>(spec.queries);
    bytes += 2 * n * 8 + q * c * (4 + 8) + 3 * r * q * 8;
  }
  if (timing) {  // activations and outputs at the timing batch, a dense copy for the baseline
    const std::uint64_t b = static_cast<std::uint64_t>(point.timing_batch);
    bytes += n * 4 + b * (r + c) * 4 * 2;
  }
  return bytes;
}

std::string memory_refusal(const ExperimentSpec& spec, const SweepPoint& point, std::uint64_t available) {
  if (available == 0) return "";
  const auto need = estimate_point_bytes(spec, point);
  if (!need || *need <= available) return "";
  return fmt::format("needs about {} (estimated from its shape and the spec's metrics), but {} is available; "
                     "reduce rows/cols, the group size of a Haar rotation, the sketch or `queries`, or run on a "
                     "larger machine", format_bytes(static_cast<double>(*need)), format_bytes(static_cast<double>(available)));
}

}  // namespace tqb
