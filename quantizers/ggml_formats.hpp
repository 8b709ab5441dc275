#pragma once
// llama.cpp's formats as quantizer families: q4_0, q4_1, q5_0, q5_1, q8_0, q2_K, q3_K, q4_K, q5_K, q6_K and
// iq4_nl (quantizers/ggml_blocks.hpp), so that a sweep can put TurboQuant beside what people ship. The
// block, the scales and the rounding are the format; the only parameter is the k-quants' `fallback`, the
// 32-weight format for rows that are not a multiple of 256 (default: llama-quantize's choice, so SmolLM2's
// 576-wide rows get q5_0 under q4_K as in a shipped Q4_K file). The QuantizedMatrix holds ggml's blocks
// byte for byte (row-major), so bits_per_weight is exact (2.625 for q2_K ... 8.5 for q8_0).
#include <vector>

#include "quantizers/registry.hpp"

namespace tqb {

std::vector<QuantizerFamily> ggml_families();

struct GgmlBlockFormat;
// The ggml format `q` writes for rows of `cols` weights (its own or its fallback; gptq(Q): Q's), or nullptr when `q`
// is not one of these families (GGUF export asks this for each tensor's type).
const GgmlBlockFormat* ggml_format_of(const Quantizer& q, std::size_t cols);

}  // namespace tqb
