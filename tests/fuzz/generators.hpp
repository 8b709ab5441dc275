#pragma once
// Structure-aware generation for the binary and HDF5 inputs (journals, shard files, KLD base files): the fuzzer's
// bytes are read as decisions (libFuzzer's FuzzedDataProvider), each choosing which field of a well-formed file to
// tamper with and which hostile value to put there. Byte-level mutation of such files almost always breaks a
// checksum or the HDF5 superblock first, so the checks behind them would never run (issue 28, item 7).
#include <fuzzer/FuzzedDataProvider.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <limits>
#include <string>
#include <vector>

#include "harness/store.hpp"

namespace tqb::fuzz {

// The sizes and counts a hostile or broken file holds: 0, ±1, around 2^31, 2^32 and 2^63, negative.
inline std::int64_t hostile_int(FuzzedDataProvider& in) {
  static constexpr std::int64_t values[] = {0, 1, -1, 2, 5, 7, 255, 65535, 65536,
                                            (std::int64_t{1} << 31) - 1, std::int64_t{1} << 31, -(std::int64_t{1} << 31) - 1,
                                            (std::int64_t{1} << 32) - 1, std::int64_t{1} << 32, (std::int64_t{1} << 32) + 4,
                                            (std::int64_t{1} << 40) + 4, 1000000000000, std::numeric_limits<std::int64_t>::max(),
                                            std::numeric_limits<std::int64_t>::min(), -5};
  if (in.ConsumeBool()) return values[in.ConsumeIntegralInRange<std::size_t>(0, std::size(values) - 1)];
  return in.ConsumeIntegral<std::int64_t>();
}

inline double hostile_real(FuzzedDataProvider& in) {
  static constexpr double values[] = {0.0, -0.0, 1.0, -1.0, 0.5, 1e-300, 1e308, -1e308, 3.4e38, 6.6e4,
                                      std::numeric_limits<double>::infinity(), -std::numeric_limits<double>::infinity(),
                                      std::numeric_limits<double>::quiet_NaN(), 4294967296.0, 9.3e18};
  if (in.ConsumeBool()) return values[in.ConsumeIntegralInRange<std::size_t>(0, std::size(values) - 1)];
  return in.ConsumeFloatingPoint<double>();
}

inline std::string hostile_text(FuzzedDataProvider& in) {
  static const char* values[] = {"", "0", "-1", "-5", "x", "x/2", "0/2", "1/2", "2/2", "-1/2", "0/0", "0/1000000000000",
                                 "2/4294967296", "18446744073709551616", "9223372036854775807", "1e308", "NaN", "0/1",
                                 "\xff\xfe", "a\x1b[2Jb", "point", "1/"};
  if (in.ConsumeBool()) return values[in.ConsumeIntegralInRange<std::size_t>(0, std::size(values) - 1)];
  return in.ConsumeRandomLengthString(64);
}

// A cell of the given type, or (when `retype`) of any type.
inline Cell hostile_cell(FuzzedDataProvider& in, ColumnType type, bool retype = false) {
  if (retype) type = static_cast<ColumnType>(in.ConsumeIntegralInRange(0, 2));
  switch (type) {
    case ColumnType::integer: return hostile_int(in);
    case ColumnType::real: return hostile_real(in);
    default: return hostile_text(in);
  }
}

// Overwrites `width` bytes (1, 4 or 8) at a chosen offset of `bytes` with a hostile integer, or flips one byte.
inline void tamper_bytes(FuzzedDataProvider& in, std::string& bytes) {
  if (bytes.empty()) return;
  const std::size_t at = in.ConsumeIntegralInRange<std::size_t>(0, bytes.size() - 1);
  switch (in.ConsumeIntegralInRange(0, 2)) {
    case 0:
      bytes[at] = static_cast<char>(bytes[at] ^ (1 + in.ConsumeIntegral<std::uint8_t>() % 255));
      break;
    default: {
      const std::int64_t v = hostile_int(in);
      const std::size_t width = std::min<std::size_t>(in.ConsumeBool() ? 4 : 8, bytes.size() - at);
      std::memcpy(bytes.data() + at, &v, width);  // little-endian: the low bytes
    }
  }
}

}  // namespace tqb::fuzz
