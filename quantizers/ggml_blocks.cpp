#include "quantizers/ggml_blocks.hpp"

#include "quantizers/ggml_kquant_blocks.hpp"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>

#include "common/float_format.hpp"
#include "common/named_table.hpp"
#include "quantizers/ggml_block_layouts.hpp"

namespace tqb {
namespace {

constexpr std::size_t QK = ggml_layout::kBlock;

// The block struct of a legacy format (ggml_block_layouts.hpp): its size and the offsets of qh and qs.
template <int Bits, bool Min> struct LegacyBlock;
template <> struct LegacyBlock<4, false> { using type = ggml_layout::BlockQ4_0; };
template <> struct LegacyBlock<4, true> { using type = ggml_layout::BlockQ4_1; };
template <> struct LegacyBlock<5, false> { using type = ggml_layout::BlockQ5_0; };
template <> struct LegacyBlock<5, true> { using type = ggml_layout::BlockQ5_1; };
template <int Bits, bool Min> using LegacyBlockT = typename LegacyBlock<Bits, Min>::type;
template <class Block> constexpr std::size_t kQsOf = offsetof(Block, qs);
template <int Bits, bool Min> constexpr std::size_t kQsOffset = kQsOf<LegacyBlockT<Bits, Min>>;
template <int Bits, bool Min> constexpr std::size_t kBlockBytes = sizeof(LegacyBlockT<Bits, Min>);


void put16(std::uint8_t* p, std::uint16_t v) { std::memcpy(p, &v, 2); }
std::uint16_t get16(const std::uint8_t* p) {
  std::uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

// The weight of largest magnitude, with its sign (the _0 types scale by it so that it maps to the code
// range's negative end exactly).
float signed_absmax(const float* x) {
  float amax = 0, max = 0;
  for (std::size_t j = 0; j < QK; ++j)
    if (std::fabs(x[j]) > amax) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  return max;
}

// Layout of the 4/5-bit types: byte j of qs holds weight j in its low nibble and weight j + 16 in its high
// nibble; the _5 types keep each weight's fifth bit in the 32-bit qh (bit j for weight j).
template <int Bits, bool Min>
void quantize_nibbles(const float* x, std::uint8_t* out, std::size_t n) {
  constexpr std::size_t header = Min ? 4 : 2, bytes = kBlockBytes<Bits, Min>;  // header: d (and m), then qh for 5 bits
  constexpr int levels = (1 << Bits) - 1;  // 15 or 31
  for (std::size_t b = 0; b < n / QK; ++b, x += QK, out += bytes) {
    float d, lo = 0;
    if (Min) {
      float mn = x[0], mx = x[0];
      for (std::size_t j = 1; j < QK; ++j) {
        mn = std::min(mn, x[j]);
        mx = std::max(mx, x[j]);
      }
      d = (mx - mn) / levels;
      lo = mn;
      put16(out, fp16_bits(d));
      put16(out + 2, fp16_bits(mn));
    } else {
      d = signed_absmax(x) / -static_cast<float>(1 << (Bits - 1));
      put16(out, fp16_bits(d));
    }
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    std::uint32_t qh = 0;
    std::uint8_t* qs = out + kQsOffset<Bits, Min>;
    for (std::size_t j = 0; j < QK / 2; ++j) {
      std::uint8_t q[2];
      for (int h = 0; h < 2; ++h) {
        const float v = x[j + h * QK / 2];
        // ggml truncates toward zero after adding the offset and one half: round to nearest, ties up.
        // (The offset plus one half is one constant, 8.5f or 16.5f, added once, as ggml and gguf-py do.)
        constexpr float half_up = static_cast<float>(1 << (Bits - 1)) + 0.5f;
        int qi = Min ? static_cast<std::int8_t>((v - lo) * id + 0.5f) : static_cast<std::int8_t>(v * id + half_up);
        if (Bits == 4 || !Min) qi = std::min(levels, qi);
        q[h] = static_cast<std::uint8_t>(qi);
      }
      qs[j] = static_cast<std::uint8_t>((q[0] & 0x0f) | (q[1] & 0x0f) << 4);
      if (Bits == 5) {
        qh |= static_cast<std::uint32_t>((q[0] & 0x10) >> 4) << j;
        qh |= static_cast<std::uint32_t>((q[1] & 0x10) >> 4) << (j + QK / 2);
      }
    }
    if (Bits == 5) std::memcpy(out + header, &qh, 4);
  }
}

template <int Bits, bool Min>
void dequantize_nibbles(const std::uint8_t* in, float* y, std::size_t n) {
  constexpr std::size_t header = Min ? 4 : 2, bytes = kBlockBytes<Bits, Min>;
  for (std::size_t b = 0; b < n / QK; ++b, in += bytes, y += QK) {
    const float d = fp16_value(get16(in)), m = Min ? fp16_value(get16(in + 2)) : 0.0f;
    std::uint32_t qh = 0;
    if (Bits == 5) std::memcpy(&qh, in + header, 4);
    const std::uint8_t* qs = in + kQsOffset<Bits, Min>;
    const int offset = Min ? 0 : 1 << (Bits - 1);
    for (std::size_t j = 0; j < QK / 2; ++j) {
      int q0 = qs[j] & 0x0f, q1 = qs[j] >> 4;
      if (Bits == 5) {
        q0 |= static_cast<int>((qh >> j) & 1) << 4;
        q1 |= static_cast<int>((qh >> (j + QK / 2)) & 1) << 4;
      }
      y[j] = static_cast<float>(q0 - offset) * d + m;
      y[j + QK / 2] = static_cast<float>(q1 - offset) * d + m;
    }
  }
}

// q8_0: fp16 d = max|x| / 127, then 32 int8 rounded to nearest (roundf: ties away from zero).
void quantize_q8_0(const float* x, std::uint8_t* out, std::size_t n) {
  for (std::size_t b = 0; b < n / QK; ++b, x += QK, out += sizeof(ggml_layout::BlockQ8_0)) {
    float amax = 0;
    for (std::size_t j = 0; j < QK; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    put16(out, fp16_bits(d));
    for (std::size_t j = 0; j < QK; ++j) out[offsetof(ggml_layout::BlockQ8_0, qs) + j] = static_cast<std::uint8_t>(static_cast<std::int8_t>(std::round(x[j] * id)));
  }
}

void dequantize_q8_0(const std::uint8_t* in, float* y, std::size_t n) {
  for (std::size_t b = 0; b < n / QK; ++b, in += sizeof(ggml_layout::BlockQ8_0), y += QK) {
    const float d = fp16_value(get16(in));
    for (std::size_t j = 0; j < QK; ++j) y[j] = d * static_cast<float>(static_cast<std::int8_t>(in[offsetof(ggml_layout::BlockQ8_0, qs) + j]));
  }
}

}  // namespace

const std::vector<GgmlBlockFormat>& ggml_block_formats() {
  namespace k = ggml_kquant;
  static const std::vector<GgmlBlockFormat> formats{
      {"q4_0", "Q4_0", 2, QK, sizeof(ggml_layout::BlockQ4_0), 4, "blocks of 32, fp16 scale", nullptr, quantize_nibbles<4, false>, dequantize_nibbles<4, false>},
      {"q4_1", "Q4_1", 3, QK, sizeof(ggml_layout::BlockQ4_1), 4, "blocks of 32, fp16 scale and minimum", nullptr, quantize_nibbles<4, true>, dequantize_nibbles<4, true>},
      {"q5_0", "Q5_0", 6, QK, sizeof(ggml_layout::BlockQ5_0), 5, "blocks of 32, fp16 scale", nullptr, quantize_nibbles<5, false>, dequantize_nibbles<5, false>},
      {"q5_1", "Q5_1", 7, QK, sizeof(ggml_layout::BlockQ5_1), 5, "blocks of 32, fp16 scale and minimum", nullptr, quantize_nibbles<5, true>, dequantize_nibbles<5, true>},
      {"q8_0", "Q8_0", 8, QK, sizeof(ggml_layout::BlockQ8_0), 8, "blocks of 32, fp16 scale", nullptr, quantize_q8_0, dequantize_q8_0},
      {"q2_K", "Q2_K", 10, k::kSuperBlock, k::kQ2KBytes, 2, "super-blocks of 256: 16 x 16 with 4-bit scales and minimums",
       "q4_0", k::quantize_q2_k, k::dequantize_q2_k},
      {"q3_K", "Q3_K", 11, k::kSuperBlock, k::kQ3KBytes, 3, "super-blocks of 256: 16 x 16 with 6-bit scales", "q4_0",
       k::quantize_q3_k, k::dequantize_q3_k},
      {"q4_K", "Q4_K", 12, k::kSuperBlock, k::kQ4KBytes, 4, "super-blocks of 256: 8 x 32 with 6-bit scales and minimums",
       "q5_0", k::quantize_q4_k, k::dequantize_q4_k},
      {"q5_K", "Q5_K", 13, k::kSuperBlock, k::kQ5KBytes, 5, "super-blocks of 256: 8 x 32 with 6-bit scales and minimums",
       "q5_1", k::quantize_q5_k, k::dequantize_q5_k},
      {"q6_K", "Q6_K", 14, k::kSuperBlock, k::kQ6KBytes, 6, "super-blocks of 256: 16 x 16 with int8 scales", "q8_0",
       k::quantize_q6_k, k::dequantize_q6_k},
      {"iq4_nl", "IQ4_NL", 20, k::kIq4Block, k::kIq4NlBytes, 4, "blocks of 32 on 16 fixed non-uniform levels, fp16 scale",
       nullptr, k::quantize_iq4_nl, k::dequantize_iq4_nl},
  };
  return formats;
}

const GgmlBlockFormat* find_ggml_block_format(const std::string& name) { return find_named(ggml_block_formats(), name); }

std::string ggml_format_names() {
  std::string s;
  for (const auto& f : ggml_block_formats()) s += (s.empty() ? "" : ", ") + std::string(f.name);
  return s;
}

const GgmlBlockFormat* find_ggml_block_format(std::uint32_t ggml_type) {
  for (const auto& f : ggml_block_formats())
    if (f.ggml_type == ggml_type) return &f;
  return nullptr;
}

}  // namespace tqb
