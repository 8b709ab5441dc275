#include "quantizers/ggml_block_grid.hpp"

#include <cstring>
#include <stdexcept>
#include <string>

#include "common/float_format.hpp"
#include "quantizers/ggml_block_layouts.hpp"
#include "quantizers/ggml_kquant_blocks.hpp"

namespace tqb {
namespace {

namespace L = ggml_layout;
constexpr std::size_t QK = L::kBlock;

// Where a 32-weight format keeps its fields in a block (ggml_block_layouts.hpp): the minimum (0: none), the fifth bits
// (0: none), the low nibbles or int8 codes; or, for a k-quant, its kind (4, 5, 6: ggml_kquant_blocks.hpp's grid view).
struct Fields {
  std::size_t m = 0, qh = 0, qs = 0;
  int bits = 0, kquant = 0;
};

Fields fields_of(const GgmlBlockFormat& f) {
  const std::string n = f.name;
  if (n == "q4_0") return {0, 0, offsetof(L::BlockQ4_0, qs), 4};
  if (n == "q4_1") return {offsetof(L::BlockQ4_1, m), 0, offsetof(L::BlockQ4_1, qs), 4};
  if (n == "q5_0") return {0, offsetof(L::BlockQ5_0, qh), offsetof(L::BlockQ5_0, qs), 5};
  if (n == "q5_1") return {offsetof(L::BlockQ5_1, m), offsetof(L::BlockQ5_1, qh), offsetof(L::BlockQ5_1, qs), 5};
  if (n == "q8_0") return {0, 0, offsetof(L::BlockQ8_0, qs), 8};
  if (n == "iq4_nl") return {0, 0, offsetof(L::BlockIQ4_NL, qs), 4};
  if (n == "q2_K") return {.bits = 2, .kquant = 2};
  if (n == "q3_K") return {.bits = 3, .kquant = 3};
  if (n == "q4_K") return {.bits = 4, .kquant = 4};
  if (n == "q5_K") return {.bits = 5, .kquant = 5};
  if (n == "q6_K") return {.bits = 6, .kquant = 6};
  return {};
}

Fields checked(const GgmlBlockFormat& f, std::size_t cols) {
  const Fields k = fields_of(f);
  if (k.bits == 0) throw std::invalid_argument(std::string(f.name) + " is not a grid tqbench can search (ggml_block_grid.hpp)");
  if (cols % f.block != 0) throw std::invalid_argument(std::string(f.name) + ": rows are not whole blocks");
  return k;
}

std::uint16_t get16(const std::uint8_t* p) {
  std::uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

// Code of weight i (0..31) of a block, and its setter: nibbles hold weights i and i + 16 in byte i mod 16 (low, high),
// the fifth bit of weight i is bit i of qh, q8_0's int8 code is stored as code − 128.
unsigned code_at(const Fields& k, const std::uint8_t* block, std::size_t i) {
  if (k.kquant) return ggml_kquant::kquant_code(k.kquant, block, i);
  if (k.bits == 8) return static_cast<unsigned>(block[k.qs + i]) ^ 0x80u;
  const std::uint8_t byte = block[k.qs + i % (QK / 2)];
  unsigned c = i < QK / 2 ? byte & 0x0fu : byte >> 4;
  if (k.bits == 5) {
    std::uint32_t qh;
    std::memcpy(&qh, block + k.qh, 4);
    c |= ((qh >> i) & 1u) << 4;
  }
  return c;
}

void set_code(const Fields& k, std::uint8_t* block, std::size_t i, unsigned c) {
  if (k.kquant) return ggml_kquant::kquant_set_code(k.kquant, block, i, c);
  if (k.bits == 8) {
    block[k.qs + i] = static_cast<std::uint8_t>(c ^ 0x80u);
    return;
  }
  std::uint8_t& byte = block[k.qs + i % (QK / 2)];
  byte = i < QK / 2 ? static_cast<std::uint8_t>((byte & 0xf0u) | (c & 0x0fu)) : static_cast<std::uint8_t>((byte & 0x0fu) | ((c & 0x0fu) << 4));
  if (k.bits == 5) {
    std::uint32_t qh;
    std::memcpy(&qh, block + k.qh, 4);
    qh = (qh & ~(1u << i)) | (((c >> 4) & 1u) << i);
    std::memcpy(block + k.qh, &qh, 4);
  }
}

}  // namespace

GgmlBlockGrid ggml_block_grid(const GgmlBlockFormat& f) {
  const Fields k = fields_of(f);
  GgmlBlockGrid g;
  if (k.bits == 0) return g;
  g.offset = k.m != 0 || k.kquant == 2 || k.kquant == 4 || k.kquant == 5;
  g.group = k.kquant == 2 || k.kquant == 3 || k.kquant == 6 ? 16 : 32;
  g.span = f.block / g.group;
  const int levels = 1 << k.bits;
  const std::string n = f.name;
  for (int c = 0; c < levels; ++c) {
    if (n == "iq4_nl")
      g.lut.push_back(static_cast<float>(ggml_kquant::kIq4NlLevels[c]));
    else if (g.offset)
      g.lut.push_back(static_cast<float>(c));  // the _1 types: d·q + m; q2_K/q4_K/q5_K: d·sc·q − dmin·m
    else
      g.lut.push_back(static_cast<float>(c - levels / 2));  // q4_0: q − 8, q5_0: q − 16, q8_0: the int8 value, q3_K: q − 4, q6_K: q − 32
  }
  return g;
}

void ggml_block_scales(const GgmlBlockFormat& f, const std::uint8_t* bytes, std::size_t rows, std::size_t cols, std::vector<float>& a,
                       std::vector<float>& b) {
  const Fields k = checked(f, cols);
  const GgmlBlockGrid grid = ggml_block_grid(f);
  const std::size_t blocks = rows * (cols / f.block);
  a.resize(blocks * grid.span);
  b.clear();
  if (grid.offset) b.resize(blocks * grid.span);
  for (std::size_t i = 0; i < blocks; ++i) {
    const std::uint8_t* block = bytes + i * f.block_bytes;
    if (k.kquant) {
      ggml_kquant::kquant_grid_scales(k.kquant, block, a.data() + i * grid.span, grid.offset ? b.data() + i * grid.span : nullptr);
      continue;
    }
    a[i] = fp16_value(get16(block));
    if (k.m) b[i] = fp16_value(get16(block + k.m));
  }
}

void ggml_block_codes(const GgmlBlockFormat& f, const std::uint8_t* bytes, std::size_t rows, std::size_t cols, std::uint8_t* codes) {
  const Fields k = checked(f, cols);
  for (std::size_t i = 0; i < rows * (cols / f.block); ++i)
    for (std::size_t w = 0; w < f.block; ++w) codes[i * f.block + w] = static_cast<std::uint8_t>(code_at(k, bytes + i * f.block_bytes, w));
}

void ggml_block_set_codes(const GgmlBlockFormat& f, std::uint8_t* bytes, std::size_t rows, std::size_t cols, const std::uint8_t* codes) {
  const Fields k = checked(f, cols);
  for (std::size_t i = 0; i < rows * (cols / f.block); ++i)
    for (std::size_t w = 0; w < f.block; ++w) set_code(k, bytes + i * f.block_bytes, w, codes[i * f.block + w]);
}

}  // namespace tqb
