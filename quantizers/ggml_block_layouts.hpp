#pragma once
// The bytes of one block of each of llama.cpp's formats, as structs (the layout ggml.h's block_* types give
// them; fp16 fields as their bit patterns). The codecs (ggml_blocks.cpp, ggml_kquant_blocks.cpp) read and
// write these offsets, the traits table (ggml_block_formats()) takes each block's size from here, and the
// asserts pin sizes, offsets and bits per weight at compile time, so a layout slip cannot reach a GGUF file.
#include <cstddef>
#include <cstdint>

namespace tqb::ggml_layout {

inline constexpr std::size_t kBlock = 32;       // QK4_0 = QK4_1 = QK5_0 = QK5_1 = QK8_0 = QK4_NL
inline constexpr std::size_t kSuperBlock = 256; // QK_K

struct BlockQ4_0 { std::uint16_t d; std::uint8_t qs[kBlock / 2]; };
struct BlockQ4_1 { std::uint16_t d, m; std::uint8_t qs[kBlock / 2]; };
struct BlockQ5_0 { std::uint16_t d; std::uint8_t qh[4]; std::uint8_t qs[kBlock / 2]; };
struct BlockQ5_1 { std::uint16_t d, m; std::uint8_t qh[4]; std::uint8_t qs[kBlock / 2]; };
struct BlockQ8_0 { std::uint16_t d; std::int8_t qs[kBlock]; };
struct BlockQ2_K { std::uint8_t scales[kSuperBlock / 16]; std::uint8_t qs[kSuperBlock / 4]; std::uint16_t d, dmin; };
struct BlockQ3_K { std::uint8_t hmask[kSuperBlock / 8]; std::uint8_t qs[kSuperBlock / 4]; std::uint8_t scales[12]; std::uint16_t d; };
struct BlockQ4_K { std::uint16_t d, dmin; std::uint8_t scales[12]; std::uint8_t qs[kSuperBlock / 2]; };
struct BlockQ5_K { std::uint16_t d, dmin; std::uint8_t scales[12]; std::uint8_t qh[kSuperBlock / 8]; std::uint8_t qs[kSuperBlock / 2]; };
struct BlockQ6_K { std::uint8_t ql[kSuperBlock / 2]; std::uint8_t qh[kSuperBlock / 4]; std::int8_t scales[kSuperBlock / 16]; std::uint16_t d; };
struct BlockIQ4_NL { std::uint16_t d; std::uint8_t qs[kBlock / 2]; };

// Bits per weight of a block type: 8 · bytes / weights, times 1000 to stay an integer.
template <class Block, std::size_t Weights>
inline constexpr std::size_t kMilliBitsPerWeight = sizeof(Block) * 8000 / Weights;

static_assert(sizeof(BlockQ4_0) == 18 && kMilliBitsPerWeight<BlockQ4_0, kBlock> == 4500);
static_assert(sizeof(BlockQ4_1) == 20 && kMilliBitsPerWeight<BlockQ4_1, kBlock> == 5000);
static_assert(sizeof(BlockQ5_0) == 22 && kMilliBitsPerWeight<BlockQ5_0, kBlock> == 5500);
static_assert(sizeof(BlockQ5_1) == 24 && kMilliBitsPerWeight<BlockQ5_1, kBlock> == 6000);
static_assert(sizeof(BlockQ8_0) == 34 && kMilliBitsPerWeight<BlockQ8_0, kBlock> == 8500);
static_assert(sizeof(BlockQ2_K) == 84 && kMilliBitsPerWeight<BlockQ2_K, kSuperBlock> == 2625);
static_assert(sizeof(BlockQ3_K) == 110 && kMilliBitsPerWeight<BlockQ3_K, kSuperBlock> == 3437);  // 3.4375
static_assert(sizeof(BlockQ4_K) == 144 && kMilliBitsPerWeight<BlockQ4_K, kSuperBlock> == 4500);
static_assert(sizeof(BlockQ5_K) == 176 && kMilliBitsPerWeight<BlockQ5_K, kSuperBlock> == 5500);
static_assert(sizeof(BlockQ6_K) == 210 && kMilliBitsPerWeight<BlockQ6_K, kSuperBlock> == 6562);  // 6.5625
static_assert(sizeof(BlockIQ4_NL) == 18 && kMilliBitsPerWeight<BlockIQ4_NL, kBlock> == 4500);
// The offsets the legacy codecs use: scale (and minimum) first, then the fifth bits, then the nibbles.
static_assert(offsetof(BlockQ4_0, qs) == 2 && offsetof(BlockQ4_1, qs) == 4);
static_assert(offsetof(BlockQ5_0, qh) == 2 && offsetof(BlockQ5_0, qs) == 6);
static_assert(offsetof(BlockQ5_1, qh) == 4 && offsetof(BlockQ5_1, qs) == 8);
static_assert(offsetof(BlockQ8_0, qs) == 2);

}  // namespace tqb::ggml_layout
