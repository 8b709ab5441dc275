#pragma once
// tqbench's safetensors layout for a quantized model, for the formats llama.cpp has no type for
// (turboquant, turboquant_prod, qjl, rtn, residual stacks). Read back, every QuantizedMatrix is identical,
// byte for byte, to the one the quantizer made; docs/EXPORT.md specifies the layout:
//   NAME.codes     U8  [bytes]  the packed code stream (quantizers/bitpack.hpp)
//   NAME.scales    U8  [bytes]  per-group scales or norms, [rows][groups] in side_format
//   NAME.zeros     U8  [bytes]  per-group zero points or minimums (when the format has them)
//   NAME.codebook  F32 [k]      a trained codebook (derived codebooks are recomputed from the name)
//   NAME.pass<i>.*              the same for pass i of a residual stack
//   NAME           F32 [rows, cols] (or [n]) for every tensor left unquantized
// and in __metadata__: "tqbench.layout" = "quantized-safetensors/1", "tqbench.quantized" = a JSON object
// {NAME: {quantizer, seed, rows, cols, code_bits, side_format, passes: [...]}}, plus provenance keys.
// Rotations are not stored: the canonical quantizer name and the seed regenerate them (TurboQuant §3).
#include <map>
#include <string>

#include "common/matrix.hpp"
#include "quantizers/quantized_matrix.hpp"

namespace tqb {

struct QuantizedModelFile {
  std::map<std::string, std::string> metadata;       // provenance: tqbench.quantizer, .seed, .source, .commit, ...
  std::map<std::string, QuantizedMatrix> quantized;  // tensor name -> its quantized matrix
  std::map<std::string, Matrix> dense;               // every other tensor, fp32
  std::map<std::string, std::size_t> dense_rank;     // 1 for vectors (stored [n]), else 2
};

// Written through AtomicFile (complete or absent); RunError naming the file on a failed write.
void write_quantized_safetensors(const std::string& path, const QuantizedModelFile& m);
// ModelFileError naming the file and the tensor or key when the file is not this layout or is inconsistent
// (a size that does not match rows, cols and code_bits; an unknown quantizer name; a missing part).
QuantizedModelFile read_quantized_safetensors(const std::string& path);

inline constexpr const char* kQuantizedSafetensorsLayout = "quantized-safetensors/1";

}  // namespace tqb
