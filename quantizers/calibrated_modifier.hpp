#pragma once
// What the calibrated modifiers (gptq, awq) share: a wrapped quantizer whose shape rules, nominal bits and use of the
// seed are theirs, a plain quantize() that is an error saying where calibration comes from, and the need for it.
// Each modifier adds quantize_calibrated, its sizes, zero_layout and how it reads its result back.
#include <fmt/format.h>

#include <memory>
#include <string>
#include <utility>

#include "common/error.hpp"
#include "quantizers/quantizer.hpp"

namespace tqb {

class CalibratedModifier : public Quantizer {
 public:
  CalibratedModifier(const std::string& family, const ParamSchema& schema, const Params& p, std::unique_ptr<Quantizer> inner)
      : Quantizer(family, schema, p), inner_(std::move(inner)) {}
  ShapeProblem check_shape(std::size_t rows, std::size_t cols) const override { return inner_->check_shape(rows, cols); }
  double nominal_bits(std::size_t cols) const override { return inner_->nominal_bits(cols); }
  bool uses_seed() const override { return inner_->uses_seed(); }
  bool needs_calibration() const override { return true; }
  const Quantizer& inner() const { return *inner_; }
  QuantizedMatrix quantize(const float*, std::size_t, std::size_t, std::uint64_t) const override {
    throw InputError(fmt::format("{} needs calibration data (each layer's input statistics): use it on a model, whose calibration "
                                 "chunks are taken from the corpus (perplexity --calibration-chunks)", name()));
  }

 protected:
  std::unique_ptr<Quantizer> inner_;
};

}  // namespace tqb
