#pragma once
// Structure-aware mutation for JSON inputs (config.json, tokenizer.json): a target that includes this
// header gets a LLVMFuzzerCustomMutator that parses the input, changes one node the way a hostile or
// broken file would (a size set to 0, -1, 2^31, 2^63 or 1e308; a number turned into a string, a list or
// null; a key removed; a subtree copied elsewhere; a value wrapped in deep lists), and writes it back.
// Byte-level mutation alone almost never keeps JSON valid, so it would test only the JSON parser.
// Inputs that do not parse fall back to libFuzzer's own mutator.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

extern "C" size_t LLVMFuzzerMutate(uint8_t* data, size_t size, size_t max_size);

namespace tqb::fuzz {

// Every node of a document, depth-first (pointers stay valid until the document changes).
inline void collect_nodes(nlohmann::json& j, std::vector<nlohmann::json*>& out) {
  out.push_back(&j);
  if (j.is_structured())
    for (auto& child : j) collect_nodes(child, out);
}

inline nlohmann::json extreme_value(std::mt19937_64& rng) {
  static const std::vector<nlohmann::json> values{
      0, -1, 1, 2, 3, 7, 255, 65536, 2147483647, 2147483648LL, -2147483649LL, 4294967296LL, 9223372036854775807LL,
      18446744073709551615ULL, -9223372036854775807LL - 1, 0.5, -0.0, 1e-300, 1e308, -1e308, 3.4e38, 6.6e4,
      "", "0", "-1", "NaN", "\u00ff\u0000x", nullptr, true, false, nlohmann::json::array(), nlohmann::json::object()};
  return values[rng() % values.size()];
}

// One structural change to `doc`.
inline void mutate_json(nlohmann::json& doc, std::mt19937_64& rng) {
  std::vector<nlohmann::json*> nodes;
  collect_nodes(doc, nodes);
  nlohmann::json& node = *nodes[rng() % nodes.size()];
  switch (rng() % 7) {
    case 0:  // an extreme or mistyped value
    case 1:
      node = extreme_value(rng);
      break;
    case 2:  // a number nudged by ±1 or doubled/halved (sizes that nearly agree)
      if (node.is_number_integer()) {
        const auto v = static_cast<std::uint64_t>(node.get<std::int64_t>());  // wrapping arithmetic: 2^63 - 1 + 1 is -2^63 here
        const int op = static_cast<int>(rng() % 4);
        node = static_cast<std::int64_t>(op == 0 ? v + 1 : op == 1 ? v - 1 : op == 2 ? v * 2 : v / 2);
      } else {
        node = extreme_value(rng);
      }
      break;
    case 3:  // a key or element removed
      if (node.is_object() && !node.empty()) {
        auto it = node.begin();
        std::advance(it, static_cast<long>(rng() % node.size()));
        node.erase(it.key());
      } else if (node.is_array() && !node.empty()) {
        node.erase(node.begin() + static_cast<long>(rng() % node.size()));
      }
      break;
    case 4: {  // a subtree copied over another node
      const nlohmann::json copy = *nodes[rng() % nodes.size()];
      node = copy;
      break;
    }
    case 5: {  // deep nesting
      const int depth = 1 + static_cast<int>(rng() % 200);
      for (int i = 0; i < depth; ++i) node = nlohmann::json::array({node});
      break;
    }
    case 6:  // a list or object grown by copying one of its entries
      if (node.is_array() && !node.empty()) {
        const nlohmann::json e = node[rng() % node.size()];
        node.push_back(e);
      } else if (node.is_object()) {
        node["fuzz_" + std::to_string(rng() % 1000)] = extreme_value(rng);
      }
      break;
  }
}

}  // namespace tqb::fuzz

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size, unsigned int seed) {
  std::mt19937_64 rng(seed);
  nlohmann::json doc = nlohmann::json::parse(data, data + size, nullptr, false);
  if (doc.is_discarded() || rng() % 8 == 0) return LLVMFuzzerMutate(data, size, max_size);
  const int changes = 1 + static_cast<int>(rng() % 3);
  for (int i = 0; i < changes; ++i) tqb::fuzz::mutate_json(doc, rng);
  const std::string out = doc.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (out.size() > max_size) return LLVMFuzzerMutate(data, size, max_size);
  std::memcpy(data, out.data(), out.size());
  return out.size();
}
