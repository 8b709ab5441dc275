#include "harness/model_evaluator.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <ostream>

#include "common/error.hpp"
#include "harness/metrics.hpp"
#include "harness/model_source.hpp"
#include "kernels/cuda/gpu.hpp"

namespace tqb {
namespace {

// nlohmann::json writes doubles in shortest round-trip form, so a paired difference read back is the one
// computed from these values.
std::string chunk_losses_json(const ModelMeasurements& m, const ModelPointSpec& spec) {
  nlohmann::json j;
  j["corpus"] = spec.corpus;
  j["method"] = spec.method;
  j["ctx"] = spec.ctx;
  j["first_scored"] = m.result.first_scored;
  j["tokens_per_chunk"] = static_cast<std::size_t>(spec.ctx) - 1 - m.result.first_scored;
  j["nll"] = m.result.chunk_nll;
  j["kld"] = m.result.chunk_kld;
  return j.dump();
}

}  // namespace

std::vector<Column> ModelEvaluator::columns() const {
  return {
      {"layer_stats", ColumnType::text, "point", "JSON per quantized tensor: quantizer used, kernel, mse, nmse, bits per weight", ""},
      {"kv_cache", ColumnType::text, "point",
       "JSON: KV-cache quantizers, exact bits per coordinate and the outlier channels chosen per layer and head", ""},
      {"kernel", ColumnType::text, "point", "kernels the quantized layers ran (kernels/registry.hpp names with SIMD level)", ""},
      {"device", ColumnType::text, "point", "where the forward ran: cpu, or cuda / cuda-fp32 with the GPU's description", ""},
      {"layer_quantizers", ColumnType::text, "point",
       "JSON: the quantizers the layers ran with their layer counts and widths (a group_fallback: halve shows here)", ""},
      {"chunk_losses", ColumnType::text, "point",
       "JSON: per chunk, the mean NLL of its scored tokens (and mean KLD against the baseline), with the chunking: rows "
       "on the same data pair over them (tqbench compare)", ""},
  };
}

PointOutcome ModelEvaluator::evaluate(const SweepPoint& p, const PointProgress& progress) {
  PointOutcome r;
  try {
    const ModelPointSpec spec = model_point_spec(p.data->params);
    const ModelMeasurements m = session_.measure(spec, *p.quantizer, p.seed, p.data->name, progress);
    r.metrics = compute_metrics(spec_, [&](const Metric& metric) { return metric.measure(m); });
    r.text["layer_stats"] = m.layers.layer_json;
    r.text["kv_cache"] = m.kv_cache_json;
    r.text["layer_quantizers"] = m.layer_quantizers;
    r.text["kernel"] = fmt::format("{}", fmt::join(m.layers.kernels, ","));
    r.text["chunk_losses"] = chunk_losses_json(m, spec);
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

void ModelEvaluator::describe_memory(const std::vector<SweepPoint>&, std::ostream& out) const {
  out << "model points: memory is known once the model is loaded\n";
}

}  // namespace tqb
