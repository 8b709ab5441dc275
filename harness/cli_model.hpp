#pragma once
// The model the model commands (perplexity, generate, passkey) run: a checkpoint's, unquantized, quantized by a
// registry quantizer or read from an export's quantized layers, on a device, with an optional quantized KV cache.
// One place builds it, so that what `perplexity --quantizer X --device cuda` measures is what `generate` writes.
#include <cstdint>
#include <memory>
#include <string>

#include "eval/calibration.hpp"
#include "eval/layer_quantization.hpp"
#include "models/checkpoint.hpp"
#include "models/kv_quant.hpp"
#include "models/llama.hpp"

namespace tqb {

struct ModelChoice {
  std::string quantizer;       // one-line name ("": unquantized)
  std::string quantized_file;  // an export's quantized layers (tqbench export -o FILE.safetensors), instead of quantizer
  std::string kernel = "dequantized_dense", device = "cpu";
  std::string include = kBlockLinearLayers, exclude = "^$", group_fallback = "none";
  std::uint64_t seed = 0;      // the quantizer's and the KV cache's randomness
  KvQuantSpec kv;
  // Calibrated quantizers (gptq): where their text comes from (perplexity: the end of its evaluation text by default,
  // with the tokens it scores marked so that the calibration does not overlap them).
  CalibrationSpec calibration;
};

struct BuiltModel {
  std::unique_ptr<LlamaModel> model;
  std::string label;  // what it is, for the command's report: "fp32", "turboquant(...) (4.25 bits per weight in 210 layers) on cuda"
  std::shared_ptr<KvQuantizer> kv;  // the cache's quantizer (null: exact cache)
  double calibrate_s = 0;           // collecting the calibration statistics
};

// The checkpoint a model command reads, streamed (projections read as the model is built), with a tokenizer; the
// choice's quantizer name is parsed first, so that a bad name fails before a large model is read. InputError otherwise.
Checkpoint load_model_checkpoint(const std::string& model_name, const ModelChoice& choice);

// model_name: as the user gave it (messages). Throws InputError for a bad quantizer name, a file that does not match
// the model, a selection of no layer, or a KV cache on a device without one.
BuiltModel build_model(const Checkpoint& ck, const std::string& model_name, const ModelChoice& choice);

}  // namespace tqb
