#pragma once
// Typed parameters with a schema: one mechanism serves quantizer names, YAML specs, data sources and
// `tqbench list`. A schema lists each parameter's name, kind, default, valid range or choices and a
// one-line description; values are checked against it and formatted canonically.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace tqb {

// An integer, a real number or a name.
using ParamValue = std::variant<std::int64_t, double, std::string>;

struct ParamSpec {
  enum class Kind { integer, real, choice, text };
  std::string name;
  Kind kind = Kind::integer;
  ParamValue default_value;
  std::string description;
  // integer and real: inclusive range.
  double min = 0, max = 0;
  // integer: named values accepted in place of a number, e.g. {"row", 0} for "the whole row".
  std::vector<std::pair<std::string, std::int64_t>> aliases;
  // integer: when set, the value must be a power of two (or an alias).
  bool power_of_two = false;
  // choice: the valid names.
  std::vector<std::string> choices;
  // A parameter of how something is evaluated, not of what is quantized (a model's corpus, context,
  // kernel): it does not enter the seeds, so sweeping it compares the same quantized weights.
  bool evaluation_only = false;
  // Left out of canonical names while it has its default value: a parameter added after result files were
  // written (a model's device) keeps their points' names and keys, so they resume and compare unchanged.
  bool named_when_set = false;

  // Parse a scalar given as text (from a one-line name or YAML); nullopt when it is not of this kind.
  std::optional<ParamValue> parse(const std::string& text) const;
  // Empty when v is valid, else what is wrong and what would be valid.
  std::string check(const ParamValue& v) const;
  // Canonical text: aliases by name, reals in shortest round-trip form.
  std::string format(const ParamValue& v) const;
  // "integer 1..8 or row", "one of sym, asym": what is valid, for help and error messages.
  std::string valid_text() const;
};

using Params = std::map<std::string, ParamValue>;

class ParamSchema {
 public:
  ParamSchema() = default;
  explicit ParamSchema(std::vector<ParamSpec> specs) : specs_(std::move(specs)) {}
  const std::vector<ParamSpec>& specs() const { return specs_; }
  const ParamSpec* find(const std::string& name) const;
  std::vector<std::string> names() const;
  // Fill defaults for missing parameters; throws InputError naming `what` for unknown keys or
  // invalid values.
  Params complete(const Params& given, const std::string& what) const;
  // "k=v,k=v" in schema order.
  std::string format(const Params& p) const;

 private:
  std::vector<ParamSpec> specs_;
};

std::int64_t get_int(const Params& p, const std::string& key);
double get_real(const Params& p, const std::string& key);
const std::string& get_str(const Params& p, const std::string& key);

// Split "family(k=v,k=v)" into family and raw key/value texts, honouring nested parentheses and
// brackets in values. Throws InputError naming `text` on malformed input.
struct NameParts {
  std::string family;
  std::vector<std::pair<std::string, std::string>> args;
};
NameParts split_name(const std::string& text);

// Parse the raw texts of split_name against a schema (unknown keys, bad values: InputError).
Params parse_args(const NameParts& parts, const ParamSchema& schema, const std::string& what);

}  // namespace tqb
