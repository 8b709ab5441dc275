#pragma once
// The packed result of quantizing one weight matrix: everything a deployment must store, plus the
// name and seed that make the rest (derived codebooks, rotations) recomputable.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/float_format.hpp"

namespace tqb {

struct QuantizedMatrix {
  std::size_t rows = 0;  // output channels
  std::size_t cols = 0;  // input channels
  std::string format;    // canonical name of the quantizer that made it
  std::uint64_t seed = 0;  // seed of any randomness (rotations); part of the format, not counted

  int code_bits = 0;                // bits per code, 1..8
  std::vector<std::uint8_t> codes;  // rows*cols codes, one bit stream (bitpack.hpp)

  FloatFormat side_format = FloatFormat::fp32;  // format of scales and zeros
  std::vector<std::uint8_t> scales;  // per-group scales or norms, [rows][groups], side_format
  std::vector<std::uint8_t> zeros;   // per-group zero points or minimums, [rows][groups], side_format
  std::vector<float> codebook;       // a trained (data-dependent) codebook; derived codebooks are not stored

  std::vector<QuantizedMatrix> passes;  // composite formats (residual stacks): one entry per pass

  // Bytes a deployment stores: codes + scales + zeros + codebook, summed over passes.
  std::size_t storage_bytes() const;
  // 8 * storage_bytes() / (rows * cols).
  double bits_per_weight() const;
};

}  // namespace tqb
