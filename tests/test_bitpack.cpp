#include <doctest/doctest.h>

#include <vector>

#include "common/rng.hpp"
#include "quantizers/bitpack.hpp"

using namespace tqb;

TEST_CASE("bit packing round-trips 1..8 bits at odd lengths") {
  Rng rng(7);
  for (int bits = 1; bits <= 8; ++bits) {
    for (std::size_t n : {0u, 1u, 2u, 3u, 7u, 8u, 9u, 13u, 31u, 33u, 127u, 1001u}) {
      CAPTURE(bits);
      CAPTURE(n);
      std::vector<std::uint8_t> codes(n);
      for (auto& c : codes) c = static_cast<std::uint8_t>(rng.next_u64() & ((1u << bits) - 1));
      // One guard byte past the end catches writes beyond packed_size.
      std::vector<std::uint8_t> packed(packed_size(n, bits) + 1, 0xA5);
      pack_codes(codes.data(), n, bits, packed.data());
      CHECK(packed.back() == 0xA5);
      CHECK(packed.size() - 1 == (n * bits + 7) / 8);
      if (n * bits % 8 != 0 && bits < 8) {
        // Padding bits of the last byte are zero.
        const int used = static_cast<int>(n * bits % 8);
        CHECK((packed[packed.size() - 2] >> used) == 0);
      }
      std::vector<std::uint8_t> back(n, 0xFF);
      unpack_codes(packed.data(), n, bits, back.data());
      CHECK(back == codes);
      // Any sub-range unpacks to the same codes.
      if (n > 2) {
        const std::size_t first = n / 3, len = n - first - 1;
        std::vector<std::uint8_t> part(len);
        unpack_codes_range(packed.data(), first, len, bits, part.data());
        CHECK(std::equal(part.begin(), part.end(), codes.begin() + first));
      }
    }
  }
}

TEST_CASE("a 3-bit code takes 3 bits") {
  const std::vector<std::uint8_t> codes{1, 2, 3, 4, 5, 6, 7, 0};
  std::vector<std::uint8_t> packed(3);
  pack_codes(codes.data(), 8, 3, packed.data());
  // LSB first: 001 010 011 100 101 110 111 000 -> bits 0..23
  const std::uint32_t stream = packed[0] | (packed[1] << 8) | (packed[2] << 16);
  for (int i = 0; i < 8; ++i) CHECK(((stream >> (3 * i)) & 7u) == codes[i]);
}
