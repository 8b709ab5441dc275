#pragma once
// FNV-1a, 64 bits (Fowler, Noll, Vo): a fast checksum that detects torn or edited bytes, not an adversary's
// forgery. Incremental: pass the last value as `h` to continue over the next bytes.
#include <cstddef>
#include <cstdint>

namespace tqb {

constexpr std::uint64_t kFnv1aBasis = 1469598103934665603ull;

inline std::uint64_t fnv1a(const void* data, std::size_t n, std::uint64_t h = kFnv1aBasis) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

}  // namespace tqb
