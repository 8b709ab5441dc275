#pragma once
// A user's regular expression over tensor names (a model spec's include/exclude), through PCRE2 with
// bounded resources: std::regex compiles and matches recursively, and a deeply nested pattern crashed
// tqbench (issue 11). PCRE2 refuses nesting past a limit at compile time and stops a match past its
// depth and match limits, reporting either as an error.
#include <string>

namespace tqb {

class NamePattern {
 public:
  // Throws InputError naming the pattern, PCRE2's message and the offset when it does not compile.
  explicit NamePattern(const std::string& pattern);
  ~NamePattern();
  NamePattern(const NamePattern&) = delete;
  NamePattern& operator=(const NamePattern&) = delete;
  // True when the whole name matches. Throws InputError when the match exceeds the resource limits.
  bool full_match(const std::string& name) const;

 private:
  std::string pattern_;
  void* code_ = nullptr;     // pcre2_code*
  void* context_ = nullptr;  // pcre2_match_context*
};

}  // namespace tqb
