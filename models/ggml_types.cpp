#include "models/ggml_types.hpp"

#include <Eigen/Core>
#include <cstring>

#include "quantizers/ggml_blocks.hpp"

namespace tqb {
namespace {

inline float fp16(std::uint16_t h) { return static_cast<float>(Eigen::numext::bit_cast<Eigen::half>(h)); }
inline float bf16(std::uint16_t h) { return static_cast<float>(Eigen::numext::bit_cast<Eigen::bfloat16>(h)); }

// Every quantized type goes through its codec in quantizers/ggml_blocks (shared with the quantizer families).

void deq_f32(const std::uint8_t* src, float* dst, std::size_t n) { std::memcpy(dst, src, n * 4); }
void deq_f16(const std::uint8_t* src, float* dst, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    std::uint16_t h;
    std::memcpy(&h, src + 2 * i, 2);
    dst[i] = fp16(h);
  }
}
void deq_bf16(const std::uint8_t* src, float* dst, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    std::uint16_t h;
    std::memcpy(&h, src + 2 * i, 2);
    dst[i] = bf16(h);
  }
}

// A block type through its codec in quantizers/ggml_blocks.
GgmlType codec(std::uint32_t id, const char* name) {
  const GgmlBlockFormat* f = find_ggml_block_format(id);
  return {id, name, f->block, f->block_bytes, f->dequantize};
}

const std::vector<GgmlType>& table() {
  static const std::vector<GgmlType> types{
      {kGgmlF32, "F32", 1, 4, deq_f32},
      {kGgmlF16, "F16", 1, 2, deq_f16},
      {kGgmlBF16, "BF16", 1, 2, deq_bf16},
      codec(kGgmlQ8_0, "Q8_0"),
      codec(kGgmlQ4_0, "Q4_0"),
      codec(kGgmlQ4_1, "Q4_1"),
      codec(kGgmlQ5_0, "Q5_0"),
      codec(kGgmlQ5_1, "Q5_1"),
      codec(kGgmlQ2_K, "Q2_K"),
      codec(kGgmlQ3_K, "Q3_K"),
      codec(kGgmlQ4_K, "Q4_K"),
      codec(kGgmlQ5_K, "Q5_K"),
      codec(kGgmlQ6_K, "Q6_K"),
      codec(kGgmlIQ4_NL, "IQ4_NL"),
  };
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
