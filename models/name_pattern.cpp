#include "models/name_pattern.hpp"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <fmt/format.h>
#include <pcre2.h>

#include "common/error.hpp"

namespace tqb {

namespace {
constexpr std::uint32_t kNestLimit = 50;        // parentheses (PCRE2's default is 250)
constexpr std::uint32_t kMatchLimit = 1000000;  // backtracking steps per match
constexpr std::uint32_t kDepthLimit = 1000;     // backtracking depth per match

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  pcre2_get_error_message(code, buf, sizeof buf);
  return reinterpret_cast<const char*>(buf);
}
}  // namespace

NamePattern::NamePattern(const std::string& pattern) : pattern_(pattern) {
  pcre2_compile_context* cc = pcre2_compile_context_create(nullptr);
  pcre2_set_parens_nest_limit(cc, kNestLimit);
  int err = 0;
  PCRE2_SIZE at = 0;
  // Anchored at both ends: the whole name must match, as std::regex_match did.
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.c_str()), pattern.size(), PCRE2_UTF | PCRE2_ANCHORED | PCRE2_ENDANCHORED,
                                   &err, &at, cc);
  pcre2_compile_context_free(cc);
  if (code == nullptr)
    throw InputError(fmt::format("'{}' is not a valid regular expression: {} (at offset {})", pattern.size() > 200 ? pattern.substr(0, 200) + "..." : pattern,
                                 pcre2_message(err), at));
  pcre2_match_context* mc = pcre2_match_context_create(nullptr);
  pcre2_set_match_limit(mc, kMatchLimit);
  pcre2_set_depth_limit(mc, kDepthLimit);
  code_ = code;
  context_ = mc;
}

NamePattern::~NamePattern() {
  pcre2_match_context_free(static_cast<pcre2_match_context*>(context_));
  pcre2_code_free(static_cast<pcre2_code*>(code_));
}

bool NamePattern::full_match(const std::string& name) const {
  pcre2_code* code = static_cast<pcre2_code*>(code_);
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(code, nullptr);
  const int rc = pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(name.data()), name.size(), 0, 0, md, static_cast<pcre2_match_context*>(context_));
  pcre2_match_data_free(md);
  if (rc >= 0) return true;
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  throw InputError(fmt::format("regular expression '{}' on '{}': {}", pattern_.size() > 200 ? pattern_.substr(0, 200) + "..." : pattern_, name,
                               pcre2_message(rc)));
}

}  // namespace tqb
