#pragma once
// The quantizer registry: one table of families (name, description, parameter schema, factory), the
// single source of truth for names, YAML specs and `tqbench list quantizers`.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "quantizers/params.hpp"
#include "quantizers/quantizer.hpp"

namespace tqb {

struct QuantizerFamily {
  std::string name;
  std::string description;  // one line
  ParamSchema schema;
  // Builds a quantizer from complete, validated parameters.
  std::function<std::unique_ptr<Quantizer>(const Params&)> make;
};

// Every registered family, in the order `tqbench list quantizers` shows them.
const std::vector<QuantizerFamily>& quantizer_families();
const QuantizerFamily* find_quantizer_family(const std::string& name);
std::vector<std::string> quantizer_family_names();

// From a one-line name such as "rtn(bits=4,group=128)" (omitted parameters take their defaults).
// Throws InputError naming the text and what is valid.
std::unique_ptr<Quantizer> parse_quantizer(const std::string& name);

// From a family and (possibly partial) parameters. Throws InputError.
std::unique_ptr<Quantizer> make_quantizer(const std::string& family, const Params& params);

}  // namespace tqb
