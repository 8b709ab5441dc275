#pragma once
// ggml tensor types that tqbench reads from GGUF files, dequantized to fp32: F32, F16, BF16, and every
// block format of quantizers/ggml_blocks (whose codecs the quantizer families share).
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace tqb {

struct GgmlType {
  std::uint32_t id;
  const char* name;
  std::size_t block;       // weights per block
  std::size_t block_bytes; // bytes per block
  // n = a multiple of `block` weights from `src` (n / block * block_bytes bytes) into dst.
  void (*dequantize)(const std::uint8_t* src, float* dst, std::size_t n);
};

// nullptr when tqbench cannot read the type.
const GgmlType* find_ggml_type(std::uint32_t id);
std::string supported_ggml_types();  // "F32, F16, ..." for error messages

// ggml type ids (GGUF tensor info `type`).
enum : std::uint32_t {
  kGgmlF32 = 0, kGgmlF16 = 1, kGgmlQ4_0 = 2, kGgmlQ4_1 = 3, kGgmlQ5_0 = 6, kGgmlQ5_1 = 7, kGgmlQ8_0 = 8, kGgmlQ2_K = 10, kGgmlQ3_K = 11,
  kGgmlQ4_K = 12, kGgmlQ5_K = 13, kGgmlQ6_K = 14, kGgmlIQ4_NL = 20,
  kGgmlBF16 = 30
};

}  // namespace tqb
