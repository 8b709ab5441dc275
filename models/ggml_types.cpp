#include "models/ggml_types.hpp"

#include <Eigen/Core>
#include <cstring>

#include "quantizers/ggml_blocks.hpp"

#include "common/float_format.hpp"

namespace tqb {
namespace {

// Every quantized type goes through its codec in quantizers/ggml_blocks (shared with the quantizer families).

void deq_f32(const std::uint8_t* src, float* dst, std::size_t n) { std::memcpy(dst, src, n * 4); }
void deq_f16(const std::uint8_t* src, float* dst, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    std::uint16_t h;
    std::memcpy(&h, src + 2 * i, 2);
    dst[i] = fp16_value(h);
  }
}
void deq_bf16(const std::uint8_t* src, float* dst, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    std::uint16_t h;
    std::memcpy(&h, src + 2 * i, 2);
    dst[i] = bf16_value(h);
  }
}

// F32, F16 and BF16, then every block format of the traits table in quantizers/ggml_blocks.
const std::vector<GgmlType>& table() {
  static const std::vector<GgmlType> types = [] {
    std::vector<GgmlType> t{
        {kGgmlF32, "F32", 1, 4, deq_f32},
        {kGgmlF16, "F16", 1, 2, deq_f16},
        {kGgmlBF16, "BF16", 1, 2, deq_bf16},
    };
    for (const auto& f : ggml_block_formats()) t.push_back({f.ggml_type, f.gguf_name, f.block, f.block_bytes, f.dequantize});
    return t;
  }();
  return types;
}

}  // namespace

const GgmlType* find_ggml_type(std::uint32_t id) {
  for (const auto& t : table())
    if (t.id == id) return &t;
  return nullptr;
}

std::string supported_ggml_types() {
  std::string s;
  for (const auto& t : table()) s += (s.empty() ? "" : ", ") + std::string(t.name);
  return s;
}

}  // namespace tqb
