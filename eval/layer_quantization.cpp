#include "eval/layer_quantization.hpp"

#include <fmt/format.h>

#include "common/error.hpp"
#include "common/rng.hpp"
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

std::unique_ptr<Quantizer> quantizer_for_layer(const Quantizer& q, std::size_t rows, std::size_t cols) {
  auto same = parse_quantizer(q.name());
  ShapeProblem p = same->check_shape(rows, cols);
  if (p.message.empty()) return same;
  if (p.param == "group" && q.params().count("group")) {
    for (std::int64_t g = std::get<std::int64_t>(q.params().at("group")) / 2; g >= 4; g /= 2) {
      if (cols % static_cast<std::size_t>(g)) continue;
      Params params = q.params();
      params["group"] = g;
      auto fallback = make_quantizer(q.family(), params);
      if (fallback->check_shape(rows, cols).message.empty()) return fallback;
    }
  } else if (p.param == "group" && q.params().count("quantizer")) {  // a modifier (rotated): fall back inside it
    Params params = q.params();
    params["quantizer"] = quantizer_for_layer(*parse_quantizer(get_str(params, "quantizer")), rows, cols)->name();
    auto fallback = make_quantizer(q.family(), params);
    if (fallback->check_shape(rows, cols).message.empty()) return fallback;
  }
  throw RunError(fmt::format("{} cannot quantize a {} x {} layer: {}", q.name(), rows, cols, p.message));
}

LayerSelection::LayerSelection(const std::string& include, const std::string& exclude)
    : include_(compile(include, "include")), exclude_(compile(exclude, "exclude")) {}

bool LayerSelection::selected(const std::string& name) const {
  return include_->full_match(name) && !exclude_->full_match(name);
}

QuantizedLayer quantize_layer(const Quantizer& q, const std::string& name, const Matrix& w, std::uint64_t seed) {
  QuantizedLayer out;
  out.quantizer = quantizer_for_layer(q, static_cast<std::size_t>(w.rows()), static_cast<std::size_t>(w.cols()));
  out.matrix = out.quantizer->quantize(w.data(), static_cast<std::size_t>(w.rows()), static_cast<std::size_t>(w.cols()),
                                       derive_seed(seed, name) >> 1);
  return out;
}

}  // namespace tqb
