#pragma once
// The one JSON reader for untrusted input (issue 28): nlohmann's parser with a depth limit enforced while parsing,
// so a document nested 10^6 deep is refused before any tree is built (the tree's destructor and the readers that
// walk it recurse). Real documents are shallow: config.json, tokenizer.json and safetensors headers nest under 10
// levels, a quantized export's records under 8 plus its residual passes.
#include <istream>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace tqb {

inline constexpr int kMaxJsonDepth = 64;

// Throws InputError "<where>: error: ..." for text that is not JSON or nests deeper than max_depth.
nlohmann::json parse_json(std::string_view text, const std::string& where, int max_depth = kMaxJsonDepth);
nlohmann::json parse_json(std::istream& in, const std::string& where, int max_depth = kMaxJsonDepth);

}  // namespace tqb
