#include "harness/row_query.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <optional>

#include "common/error.hpp"
#include "common/printable.hpp"

namespace tqb {
namespace {

enum class Op { eq, ne, lt, le, gt, ge, contains };

struct Condition {
  int column = -1;
  Op op = Op::eq;
  std::string text;
  double number = 0;
};

std::string column_names(const ResultTable& t) {
  std::vector<std::string> names;
  for (const auto& c : t.columns) names.push_back(c.name);
  return fmt::format("{}", fmt::join(names, ", "));
}

int require_column(const ResultTable& t, const std::string& name, const std::string& what) {
  const int j = t.column_index(name);
  if (j < 0) throw InputError(fmt::format("{}: '{}' is not a column; columns: {}", what, printable(name), column_names(t)));
  return j;
}

Condition parse(const ResultTable& t, const std::string& s) {
  static const std::vector<std::pair<const char*, Op>> ops{{"!=", Op::ne}, {"<=", Op::le}, {">=", Op::ge}, {"=", Op::eq},
                                                           {"<", Op::lt},  {">", Op::gt},  {"~", Op::contains}};
  const std::string what = fmt::format("--where '{}'", printable(s));
  std::size_t at = std::string::npos, len = 0;
  Op op = Op::eq;
  for (const auto& [sym, o] : ops)
    if (const auto p = s.find(sym); p != std::string::npos && (p < at || (p == at && std::string(sym).size() > len))) {
      at = p;
      len = std::string(sym).size();
      op = o;
    }
  if (at == std::string::npos || at == 0)
    throw InputError(fmt::format("{}: expected COLUMN OP VALUE with OP one of = != < <= > >= ~ (contains)", what));
  auto trim = [](std::string x) {
    const auto b = x.find_first_not_of(' '), e = x.find_last_not_of(' ');
    return b == std::string::npos ? std::string() : x.substr(b, e - b + 1);
  };
  Condition c;
  c.column = require_column(t, trim(s.substr(0, at)), what);
  c.op = op;
  c.text = trim(s.substr(at + len));
  const bool numeric = t.columns[static_cast<std::size_t>(c.column)].type != ColumnType::text;
  if (numeric && op != Op::contains) {
    char* end = nullptr;
    c.number = std::strtod(c.text.c_str(), &end);
    if (c.text.empty() || *end != '\0') throw InputError(fmt::format("{}: '{}' is a numeric column; expected a number", what, t.columns[static_cast<std::size_t>(c.column)].name));
  } else if (!numeric && op != Op::eq && op != Op::ne && op != Op::contains) {
    throw InputError(fmt::format("{}: '{}' is a text column: = != ~ compare text", what, t.columns[static_cast<std::size_t>(c.column)].name));
  }
  return c;
}

// The cell as a number, or nullopt when missing (NaN, -1 in an integer column) or text.
std::optional<double> number_of(const Cell& c) {
  if (const auto* d = std::get_if<double>(&c)) return std::isnan(*d) ? std::nullopt : std::optional<double>(*d);
  if (const auto* i = std::get_if<std::int64_t>(&c)) return *i == -1 ? std::nullopt : std::optional<double>(static_cast<double>(*i));
  return std::nullopt;
}

bool matches(const Condition& c, const Cell& cell) {
  if (c.op == Op::contains) return cell_text(cell, true).find(c.text) != std::string::npos;
  if (const auto* s = std::get_if<std::string>(&cell)) {
    if (c.op == Op::eq) return *s == c.text;
    return s->empty() || *s != c.text;  // ne
  }
  const auto v = number_of(cell);
  if (!v) return c.op == Op::ne;
  switch (c.op) {
    case Op::eq: return *v == c.number;
    case Op::ne: return *v != c.number;
    case Op::lt: return *v < c.number;
    case Op::le: return *v <= c.number;
    case Op::gt: return *v > c.number;
    case Op::ge: return *v >= c.number;
    case Op::contains: break;
  }
  return false;
}

}  // namespace

ResultTable where_rows(const ResultTable& t, const std::vector<std::string>& conditions) {
  std::vector<Condition> parsed;
  for (const auto& s : conditions) parsed.push_back(parse(t, s));
  ResultTable out;
  out.attributes = t.attributes;
  out.columns = t.columns;
  for (const auto& r : t.rows)
    if (std::all_of(parsed.begin(), parsed.end(), [&](const Condition& c) { return matches(c, r[static_cast<std::size_t>(c.column)]); }))
      out.rows.push_back(r);
  return out;
}

ResultTable sort_rows(const ResultTable& t, const std::string& column) {
  const bool descending = !column.empty() && column.front() == '-';
  const std::string name = descending ? column.substr(1) : column;
  const int j = require_column(t, name, "--sort");
  ResultTable out = t;
  std::stable_sort(out.rows.begin(), out.rows.end(), [&](const auto& a, const auto& b) {
    const auto x = number_of(a[j]), y = number_of(b[j]);
    if (std::holds_alternative<std::string>(a[j])) {
      const auto& s = std::get<std::string>(a[j]);
      const auto& u = std::get<std::string>(b[j]);
      return descending ? s > u : s < u;
    }
    if (!x || !y) return x.has_value() && !y.has_value();  // missing last
    return descending ? *x > *y : *x < *y;
  });
  return out;
}

}  // namespace tqb
