#pragma once
// The GPU's quantized KV cache (models/kv_codec.hpp describes the codes): rows encoded where they are written, and
// decoded into a dense scratch for a prefill's attention; a decode step's attention reads the codes themselves
// (decode_kernels.hpp, launch_decode_attention with a CodedKvLayer). Plain C++ for cuda_forward.cpp; pointers are
// device pointers; launches go to the (per-thread) default stream.
//
// Layout of one layer's stream: codes [kv head][capacity][head_dim · bits / 8] (bitpack.hpp's little-endian stream
// per head vector, 16 bytes of padding after the last), norms [kv head][capacity] fp32 (the value the norm format
// rounds to), signs [kv head][head_dim].
#include <cstddef>
#include <cstdint>

#include "models/cuda/decode_kernels.hpp"

namespace tqb::cuda_forward {

// One stream's codec, by value in a kernel's parameters (KvStreamCodec's numbers).
struct KvStreamParams {
  int bits = 4;
  int norm_format = 0;  // 0 fp32, 1 fp16, 2 bf16: what the stored norm is rounded through
  int rotated = 1;      // the randomized Hadamard transform with `signs`, then × scale
  float scale = 1;
  float lut[16] = {};
  float bounds[8] = {};  // the positive decision boundaries, 2^(bits−1) − 1 of them
};

// One layer's coded cache.
struct CodedKvLayer {
  const std::uint8_t *k_codes = nullptr, *v_codes = nullptr;
  const float *k_norms = nullptr, *v_norms = nullptr;
  const float *k_signs = nullptr, *v_signs = nullptr;  // [kv head][head_dim]
  KvStreamParams key, value;
};

// Bytes of one stream's code buffer at a capacity (with the padding the readers may touch).
std::size_t kv_code_buffer_bytes(int nkv, int hd, int bits, std::size_t capacity);

// Encodes n rows of x (row r at x + r·ld: nkv head vectors of hd floats) into positions pos0 + r (state: the device's
// position instead, a decode step's) of a stream of `capacity` positions: the CPU path's codes (turboquant.cpp's
// rule, its summation and rounding order).
void launch_kv_encode(const float* x, std::size_t n, std::size_t ld, int nkv, int hd, const KvStreamParams& p, const float* signs,
                      std::uint8_t* codes, float* norms, std::size_t capacity, std::size_t pos0, const DecodeState* state);

// launch_decode_attention (decode_kernels.hpp) over a coded layer: the codes read in place (the query rotated into the
// keys' domain, the values summed in theirs and the output rotated back). false: a head_dim other than 64, 128 or 256,
// or bits outside 2 to 4 (nothing launched).
bool launch_decode_attention(const float* q, const CodedKvLayer& layer, float* out, std::uint16_t* out_bf16, const DecodeState* state,
                             std::size_t capacity, int nh, int nkv, int hd, int window, float scale, float* scratch);

// Decodes positions [0, n) of a stream into dense rows of nkv·hd (bf16 bits, or fp32): the CPU's dequantized rows.
void launch_kv_decode(const std::uint8_t* codes, const float* norms, std::size_t n, int nkv, int hd, const KvStreamParams& p,
                      const float* signs, std::size_t capacity, void* dst, bool bf16);

}  // namespace tqb::cuda_forward
