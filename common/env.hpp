#pragma once
// Tuning and diagnostic switches read from the environment (TQB_LUT_MMA_*, TQB_FOLD_SECONDS): a value that is not
// what the variable takes is an InputError naming the variable, the value and what would be valid, never a silent
// atoi/atof 0. Header-only and free of Eigen and fmt, so that nvcc's translation units include it too.
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>

#include "common/error.hpp"

namespace tqb {

// The whole-number value of `name` in [lo, hi], or nothing when it is unset or empty.
inline std::optional<std::uint64_t> env_count(const char* name, std::uint64_t lo, std::uint64_t hi) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return std::nullopt;
  char* end = nullptr;
  errno = 0;
  const unsigned long long x = std::strtoull(v, &end, 10);
  if (*v == '-' || end == v || *end != '\0' || errno == ERANGE || x < lo || x > hi)
    throw InputError("environment variable " + std::string(name) + "='" + v + "': expected a whole number from " + std::to_string(lo) + " to " +
                     std::to_string(hi));
  return static_cast<std::uint64_t>(x);
}

// 0 or 1 as false or true, or nothing when unset or empty.
inline std::optional<bool> env_switch(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return std::nullopt;
  const std::string s(v);
  if (s == "0" || s == "1") return s == "1";
  throw InputError("environment variable " + std::string(name) + "='" + s + "': expected 0 (off) or 1 (on)");
}

// A finite number of seconds ≥ 0, or nothing when unset or empty.
inline std::optional<double> env_seconds(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return std::nullopt;
  char* end = nullptr;
  const double x = std::strtod(v, &end);
  if (end == v || *end != '\0' || !std::isfinite(x) || x < 0)
    throw InputError("environment variable " + std::string(name) + "='" + v + "': expected a number of seconds, 0 or more");
  return x;
}

}  // namespace tqb
