#pragma once
// `tqbench export`: a model with its selected linear layers quantized, written as a file others can load.
//  - OUT.gguf: llama.cpp's formats (q4_0 ... q6_K, iq4_nl) as their own GGUF tensor types. The source must
//    be a GGUF file; its metadata entries are copied byte for byte (tokenizer, architecture) and every
//    other tensor keeps its stored type, so llama.cpp loads and runs the result.
//  - OUT.safetensors: any quantizer, in tqbench's layout (models/quantized_safetensors.hpp), read back
//    bit-exactly.
// Layers are selected and quantized exactly as model evaluation does (eval/layer_quantization), so an
// exported file holds the weights a sweep point measured.
#include <cstdint>
#include <ostream>
#include <string>

#include "eval/calibration.hpp"
#include "eval/layer_quantization.hpp"

namespace tqb {

struct ExportRequest {
  std::string model;      // GGUF file, Hugging Face folder, or a model name (resolve_model_path)
  std::string quantizer;  // one-line quantizer name
  std::string output;     // .gguf or .safetensors
  std::string include = kBlockLinearLayers, exclude = "^$";
  std::uint64_t seed = 0;
  GroupFallback group_fallback = GroupFallback::none;  // a layer whose width the group does not divide: error or halve
  bool force = false;     // replace an existing output (never the model itself)
  CalibrationSpec calibration;  // a calibrated quantizer's (gptq, awq) text; recorded in the file's metadata
  std::string command_line;  // recorded in the file's metadata
};

// InputError (bad model, quantizer, pattern, extension; a format GGUF has no type for) or RunError (a failed
// write: the output is complete or absent). Prints one summary line per kind of tensor to `log`.
void export_model(const ExportRequest& r, std::ostream& log);

}  // namespace tqb
