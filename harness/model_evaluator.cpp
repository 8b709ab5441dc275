#include "harness/model_evaluator.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <map>
#include <ostream>

#include "common/error.hpp"
#include "common/printable.hpp"
#include "eval/chunk_losses.hpp"
#include "harness/metrics.hpp"
#include "harness/model_source.hpp"
#include "kernels/cuda/gpu.hpp"

namespace tqb {

std::vector<Column> ModelEvaluator::columns() const {
  return {
      {"layer_stats", ColumnType::text, "point", "JSON per quantized tensor: quantizer used, kernel, mse, nmse, bits per weight", ""},
      {"kv_cache", ColumnType::text, "point",
       "JSON: KV-cache quantizers, exact bits per coordinate and the outlier channels chosen per layer and head", ""},
      {"kernel", ColumnType::text, "point", "kernels the quantized layers ran (kernels/registry.hpp names with SIMD level)", ""},
      {"device", ColumnType::text, "point", "where the forward ran: cpu, or cuda / cuda-fp32 with the GPU's description", ""},
      {"layer_quantizers", ColumnType::text, "point",
       "JSON: the quantizers the layers ran with their layer counts and widths (a group_fallback: halve shows here)", ""},
      {"calibration", ColumnType::text, "point",
       "a calibrated quantizer's calibration text: chunks, tokens per chunk, file and order (empty: not calibrated)", ""},
      {"chunk_losses", ColumnType::text, "point",
       "JSON: per chunk, the mean NLL of its scored tokens (and mean KLD against the baseline), with the chunking: rows "
       "on the same data pair over them (tqbench compare)", ""},
  };
}

PointOutcome ModelEvaluator::evaluate(const SweepPoint& p, const PointProgress& progress) {
  PointOutcome r;
  try {
    ModelPointSpec spec = model_point_spec(p.data->params);
    spec.layer_output_error = std::find(spec_.metrics.begin(), spec_.metrics.end(), "layer_output_error") != spec_.metrics.end();
    const ModelMeasurements m = session_.measure(spec, *p.quantizer, p.seed, p.data->name, progress);
    r.metrics = compute_metrics(spec_, [&](const Metric& metric) { return metric.measure(m); });
    r.text["layer_stats"] = m.layers.layer_json;
    r.text["kv_cache"] = m.kv_cache_json;
    r.text["layer_quantizers"] = m.layer_quantizers;
    r.text["calibration"] = m.calibration;
    r.text["kernel"] = fmt::format("{}", fmt::join(m.layers.kernels, ","));
    const ChunkLosses losses = chunk_losses_of(m.result, m.baseline, spec.corpus, spec.method, spec.ctx);
    r.text["chunk_losses"] = to_json(losses);
    // The intervals over the chunks of the metrics that are means over them (Metric::chunk_ci95).
    for (const auto& name : spec_.metrics)
      if (const Metric* metric = find_metric(name); metric && metric->chunk_ci95) r.metrics[name + "_ci95"] = metric->chunk_ci95({losses});
    r.text["device"] = spec.device == "cpu" ? spec.device : fmt::format("{} ({})", spec.device, gpu::device_description());
  } catch (const InputError&) {
    throw;  // a bad model file or corpus: the whole run is bad input
  } catch (const std::exception& e) {
    r = PointOutcome{};
    r.ok = false;
    r.error = e.what();
  }
  return r;
}

namespace {

struct PointPlan {
  QuantizationPlan plan;
  std::string error;  // why the point cannot run as specified (empty: it can)
};

// Each point's quantization plan, from its model's tensor shapes (read once per model, no weights); a bad model
// file throws (the whole run is bad input).
std::vector<PointPlan> plan_points(const std::vector<SweepPoint>& points) {
  std::map<std::string, Checkpoint> shapes;
  std::vector<PointPlan> plans;
  for (const auto& p : points) {
    const ModelPointSpec spec = model_point_spec(p.data->params);
    auto it = shapes.find(spec.model);
    if (it == shapes.end()) it = shapes.emplace(spec.model, read_checkpoint_shapes(spec.model)).first;
    PointPlan pp;
    try {
      pp.plan = plan_quantization(it->second, *p.quantizer, LayerSelection(spec.include, spec.exclude), spec.group_fallback);
    } catch (const InputError& e) {
      pp.error = fmt::format("point {} ({} on model {}): {}", p.index, p.quantizer->name(), spec.model, e.what());
    }
    plans.push_back(std::move(pp));
  }
  return plans;
}

// "rtn(bits=4,group=64,...) x 28 (width 64); rtn(bits=4,group=4,...) x 7 (width 172)".
std::string plan_text(const QuantizationPlan& plan) {
  std::string out;
  for (const auto& g : plan.summary()) {
    if (!out.empty()) out += "; ";
    out += fmt::format("{} x {} (width {})", g.quantizer, g.layers, fmt::join(g.widths, ", "));
  }
  return out;
}

}  // namespace

void ModelEvaluator::check_plan(const std::vector<SweepPoint>& points) const {
  for (const auto& p : plan_points(points))
    if (!p.error.empty()) throw InputError(p.error);
}

void ModelEvaluator::describe_plan(const std::vector<SweepPoint>& points, std::ostream& out) const {
  const std::vector<PointPlan> plans = plan_points(points);
  out << "exact bits per weight (from the layers' shapes; the model's other tensors at 16 bits):\n";
  out << fmt::format("{:>5}  {:>9}  {:>9}  {}\n", "point", "quantized", "model", "effective quantizers of the layers");
  // Points of different quantizers whose every layer runs the same effective quantizer on the same data: their
  // rows differ only by the seeds their names give them (e.g. g64 and g128 on a model whose layers are 64 wide).
  std::map<std::string, std::vector<std::size_t>> same;
  for (std::size_t i = 0; i < points.size(); ++i) {
    const auto& p = points[i];
    if (p.repeat != 0) continue;
    if (!plans[i].error.empty()) {
      out << fmt::format("{:>5}  cannot run: {}\n", p.index, printable(plans[i].error));
      continue;
    }
    const QuantizationPlan& plan = plans[i].plan;
    out << fmt::format("{:>5}  {:>9.4f}  {:>9.4f}  {}\n", p.index, plan.quantized_bits_per_weight(), plan.model_bits_per_weight(),
                       printable(plan_text(plan)));
    std::string effective = p.data->name + " | ";
    for (const auto& l : plan.layers) effective += l.name + "=" + l.quantizer + ";";
    same[effective].push_back(i);
  }
  for (const auto& [effective, members] : same) {
    if (members.size() < 2) continue;
    std::vector<std::string> names;
    for (auto i : members) names.push_back(fmt::format("{} ({})", points[i].index, points[i].quantizer->name()));
    out << fmt::format("warning: points {} run the same effective quantizer on every layer: one configuration under "
                       "two names (only the seeds they draw, if any, differ)\n", fmt::join(names, ", "));
  }
  out << "model points: memory is known once the model is loaded\n";
}

}  // namespace tqb
