#include "common/bounded_json.hpp"

#include <fmt/format.h>

#include "common/error.hpp"

namespace tqb {
namespace {

struct TooDeep {};

template <class Input>
nlohmann::json parse_bounded(Input&& input, const std::string& where, int max_depth) {
  // The callback sees every event with its depth; throwing out of it stops the parser before it goes deeper.
  const nlohmann::json::parser_callback_t limit = [max_depth](int depth, nlohmann::json::parse_event_t, nlohmann::json&) {
    if (depth > max_depth) throw TooDeep{};
    return true;
  };
  try {
    return nlohmann::json::parse(std::forward<Input>(input), limit);
  } catch (const TooDeep&) {
    throw InputError(fmt::format("{}: error: JSON nested deeper than {} levels (no real file is)", where, max_depth));
  } catch (const nlohmann::json::exception& e) {
    throw InputError(fmt::format("{}: error: not valid JSON: {}", where, e.what()));
  }
}

}  // namespace

nlohmann::json parse_json(std::string_view text, const std::string& where, int max_depth) {
  return parse_bounded(text, where, max_depth);
}

nlohmann::json parse_json(std::istream& in, const std::string& where, int max_depth) { return parse_bounded(in, where, max_depth); }

}  // namespace tqb
