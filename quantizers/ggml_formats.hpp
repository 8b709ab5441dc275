#pragma once
// llama.cpp's legacy formats as quantizer families: q4_0, q4_1, q5_0, q5_1, q8_0 (quantizers/ggml_blocks.hpp),
// so that a sweep can put TurboQuant beside what people ship. No parameters: the block (32 weights), the
// fp16 scales and the reference rounding are the format. The QuantizedMatrix holds ggml's blocks byte for
// byte (row-major, cols / 32 blocks per row), so bits_per_weight is exact (4.5, 5, 5.5, 6, 8.5).
#include <vector>

#include "quantizers/registry.hpp"

namespace tqb {

std::vector<QuantizerFamily> ggml_families();

}  // namespace tqb
