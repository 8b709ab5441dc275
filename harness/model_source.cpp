#include "harness/model_source.hpp"

#include <fmt/format.h>

#include "common/error.hpp"
#include "eval/layer_quantization.hpp"
#include "kernels/registry.hpp"
#include "models/name_pattern.hpp"
#include "quantizers/registry.hpp"

namespace tqb {
namespace {

using K = ParamSpec::Kind;

// The quantizer names and regular expressions, checked where the spec location is known (sweep expansion).
ShapeProblem check_model_params(const Params& p) {
  if (get_str(p, "device") != "cpu" && get_str(p, "kv_scores") == "estimator")
    return {"kv_scores", fmt::format("the estimator's scores are computed on the CPU only (device {} attends the dequantized cache); "
                                     "give kv_scores: dequantized or device: cpu", get_str(p, "device"))};
  for (const char* key : {"kv_key", "kv_value", "kv_outlier_key", "kv_outlier_value"})
    if (const std::string name = get_str(p, key); name != "none" && name != "key") {
      try {
        parse_quantizer(name);
      } catch (const InputError& e) {
        return {key, e.what()};
      }
    }
  // PCRE2, nesting bounded: a deep pattern is an error, not a crash.
  for (const char* key : {"kv_layers", "include", "exclude"}) {
    try {
      NamePattern check(get_str(p, key));
    } catch (const InputError& e) {
      return {key, e.what()};
    }
  }
  return {};
}

}  // namespace

DataSource model_source() {
  return {"model", "a real model's perplexity and KL-divergence with its linear layers quantized (eval/model_eval)",
       ParamSchema({
           {.name = "model", .kind = K::text, .default_value = std::string("stories260k"),
            .description = "GGUF file, Hugging Face folder, stories260k or smollm2-135m"},
           {.name = "corpus", .kind = K::text, .default_value = std::string("wikitext-2-test"),
            .description = "text file, or wikitext-2-test (../shared/data/wikitext-2-raw/wiki.test.raw)", .evaluation_only = true},
           {.name = "method", .kind = K::choice, .default_value = std::string("llamacpp"),
            .description = "llamacpp: chunks, second half scored; windowed: every token of each window scored",
            .choices = {"llamacpp", "windowed"}, .evaluation_only = true},
           {.name = "ctx", .kind = K::integer, .default_value = std::int64_t{512}, .description = "tokens per chunk",
            .min = 8, .max = 1 << 16, .evaluation_only = true},
           {.name = "chunks", .kind = K::integer, .default_value = std::int64_t{20},
            .description = "chunks (windows) to score; 0 = the whole corpus", .min = 0, .max = 1 << 20, .evaluation_only = true},
           {.name = "include", .kind = K::text,
            .default_value = std::string(kBlockLinearLayers),
            .description = "regex over tensor names to quantize (default: every linear layer in the blocks)", .evaluation_only = true},
           {.name = "exclude", .kind = K::text, .default_value = std::string("^$"),
            .description = "regex over tensor names to keep in full precision", .evaluation_only = true},
           // The exact reference by default: fused_i16 moves SmolLM2's 20-chunk perplexity by +0.003 and fused_i8
           // by +0.075 (docs/PERF.md), and with the OpenBLAS dense path the reference is also the fastest at
           // prefill (512-token chunks). The fused kernels are named for speed and memory measurements.
           {.name = "kernel", .kind = K::choice, .default_value = std::string("dequantized_dense"),
            .description = "kernel of the quantized layers (kernels/registry.hpp); default: the exact reference "
                           "(dequantize, then dense); auto = fastest supported for decode",
            .choices = linear_kernel_names(), .evaluation_only = true},
           // KV-cache quantization (models/kv_quant.hpp). Evaluation-only: the weights' seeds do not change
           // with the cache's configuration, so a sweep over both pairs every cache with the same weights.
           {.name = "kv_key", .kind = K::text, .default_value = std::string("none"),
            .description = "quantizer of each key vector (one-line name, e.g. turboquant(bits=3,group=row)); none = fp32",
            .evaluation_only = true},
           {.name = "kv_value", .kind = K::text, .default_value = std::string("none"),
            .description = "quantizer of each value vector; none = fp32; key = the same as kv_key", .evaluation_only = true},
           {.name = "kv_key_axis", .kind = K::choice, .default_value = std::string("token"),
            .description = "token: each key vector on its own; channel: KIVI, each channel over blocks of kv_block tokens "
                           "(the unfinished block stays fp32)", .choices = {"token", "channel"}, .evaluation_only = true},
           {.name = "kv_block", .kind = K::integer, .default_value = std::int64_t{32},
            .description = "kv_key_axis channel: tokens per block", .min = 2, .max = 4096, .evaluation_only = true},
           {.name = "kv_outliers", .kind = K::integer, .default_value = std::int64_t{0},
            .description = "channels per head (largest mean |x| on the first chunk) through kv_outlier_key/value: "
                           "TurboQuant's mixed precision", .min = 0, .max = 4096, .evaluation_only = true},
           {.name = "kv_outlier_key", .kind = K::text, .default_value = std::string("none"),
            .description = "quantizer of the keys' outlier channels; none = fp32", .evaluation_only = true},
           {.name = "kv_outlier_value", .kind = K::text, .default_value = std::string("none"),
            .description = "quantizer of the values' outlier channels; none = fp32; key = as kv_outlier_key", .evaluation_only = true},
           {.name = "kv_layers", .kind = K::text, .default_value = std::string(".*"),
            .description = "regex over blk.N: the layers whose cache is quantized", .evaluation_only = true},
           {.name = "device", .kind = K::choice, .default_value = std::string("cpu"),
            .description = "where the forward runs: cpu (fp32, the reference); cuda (the whole block on the GPU: bf16 weights, "
                           "fp32 activations, tensor-core attention; quantized layers dequantized to bf16, or packed with kernel "
                           "cuda_lut_mma); cuda-fp32 (fp32 weights and attention: agreement)",
            .choices = {"cpu", "cuda", "cuda-fp32"}, .evaluation_only = true, .named_when_set = true},
           {.name = "group_fallback", .kind = K::choice, .default_value = std::string("none"),
            .description = "a layer whose width the quantizer's group does not divide: none (an error naming the layer) or halve "
                           "(the largest power-of-two group below that divides it; the row's layer_quantizers says where)",
            .choices = {"none", "halve"}, .named_when_set = true},
           // A calibrated quantizer's text (gptq): changes the weights, so not evaluation-only; named in the data when set.
           {.name = "calibration_corpus", .kind = K::text, .default_value = std::string(""),
            .description = "calibrated quantizers (gptq): text whose last calibration_chunks chunks give each layer's input "
                           "statistics; empty = the end of corpus, clear of the chunks it scores", .named_when_set = true},
           {.name = "calibration_chunks", .kind = K::integer, .default_value = std::int64_t{16},
            .description = "calibration chunks (sequences)", .min = 1, .max = 1 << 16, .named_when_set = true},
           {.name = "calibration_ctx", .kind = K::integer, .default_value = std::int64_t{512},
            .description = "tokens per calibration chunk", .min = 8, .max = 1 << 16, .named_when_set = true},
           {.name = "calibration_order", .kind = K::choice, .default_value = std::string("sequential"),
            .description = "sequential: each block's statistics after the blocks before it are quantized (GPTQ's order); "
                           "independent: every layer's from the unquantized model", .choices = {"sequential", "independent"},
            .named_when_set = true},
           {.name = "calibration_held_out", .kind = K::integer, .default_value = std::int64_t{4},
            .description = "chunks just before the calibration chunks on which layer_output_error is measured (the "
                           "unquantized model's inputs, unseen by the calibration)", .min = 0, .max = 1 << 16, .evaluation_only = true},
           {.name = "kv_scores", .kind = K::choice, .default_value = std::string("dequantized"),
            .description = "attention scores from the dequantized cache (the reference) or from the key codes "
                           "(estimator: turboquant_prod's and qjl's unbiased inner products, through fused_lut)",
            .choices = {"dequantized", "estimator"}, .evaluation_only = true},
       }),
       // No single matrix: each layer's shape is checked when the model is quantized.
       {},
       {},
       // The weights and the corpus are what they are; a quantized KV cache draws rotations from the seed.
       [](const Params& p) {
         for (const char* key : {"kv_key", "kv_value", "kv_outlier_key", "kv_outlier_value"}) {
           const std::string& name = get_str(p, key);
           if (name != "none" && name != "key" && parse_quantizer(name)->uses_seed()) return true;
         }
         return false;
       },
       DataKind::model, check_model_params};
}

ModelPointSpec model_point_spec(const Params& dp) {
  ModelPointSpec s;
  s.model = get_str(dp, "model");
  s.corpus = get_str(dp, "corpus");
  s.method = get_str(dp, "method");
  s.ctx = static_cast<int>(get_int(dp, "ctx"));
  s.chunks = static_cast<int>(get_int(dp, "chunks"));
  s.include = get_str(dp, "include");
  s.exclude = get_str(dp, "exclude");
  s.kernel = get_str(dp, "kernel");
  s.group_fallback = parse_group_fallback(get_str(dp, "group_fallback"));
  s.device = get_str(dp, "device");
  s.calibration.corpus = get_str(dp, "calibration_corpus");
  s.calibration.chunks = static_cast<int>(get_int(dp, "calibration_chunks"));
  s.calibration.ctx = static_cast<int>(get_int(dp, "calibration_ctx"));
  s.calibration.sequential = get_str(dp, "calibration_order") == "sequential";
  s.calibration.held_out = static_cast<int>(get_int(dp, "calibration_held_out"));
  s.kv.key = get_str(dp, "kv_key");
  s.kv.value = get_str(dp, "kv_value");
  s.kv.key_axis = get_str(dp, "kv_key_axis");
  s.kv.block = static_cast<int>(get_int(dp, "kv_block"));
  s.kv.outliers = static_cast<int>(get_int(dp, "kv_outliers"));
  s.kv.outlier_key = get_str(dp, "kv_outlier_key");
  s.kv.outlier_value = get_str(dp, "kv_outlier_value");
  s.kv.layers = get_str(dp, "kv_layers");
  s.kv.scores = get_str(dp, "kv_scores");
  return s;
}

}  // namespace tqb
