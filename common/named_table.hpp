#pragma once
// The registries (quantizer families, data sources, metrics, kernels) are tables of entries with a `name`;
// these are their look-ups, written once.
#include <string>
#include <string_view>
#include <vector>

namespace tqb {

// The entry called `name`, or nullptr.
template <class Entry>
const Entry* find_named(const std::vector<Entry>& table, std::string_view name) {
  for (const auto& e : table)
    if (e.name == name) return &e;
  return nullptr;
}

// Every entry's name, in table order.
template <class Entry>
std::vector<std::string> names_of(const std::vector<Entry>& table) {
  std::vector<std::string> out;
  out.reserve(table.size());
  for (const auto& e : table) out.push_back(e.name);
  return out;
}

}  // namespace tqb
