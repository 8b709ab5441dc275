#include "quantizers/bitpack.hpp"

#include <algorithm>
#include <cstring>

namespace tqb {

void pack_codes_parallel(const std::uint8_t* codes, std::size_t n, int bits, std::uint8_t* out) {
  constexpr std::size_t kChunk = std::size_t{1} << 16;  // codes per task, a multiple of 8
  const std::size_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static)
  for (std::ptrdiff_t c = 0; c < static_cast<std::ptrdiff_t>(chunks); ++c) {
    const std::size_t first = c * kChunk, len = std::min(kChunk, n - first);
    pack_codes(codes + first, len, bits, out + first * bits / 8);
  }
}

void unpack_codes_range(const std::uint8_t* packed, std::size_t first, std::size_t n, int bits,
                        std::uint8_t* codes) {
  if (bits == 8) {
    std::memcpy(codes, packed + first, n);
    return;
  }
  const std::uint32_t mask = (1u << bits) - 1u;
  std::size_t bit = first * static_cast<std::size_t>(bits);
  std::size_t byte = bit / 8;
  int skip = static_cast<int>(bit % 8);
  const std::size_t end_byte = packed_size(first + n, bits);
  std::uint64_t acc = 0;
  int filled = 0;
  if (byte < end_byte) {
    acc = packed[byte++] >> skip;
    filled = 8 - skip;
  }
  for (std::size_t i = 0; i < n; ++i) {
    while (filled < bits) {
      acc |= static_cast<std::uint64_t>(packed[byte++]) << filled;
      filled += 8;
    }
    codes[i] = static_cast<std::uint8_t>(acc & mask);
    acc >>= bits;
    filled -= bits;
  }
}

void unpack_codes(const std::uint8_t* packed, std::size_t n, int bits, std::uint8_t* codes) {
  unpack_codes_range(packed, 0, n, bits, codes);
}

}  // namespace tqb
