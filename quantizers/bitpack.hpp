#pragma once
// Bit packing of b-bit codes (1 <= b <= 8) into a little-endian bit stream.
//
// Layout: code i occupies stream bits [i*b, (i+1)*b), least significant bit first; stream bit k is
// bit (k % 8) of byte k / 8. A matrix is one stream in row-major order, so n codes take exactly
// ceil(n*b / 8) bytes: a 3-bit code takes 3 bits, and only the last byte can hold padding (zero bits).
// When cols*b is a multiple of 8 every row starts on a byte boundary, which kernels rely on.
#include <cstddef>
#include <cstdint>

namespace tqb {

// Bytes needed for n codes of `bits` bits.
constexpr std::size_t packed_size(std::size_t n, int bits) {
  return (n * static_cast<std::size_t>(bits) + 7) / 8;
}
static_assert(packed_size(8, 3) == 3 && packed_size(1, 3) == 1 && packed_size(9, 3) == 4);
static_assert(packed_size(128, 4) == 64 && packed_size(7, 1) == 1 && packed_size(5, 8) == 5);

// codes: n values, each < 2^bits. out: packed_size(n, bits) bytes (fully written, padding zeroed).
// Inline so that SIMD-multiversioned loops (common/simd.hpp) compile it into each clone.
inline void pack_codes(const std::uint8_t* codes, std::size_t n, int bits, std::uint8_t* out) {
  if (bits == 8) {
    for (std::size_t i = 0; i < n; ++i) out[i] = codes[i];
    return;
  }
  std::size_t i = 0, o = 0;
  if (bits == 4) {  // the common case: two codes per byte
    for (; i + 1 < n; i += 2) out[o++] = static_cast<std::uint8_t>((codes[i] & 15) | (codes[i + 1] << 4));
    if (i < n) out[o++] = codes[i] & 15;
    return;
  }
  const std::uint32_t mask = (1u << bits) - 1u;
  std::uint64_t acc = 0;
  int filled = 0;
  for (; i < n; ++i) {
    acc |= static_cast<std::uint64_t>(codes[i] & mask) << filled;
    filled += bits;
    while (filled >= 8) {
      out[o++] = static_cast<std::uint8_t>(acc);
      acc >>= 8;
      filled -= 8;
    }
  }
  if (filled > 0) out[o++] = static_cast<std::uint8_t>(acc);
}

// As pack_codes, split over threads in chunks of a multiple of 8 codes (8 codes of b bits are b
// whole bytes, so every chunk starts on a byte boundary).
void pack_codes_parallel(const std::uint8_t* codes, std::size_t n, int bits, std::uint8_t* out);

// packed: packed_size(n, bits) bytes. codes: n values written.
void unpack_codes(const std::uint8_t* packed, std::size_t n, int bits, std::uint8_t* codes);

// Unpack codes [first, first + n) of a stream (for row-wise access). codes: n values written.
void unpack_codes_range(const std::uint8_t* packed, std::size_t first, std::size_t n, int bits,
                        std::uint8_t* codes);

}  // namespace tqb
