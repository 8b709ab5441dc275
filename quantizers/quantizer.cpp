#include "quantizers/quantizer.hpp"

#include "quantizers/registry.hpp"

namespace tqb {

std::string Quantizer::name() const {
  const QuantizerFamily* f = find_quantizer_family(family_);
  return family_ + "(" + (f ? f->schema.format(params_) : std::string()) + ")";
}

}  // namespace tqb
