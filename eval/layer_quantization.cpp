#include "eval/layer_quantization.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>
#include <set>

#include "common/error.hpp"
#include "common/rng.hpp"
#include "models/llama.hpp"
#include "quantizers/registry.hpp"

namespace tqb {
namespace {

std::unique_ptr<NamePattern> compile(const std::string& pattern, const char* what) {
  try {
    return std::make_unique<NamePattern>(pattern);
  } catch (const InputError& e) {
    throw InputError(fmt::format("{} pattern: {}", what, e.what()));
  }
}

}  // namespace

GroupFallback parse_group_fallback(const std::string& name) {
  if (name == "none") return GroupFallback::none;
  if (name == "halve") return GroupFallback::halve;
  throw InputError(fmt::format("group fallback '{}' is not one of none, halve", name));
}

std::unique_ptr<Quantizer> quantizer_for_layer(const Quantizer& q, const std::string& layer, std::size_t rows, std::size_t cols,
                                               GroupFallback fallback) {
  auto same = parse_quantizer(q.name());
  const ShapeProblem p = same->check_shape(rows, cols);
  if (p.message.empty()) return same;
  const bool grouped = q.params().count("group") > 0, modifier = q.params().count("quantizer") > 0;
  if (p.param == "group" && fallback == GroupFallback::none)
    throw InputError(fmt::format("{}: layer {} is {} x {}: {}. Pick a group that divides every quantized layer's width, "
                                 "exclude the layer, or allow a smaller group on such layers with group_fallback: halve "
                                 "(--group-fallback halve), which the row records",
                                 q.name(), layer, rows, cols, p.message));
  if (p.param == "group" && grouped) {
    for (std::int64_t g = std::get<std::int64_t>(q.params().at("group")) / 2; g >= 4; g /= 2) {
      if (cols % static_cast<std::size_t>(g)) continue;
      Params params = q.params();
      params["group"] = g;
      auto smaller = make_quantizer(q.family(), params);
      if (smaller->check_shape(rows, cols).message.empty()) return smaller;
    }
  } else if (p.param == "group" && modifier) {  // a modifier (rotated): fall back inside it
    Params params = q.params();
    params["quantizer"] = quantizer_for_layer(*parse_quantizer(get_str(params, "quantizer")), layer, rows, cols, fallback)->name();
    auto smaller = make_quantizer(q.family(), params);
    if (smaller->check_shape(rows, cols).message.empty()) return smaller;
  }
  throw InputError(fmt::format("{} cannot quantize layer {} ({} x {}): {}", q.name(), layer, rows, cols, p.message));
}

LayerSelection::LayerSelection(const std::string& include, const std::string& exclude)
    : include_(compile(include, "include")), exclude_(compile(exclude, "exclude")) {}

bool LayerSelection::selected(const std::string& name) const {
  return include_->full_match(name) && !exclude_->full_match(name);
}

QuantizedLayer quantize_layer(const Quantizer& q, const std::string& name, const Matrix& w, std::uint64_t seed,
                              GroupFallback fallback, const InputStatistics* inputs) {
  QuantizedLayer out;
  const auto rows = static_cast<std::size_t>(w.rows()), cols = static_cast<std::size_t>(w.cols());
  out.quantizer = quantizer_for_layer(q, name, rows, cols, fallback);
  const std::uint64_t s = layer_seed(seed, name);
  if (out.quantizer->needs_calibration()) {
    if (!inputs) throw InputError(fmt::format("{}: layer {} has no calibration statistics", out.quantizer->name(), name));
    out.matrix = out.quantizer->quantize_calibrated(w.data(), rows, cols, s, *inputs);
  } else {
    out.matrix = out.quantizer->quantize(w.data(), rows, cols, s);
  }
  return out;
}

std::uint64_t layer_seed(std::uint64_t seed, const std::string& name) { return derive_seed(seed, name) >> 1; }

double QuantizationPlan::model_bits_per_weight() const {
  // Quantized layers as stored, everything else at 16 bits (as harness/metrics.cpp's model_bits_per_weight).
  const double weights = quantized_weights + other_weights;
  return weights > 0 ? 8 * (quantized_bytes + 2 * other_weights) / weights : 0.0;
}

std::vector<QuantizationPlan::Group> QuantizationPlan::summary() const {
  std::map<std::string, std::pair<int, std::set<std::size_t>>> by;
  for (const auto& l : layers) {
    auto& [count, widths] = by[l.quantizer];
    ++count;
    widths.insert(l.cols);
  }
  std::vector<Group> out;
  for (const auto& [name, v] : by) out.push_back({name, v.first, std::vector<std::size_t>(v.second.begin(), v.second.end())});
  std::stable_sort(out.begin(), out.end(), [](const Group& a, const Group& b) { return a.layers > b.layers; });
  return out;
}

std::string QuantizationPlan::summary_json() const {
  nlohmann::json j = nlohmann::json::array();
  for (const auto& g : summary()) j.push_back({{"quantizer", g.quantizer}, {"layers", g.layers}, {"widths", g.widths}});
  return j.dump();
}

QuantizationPlan plan_quantization(const Checkpoint& shapes, const Quantizer& q, const LayerSelection& selection,
                                   GroupFallback fallback) {
  QuantizationPlan plan;
  std::set<std::string> linear;
  for (const auto& name : linear_layer_names(shapes.config))
    if (selection.selected(name)) linear.insert(name);
  double total = 0;
  for (const auto& [name, shape] : shapes.shapes) {
    total += static_cast<double>(shape.rows * shape.cols);
    if (!linear.count(name)) continue;
    auto used = quantizer_for_layer(q, name, shape.rows, shape.cols, fallback);
    QuantizationPlan::Layer l{name, used->name(), shape.rows, shape.cols, used->storage_bytes(shape.rows, shape.cols)};
    plan.quantized_weights += static_cast<double>(l.rows * l.cols);
    plan.quantized_bytes += static_cast<double>(l.bytes);
    plan.layers.push_back(std::move(l));
  }
  plan.other_weights = total - plan.quantized_weights;
  return plan;
}

}  // namespace tqb
