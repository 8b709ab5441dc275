#include "harness/short_names.hpp"

#include "harness/sweep.hpp"

#include <map>
#include <optional>
#include <set>
#include <utility>

namespace tqb {
namespace {

struct Parsed {
  std::string family;
  std::vector<std::pair<std::string, std::string>> params;  // in the name's order
};

// "family(k=v,k=v(x=y,...),...)": the top-level k=v pairs; nullopt for anything else.
std::optional<Parsed> parse(const std::string& name) {
  const auto open = name.find('(');
  if (open == std::string::npos || open == 0 || name.back() != ')') return std::nullopt;
  Parsed p;
  p.family = name.substr(0, open);
  const std::string body = name.substr(open + 1, name.size() - open - 2);
  int depth = 0;
  std::string item;
  auto flush = [&]() -> bool {
    if (item.empty()) return true;
    const auto eq = item.find('=');
    if (eq == std::string::npos || eq == 0) return false;
    p.params.emplace_back(item.substr(0, eq), item.substr(eq + 1));
    item.clear();
    return true;
  };
  for (char c : body) {
    if (c == '(') ++depth;
    if (c == ')') --depth;
    if (depth < 0) return std::nullopt;
    if (c == ',' && depth == 0) {
      if (!flush()) return std::nullopt;
    } else {
      item += c;
    }
  }
  if (depth != 0 || !flush()) return std::nullopt;
  return p;
}

}  // namespace

std::vector<std::string> varying_names(const std::vector<std::string>& names) {
  std::vector<std::optional<Parsed>> parsed;
  std::map<std::string, std::map<std::string, std::set<std::string>>> values;  // family -> key -> values seen
  std::map<std::string, std::map<std::string, int>> present;                   // family -> key -> names having it
  std::map<std::string, int> count;
  for (const auto& n : names) {
    parsed.push_back(parse(n));
    if (!parsed.back()) continue;
    ++count[parsed.back()->family];
    for (const auto& [k, v] : parsed.back()->params) {
      values[parsed.back()->family][k].insert(v);
      ++present[parsed.back()->family][k];
    }
  }
  std::vector<std::string> out;
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (!parsed[i]) {
      out.push_back(names[i]);
      continue;
    }
    const Parsed& p = *parsed[i];
    std::string s;
    for (const auto& [k, v] : p.params) {
      // A key varies when its values differ, or when only some names of the family have it.
      const bool varies = values[p.family][k].size() > 1 || present[p.family][k] != count[p.family];
      if (!varies) continue;
      s += (s.empty() ? "" : ",") + k + "=" + v;
    }
    out.push_back(s.empty() ? p.family : p.family + "(" + s + ")");
  }
  return out;
}

std::vector<std::string> point_labels(const std::vector<SweepPoint>& points, bool quantizer_first) {
  std::vector<std::string> data, quantizers;
  for (const auto& p : points) {
    data.push_back(p.data->name);
    quantizers.push_back(p.quantizer->name());
  }
  data = varying_names(data);
  quantizers = varying_names(quantizers);
  std::vector<std::string> out;
  for (std::size_t i = 0; i < points.size(); ++i) {
    const SweepPoint& p = points[i];
    std::string label = quantizer_first ? quantizers[i] + " | " + data[i] : data[i] + " | " + quantizers[i];
    // What the key adds beyond data and quantizer (timing axes, the repeat), as the key spells it.
    const std::string full = p.data->name + " | " + p.quantizer->name();
    if (p.key.size() > full.size() && p.key.compare(0, full.size(), full) == 0) label += p.key.substr(full.size());
    out.push_back(std::move(label));
  }
  return out;
}

}  // namespace tqb
