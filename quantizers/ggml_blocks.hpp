#pragma once
// llama.cpp's legacy block formats (ggml's q4_0, q4_1, q5_0, q5_1, q8_0): blocks of 32 weights with an
// fp16 scale (and an fp16 minimum for the _1 types), in ggml's byte layout, so that a tqbench-quantized
// tensor is what a GGUF file stores. Quantization is ggml's reference path (quantize_row_*_ref: no
// importance matrix), which gguf-py's numpy quantizers reproduce bit for bit (tests/ggml_oracle.py checks
// tqbench against them). Dequantization is shared with the GGUF reader (models/ggml_types).
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace tqb {

struct GgmlBlockFormat {
  const char* name;          // q4_0, ...
  std::uint32_t ggml_type;   // GGUF tensor type id
  std::size_t block;         // weights per block (32)
  std::size_t block_bytes;   // bytes per block
  int code_bits;             // bits of each weight's code (4, 5, 8)
  // n weights (a multiple of `block`) into n / block blocks, and back.
  void (*quantize)(const float* x, std::uint8_t* out, std::size_t n);
  void (*dequantize)(const std::uint8_t* in, float* y, std::size_t n);
};

const std::vector<GgmlBlockFormat>& ggml_block_formats();
const GgmlBlockFormat* find_ggml_block_format(const std::string& name);
const GgmlBlockFormat* find_ggml_block_format(std::uint32_t ggml_type);

}  // namespace tqb
