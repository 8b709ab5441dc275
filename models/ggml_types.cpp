#include "models/ggml_types.hpp"

#include <Eigen/Core>
#include <cstring>

#include "quantizers/ggml_blocks.hpp"

namespace tqb {
namespace {

inline float fp16(std::uint16_t h) { return static_cast<float>(Eigen::numext::bit_cast<Eigen::half>(h)); }
inline float bf16(std::uint16_t h) { return static_cast<float>(Eigen::numext::bit_cast<Eigen::bfloat16>(h)); }

constexpr std::size_t QK_K = 256;

// Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0: quantizers/ggml_blocks.hpp (shared with the quantizer families).

// Q4_K: 256 weights in 8 sub-blocks of 32, each with a 6-bit scale and 6-bit min packed into 12
// bytes, scaled by the fp16 super-block d and dmin; x = d·sc·q − dmin·m. 4.5 bits per weight.
struct BlockQ4_K {
  std::uint16_t d, dmin;
  std::uint8_t scales[12];
  std::uint8_t qs[QK_K / 2];
};
static_assert(sizeof(BlockQ4_K) == 144 && sizeof(BlockQ4_K) * 8.0 / QK_K == 4.5);

// Q6_K: 256 weights, 4 low bits in ql and 2 high bits in qh, 16 int8 sub-block scales, fp16 d;
// x = d·sc·(q − 32). 6.5625 bits per weight.
struct BlockQ6_K {
  std::uint8_t ql[QK_K / 2];
  std::uint8_t qh[QK_K / 4];
  std::int8_t scales[QK_K / 16];
  std::uint16_t d;
};
static_assert(sizeof(BlockQ6_K) == 210 && sizeof(BlockQ6_K) * 8.0 / QK_K == 6.5625);

template <class Block>
const Block* blocks(const std::uint8_t* src) {
  return reinterpret_cast<const Block*>(src);  // packed structs of bytes and uint16: alignment 2
}

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

// The 6-bit scale and min of sub-block j (0..7) from Q4_K's 12 packed bytes.
void scale_min_k4(int j, const std::uint8_t* q, int& sc, int& m) {
  if (j < 4) {
    sc = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    sc = (q[j + 4] & 15) | ((q[j - 4] >> 6) << 4);
    m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

void deq_q4_k(const std::uint8_t* src, float* dst, std::size_t n) {
  for (std::size_t b = 0; b < n / QK_K; ++b) {
    BlockQ4_K x;
    std::memcpy(&x, src + b * sizeof(x), sizeof(x));
    const float d = fp16(x.d), dmin = fp16(x.dmin);
    float* y = dst + b * QK_K;
    const std::uint8_t* q = x.qs;
    for (int chunk = 0, is = 0; chunk < 4; ++chunk, is += 2, q += 32, y += 64) {
      int sc, m;
      scale_min_k4(is, x.scales, sc, m);
      const float d1 = d * sc, m1 = dmin * m;
      scale_min_k4(is + 1, x.scales, sc, m);
      const float d2 = d * sc, m2 = dmin * m;
      for (int l = 0; l < 32; ++l) y[l] = d1 * static_cast<float>(q[l] & 15) - m1;
      for (int l = 0; l < 32; ++l) y[l + 32] = d2 * static_cast<float>(q[l] >> 4) - m2;
    }
  }
}

void deq_q6_k(const std::uint8_t* src, float* dst, std::size_t n) {
  for (std::size_t b = 0; b < n / QK_K; ++b) {
    BlockQ6_K x;
    std::memcpy(&x, src + b * sizeof(x), sizeof(x));
    const float d = fp16(x.d);
    float* y = dst + b * QK_K;
    const std::uint8_t* ql = x.ql;
    const std::uint8_t* qh = x.qh;
    const std::int8_t* sc = x.scales;
    for (int half = 0; half < 2; ++half, y += 128, ql += 64, qh += 32, sc += 8) {
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 15) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l] = d * sc[is] * q1;
        y[l + 32] = d * sc[is + 2] * q2;
        y[l + 64] = d * sc[is + 4] * q3;
        y[l + 96] = d * sc[is + 6] * q4;
      }
    }
  }
}

// A legacy block type through its codec in quantizers/ggml_blocks.
GgmlType legacy(std::uint32_t id, const char* name) {
  const GgmlBlockFormat* f = find_ggml_block_format(id);
  return {id, name, f->block, f->block_bytes, f->dequantize};
}

const std::vector<GgmlType>& table() {
  static const std::vector<GgmlType> types{
      {kGgmlF32, "F32", 1, 4, deq_f32},
      {kGgmlF16, "F16", 1, 2, deq_f16},
      {kGgmlBF16, "BF16", 1, 2, deq_bf16},
      legacy(kGgmlQ8_0, "Q8_0"),
      legacy(kGgmlQ4_0, "Q4_0"),
      legacy(kGgmlQ4_1, "Q4_1"),
      legacy(kGgmlQ5_0, "Q5_0"),
      legacy(kGgmlQ5_1, "Q5_1"),
      {kGgmlQ4_K, "Q4_K", QK_K, sizeof(BlockQ4_K), deq_q4_k},
      {kGgmlQ6_K, "Q6_K", QK_K, sizeof(BlockQ6_K), deq_q6_k},
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
