#pragma once
// llama.cpp's block formats, in ggml's byte layout (the block structs: ggml_block_layouts.hpp), in one traits table
// that the quantizer families, the GGUF reader (models/ggml_types) and export all read, so that a tqbench-quantized tensor is what a GGUF file
// stores:
//  - legacy (this file's codecs): q4_0, q4_1, q5_0, q5_1, q8_0, blocks of 32 weights with an fp16 scale
//    (and an fp16 minimum for the _1 types). Quantization is ggml's reference path (quantize_row_*_ref: no
//    importance matrix), which gguf-py's numpy quantizers reproduce bit for bit (the test oracle,
//    tests/oracles/ggml_quantize.py);
//  - k-quants q2_K..q6_K (super-blocks of 256) and iq4_nl: quantizers/ggml_kquant_blocks.hpp, checked
//    against ggml itself by bench/peers/check_ggml_formats.py.
// Dequantization is shared with the GGUF reader (models/ggml_types).
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace tqb {

struct GgmlBlockFormat {
  const char* name;          // q4_0, ..., q4_K, ..., iq4_nl (the quantizer family: ggml's type name, lower case)
  const char* gguf_name;     // Q4_0, ..., Q4_K, ..., IQ4_NL (ggml's type name as GGUF tools print it)
  std::uint32_t ggml_type;   // GGUF tensor type id
  std::size_t block;         // weights per block (32, or 256 for the k-quants)
  std::size_t block_bytes;   // bytes per block: sizeof its struct in ggml_block_layouts.hpp
  int code_bits;             // bits of each weight's code (2..8)
  const char* layout;        // one line for `tqbench list quantizers`: what a block stores
  // The 32-weight format llama-quantize substitutes for a row that is not a multiple of `block`
  // (llama-quant.cpp's tensor_type_fallback), or nullptr for the 32-weight formats themselves.
  const char* fallback;
  // n weights (a multiple of `block`) into n / block blocks, and back.
  void (*quantize)(const float* x, std::uint8_t* out, std::size_t n);
  void (*dequantize)(const std::uint8_t* in, float* y, std::size_t n);
};

const std::vector<GgmlBlockFormat>& ggml_block_formats();
const GgmlBlockFormat* find_ggml_block_format(const std::string& name);
const GgmlBlockFormat* find_ggml_block_format(std::uint32_t ggml_type);
std::string ggml_format_names();  // "q4_0, q4_1, ..." for messages

}  // namespace tqb
