#include "quantizers/registry.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "common/named_table.hpp"
#include "common/error.hpp"
#include "common/suggest.hpp"
#include "quantizers/ggml_formats.hpp"
#include "quantizers/none.hpp"
#include "quantizers/qjl.hpp"
#include "quantizers/residual.hpp"
#include "quantizers/rotated.hpp"
#include "quantizers/awq.hpp"
#include "quantizers/gptq.hpp"
#include "quantizers/rtn.hpp"
#include "quantizers/turboquant.hpp"

namespace tqb {

const std::vector<QuantizerFamily>& quantizer_families() {
  // To add a quantizer: write quantizers/<name>.{hpp,cpp} with a `<name>_family()` and list it here.
  static const std::vector<QuantizerFamily> families = [] {
    std::vector<QuantizerFamily> f{
        turboquant_family(), turboquant_prod_family(), qjl_family(), residual_family(), rtn_family(), rotated_family(), gptq_family(), awq_family(),
    };
    for (auto& g : ggml_families()) f.push_back(std::move(g));  // llama.cpp's formats, as baselines
    f.push_back(none_family());
    return f;
  }();
  return families;
}

const QuantizerFamily* find_quantizer_family(const std::string& name) { return find_named(quantizer_families(), name); }

std::vector<std::string> quantizer_family_names() { return names_of(quantizer_families()); }

static const QuantizerFamily& require_family(const std::string& family) {
  const QuantizerFamily* f = find_quantizer_family(family);
  if (!f)
    throw InputError(fmt::format("unknown quantizer '{}'{}; registered quantizers: {}", family,
                                 did_you_mean(family, quantizer_family_names()), join(quantizer_family_names())));
  return *f;
}

std::unique_ptr<Quantizer> parse_quantizer(const std::string& name) {
  // Bounded before any parsing: nested stacks are parsed recursively, and an error quotes the name.
  constexpr std::size_t kMaxName = 4096;
  constexpr int kMaxNesting = 8;
  if (name.size() > kMaxName)
    throw InputError(fmt::format("quantizer name of {} characters ('{}...'); names are at most {} characters", name.size(), name.substr(0, 60), kMaxName));
  int depth = 0, deepest = 0;
  for (char c : name) {
    if (c == '(') deepest = std::max(deepest, ++depth);
    if (c == ')') --depth;
  }
  if (deepest > kMaxNesting)
    throw InputError(fmt::format("quantizer '{}...' nests {} levels of parentheses; at most {} are allowed", name.substr(0, 60), deepest, kMaxNesting));
  const NameParts parts = split_name(name);
  const QuantizerFamily& f = require_family(parts.family);
  return f.make(parse_args(parts, f.schema, "quantizer '" + name + "'"));
}

std::unique_ptr<Quantizer> make_quantizer(const std::string& family, const Params& params) {
  const QuantizerFamily& f = require_family(family);
  return f.make(f.schema.complete(params, "quantizer '" + family + "'"));
}

}  // namespace tqb
