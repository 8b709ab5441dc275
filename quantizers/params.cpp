#include "quantizers/params.hpp"

#include <cstdint>

#include <fmt/format.h>

#include <charconv>
#include <cmath>

#include "common/error.hpp"
#include "common/suggest.hpp"

namespace tqb {

static std::optional<std::int64_t> parse_int(const std::string& t) {
  std::int64_t v = 0;
  const char* b = t.data();
  const char* e = t.data() + t.size();
  if (b != e && *b == '+') ++b;
  auto [p, ec] = std::from_chars(b, e, v);
  if (ec != std::errc() || p != e || b == e) return std::nullopt;
  return v;
}

static std::optional<double> parse_real(const std::string& t) {
  double v = 0;
  auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
  if (ec != std::errc() || p != t.data() + t.size() || t.empty() || !std::isfinite(v)) return std::nullopt;
  return v;
}

std::optional<ParamValue> ParamSpec::parse(const std::string& text) const {
  switch (kind) {
    case Kind::integer: {
      for (const auto& [alias, value] : aliases)
        if (text == alias) return ParamValue{value};
      if (auto v = parse_int(text)) {
        // An alias's value is reachable by its name only: 'group: 0' is outside the documented range even
        // though 'row' is stored as 0.
        for (const auto& a : aliases)
          if (*v == a.second && (*v < min || *v > max)) return std::nullopt;
        return ParamValue{*v};
      }
      return std::nullopt;
    }
    case Kind::real:
      if (auto v = parse_real(text)) return ParamValue{*v};
      return std::nullopt;
    case Kind::choice:
    case Kind::text:
      if (text.empty()) return std::nullopt;
      return ParamValue{text};
  }
  return std::nullopt;
}

namespace {
// An integer bound held as a double: bounds at or past ±2^63 (INT64_MAX rounds up to 2^63 as a double,
// and converting that back to int64 is undefined) print as the int64 limits.
std::int64_t int_bound(double v) {
  if (v >= 9223372036854775807.0) return INT64_MAX;
  if (v <= -9223372036854775808.0) return INT64_MIN;
  return static_cast<std::int64_t>(v);
}
}  // namespace

std::string ParamSpec::valid_text() const {
  switch (kind) {
    case Kind::integer: {
      std::string s = power_of_two ? fmt::format("a power of two from {} to {}", int_bound(min), int_bound(max))
                                   : fmt::format("an integer from {} to {}", int_bound(min), int_bound(max));
      for (const auto& a : aliases) s += fmt::format(" or '{}'", a.first);
      return s;
    }
    case Kind::real: return fmt::format("a number from {} to {}", min, max);
    case Kind::choice: return "one of " + join(choices);
    case Kind::text: return "a non-empty text";
  }
  return "";
}

std::string ParamSpec::check(const ParamValue& v) const {
  switch (kind) {
    case Kind::integer: {
      const auto* i = std::get_if<std::int64_t>(&v);
      if (!i) return fmt::format("expected {}", valid_text());
      for (const auto& a : aliases)
        if (*i == a.second) return "";
      if (*i < min || *i > max) return fmt::format("{} is out of range; expected {}", *i, valid_text());
      if (power_of_two && (*i & (*i - 1)) != 0)
        return fmt::format("{} is not a power of two; expected {}", *i, valid_text());
      return "";
    }
    case Kind::real: {
      double d;
      if (const auto* i = std::get_if<std::int64_t>(&v)) d = static_cast<double>(*i);
      else if (const auto* r = std::get_if<double>(&v)) d = *r;
      else return fmt::format("expected {}", valid_text());
      if (d < min || d > max) return fmt::format("{} is out of range; expected {}", d, valid_text());
      return "";
    }
    case Kind::choice: {
      const auto* s = std::get_if<std::string>(&v);
      if (!s) return fmt::format("expected {}", valid_text());
      for (const auto& c : choices)
        if (*s == c) return "";
      return fmt::format("'{}' is not valid{}; expected {}", *s, did_you_mean(*s, choices), valid_text());
    }
    case Kind::text: {
      const auto* s = std::get_if<std::string>(&v);
      if (!s || s->empty()) return fmt::format("expected {}", valid_text());
      return "";
    }
  }
  return "";
}

std::string ParamSpec::format(const ParamValue& v) const {
  if (const auto* i = std::get_if<std::int64_t>(&v)) {
    for (const auto& a : aliases)
      if (*i == a.second) return a.first;
    if (kind == Kind::real) return fmt::format("{}", static_cast<double>(*i));
    return fmt::format("{}", *i);
  }
  if (const auto* r = std::get_if<double>(&v)) return fmt::format("{}", *r);
  return std::get<std::string>(v);
}

const ParamSpec* ParamSchema::find(const std::string& name) const {
  for (const auto& s : specs_)
    if (s.name == name) return &s;
  return nullptr;
}

std::vector<std::string> ParamSchema::names() const {
  std::vector<std::string> out;
  for (const auto& s : specs_) out.push_back(s.name);
  return out;
}

namespace {
// One message for a parameter the schema lacks, wherever parameters arrive (a name's arguments, a spec's
// keys); a family without parameters (none, q4_0, ...) says so instead of listing nothing.
InputError unknown_parameter(const std::string& what, const std::string& key, const ParamSchema& schema) {
  if (schema.names().empty())
    return InputError(fmt::format("{}: unknown parameter '{}'; this quantizer takes no parameters", what, key));
  return InputError(fmt::format("{}: unknown parameter '{}'{}; valid parameters: {}", what, key,
                                did_you_mean(key, schema.names()), join(schema.names())));
}
}  // namespace

Params ParamSchema::complete(const Params& given, const std::string& what) const {
  Params out;
  for (const auto& [k, v] : given) {
    const ParamSpec* s = find(k);
    if (!s)
      throw unknown_parameter(what, k, *this);
    ParamValue value = v;
    // Reals accept integers; store them as reals so that names and equality are canonical.
    if (s->kind == ParamSpec::Kind::real)
      if (const auto* i = std::get_if<std::int64_t>(&v)) value = static_cast<double>(*i);
    if (auto err = s->check(value); !err.empty())
      throw InputError(fmt::format("{}: parameter '{}': {}", what, k, err));
    out[k] = value;
  }
  for (const auto& s : specs_)
    if (!out.count(s.name)) out[s.name] = s.default_value;
  return out;
}

std::string ParamSchema::format(const Params& p) const {
  std::string out;
  for (const auto& s : specs_) {
    auto it = p.find(s.name);
    if (it == p.end()) continue;
    if (s.named_when_set && it->second == s.default_value) continue;
    if (!out.empty()) out += ',';
    out += s.name + "=" + s.format(it->second);
  }
  return out;
}

std::int64_t get_int(const Params& p, const std::string& key) { return std::get<std::int64_t>(p.at(key)); }
double get_real(const Params& p, const std::string& key) {
  const auto& v = p.at(key);
  if (const auto* i = std::get_if<std::int64_t>(&v)) return static_cast<double>(*i);
  return std::get<double>(v);
}
const std::string& get_str(const Params& p, const std::string& key) { return std::get<std::string>(p.at(key)); }

static std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(" \t");
  return s.substr(b, e - b + 1);
}

NameParts split_name(const std::string& raw) {
  const std::string text = trim(raw);
  NameParts parts;
  const auto open = text.find('(');
  if (open == std::string::npos) {
    parts.family = text;
  } else {
    if (text.back() != ')')
      throw InputError(fmt::format("quantizer name '{}': missing ')' at the end; expected family(key=value,...)", raw));
    parts.family = trim(text.substr(0, open));
    const std::string body = text.substr(open + 1, text.size() - open - 2);
    int depth = 0;
    std::string cur;
    auto flush = [&](std::size_t pos) {
      const std::string item = trim(cur);
      cur.clear();
      if (item.empty()) {
        if (body.find_first_not_of(" \t") == std::string::npos) return;  // "family()"
        throw InputError(fmt::format("quantizer name '{}': empty argument near character {}", raw, open + 1 + pos));
      }
      const auto eq = item.find('=');
      // No key: a positional value (key ""), valid only first and for a schema whose first parameter takes
      // a name, as in `rotated(rtn(bits=4))` (parse_args).
      if (const auto paren = item.find('('); eq == std::string::npos || (paren != std::string::npos && paren < eq)) {
        parts.args.emplace_back("", item);
        return;
      }
      parts.args.emplace_back(trim(item.substr(0, eq)), trim(item.substr(eq + 1)));
    };
    for (std::size_t i = 0; i < body.size(); ++i) {
      const char c = body[i];
      if (c == '(' || c == '[') ++depth;
      if (c == ')' || c == ']') {
        if (--depth < 0) throw InputError(fmt::format("quantizer name '{}': unbalanced '{}'", raw, c));
      }
      if (c == ',' && depth == 0) flush(i);
      else cur += c;
    }
    if (depth != 0) throw InputError(fmt::format("quantizer name '{}': unbalanced parentheses", raw));
    flush(body.size());
  }
  if (parts.family.empty()) throw InputError(fmt::format("quantizer name '{}': missing family name", raw));
  return parts;
}

Params parse_args(const NameParts& parts, const ParamSchema& schema, const std::string& what) {
  Params given;
  for (std::size_t i = 0; i < parts.args.size(); ++i) {
    const auto& v = parts.args[i].second;
    std::string k = parts.args[i].first;
    if (k.empty()) {  // positional: only first, and only where the first parameter takes a name
      const bool named_first = !schema.specs().empty() && schema.specs()[0].kind == ParamSpec::Kind::text;
      if (i != 0 || !named_first)
        throw InputError(fmt::format("{}: argument '{}' has no '='; expected key=value{}", what, v,
                                     named_first ? " (only the first argument may be given without its key, for '" +
                                                       schema.specs()[0].name + "')" : ""));
      k = schema.specs()[0].name;
    }
    const ParamSpec* s = schema.find(k);
    if (!s)
      throw unknown_parameter(what, k, schema);
    if (given.count(k)) throw InputError(fmt::format("{}: parameter '{}' given twice", what, k));
    auto value = s->parse(v);
    if (!value) throw InputError(fmt::format("{}: parameter '{}': '{}' is not valid; expected {}", what, k, v, s->valid_text()));
    given[k] = *value;
  }
  return schema.complete(given, what);
}

}  // namespace tqb
