#include "harness/data_source.hpp"

#include <cmath>

#include "common/rng.hpp"
#include "harness/model_eval.hpp"
#include "kernels/registry.hpp"
#include "quantizers/registry.hpp"

namespace tqb {
namespace {

using K = ParamSpec::Kind;

ParamSpec rows_spec() {
  return {.name = "rows", .kind = K::integer, .default_value = std::int64_t{256},
          .description = "rows (output channels, or vectors)", .min = 1, .max = 1 << 24};
}
ParamSpec cols_spec() {
  return {.name = "cols", .kind = K::integer, .default_value = std::int64_t{1024},
          .description = "columns (input channels, or dimension d)", .min = 1, .max = 1 << 24};
}

std::pair<std::size_t, std::size_t> shape_of(const Params& p) {
  return {static_cast<std::size_t>(get_int(p, "rows")), static_cast<std::size_t>(get_int(p, "cols"))};
}

// Each row has its own stream derived from (seed, row), so the matrix is the same whatever the
// thread count and rows can be generated in parallel.
template <class Fill>
Matrix generate(const Params& p, std::uint64_t seed, Fill fill) {
  const auto shape = shape_of(p);
  const std::size_t rows = shape.first, cols = shape.second;  // not a structured binding: OpenMP captures them (clang 14)
  Matrix m(rows, cols);
#pragma omp parallel for schedule(static)
  for (std::ptrdiff_t r = 0; r < static_cast<std::ptrdiff_t>(rows); ++r) {
    std::uint64_t st = seed ^ (0x9E3779B97F4A7C15ull * static_cast<std::uint64_t>(r + 1));
    Rng rng(splitmix64(st));
    fill(rng, m.row(r).data(), cols);
  }
  return m;
}

}  // namespace

Matrix random_unit_rows(std::size_t n, std::size_t d, std::uint64_t seed) {
  Params p{{"rows", static_cast<std::int64_t>(n)}, {"cols", static_cast<std::int64_t>(d)}};
  return generate(p, seed, [](Rng& rng, float* x, std::size_t c) {
    double norm2 = 0;
    std::vector<double> v(c);
    for (std::size_t i = 0; i < c; ++i) {
      v[i] = rng.normal();
      norm2 += v[i] * v[i];
    }
    const double inv = 1.0 / std::sqrt(norm2);
    for (std::size_t i = 0; i < c; ++i) x[i] = static_cast<float>(v[i] * inv);
  });
}

const std::vector<DataSource>& data_sources() {
  // To add a data source: a schema, a shape and a generator here (or a loader in models/).
  static const std::vector<DataSource> sources{
      {"gaussian", "i.i.d. N(0, std^2) entries", ParamSchema({rows_spec(), cols_spec(),
        {.name = "std", .kind = K::real, .default_value = 1.0, .description = "standard deviation",
         .min = 1e-30, .max = 1e30}}),
       shape_of,
       [](const Params& p, std::uint64_t seed) {
         const double sd = get_real(p, "std");
         return generate(p, seed, [sd](Rng& rng, float* x, std::size_t c) {
           for (std::size_t i = 0; i < c; ++i) x[i] = static_cast<float>(sd * rng.normal());
         });
       }},
      {"sphere", "rows uniform on the unit sphere S^(cols-1)", ParamSchema({rows_spec(), cols_spec()}), shape_of,
       [](const Params& p, std::uint64_t seed) {
         const auto [rows, cols] = shape_of(p);
         return random_unit_rows(rows, cols, seed);
       }},
      {"student_t", "i.i.d. Student-t entries with nu degrees of freedom (heavy-tailed weights)",
       ParamSchema({rows_spec(), cols_spec(),
                    {.name = "nu", .kind = K::integer, .default_value = std::int64_t{3},
                     .description = "degrees of freedom (smaller = heavier tails)", .min = 1, .max = 1000}}),
       shape_of,
       [](const Params& p, std::uint64_t seed) {
         const double nu = static_cast<double>(get_int(p, "nu"));
         return generate(p, seed, [nu](Rng& rng, float* x, std::size_t c) {
           for (std::size_t i = 0; i < c; ++i) x[i] = static_cast<float>(rng.student_t(nu));
         });
       }},
      {"model", "a real model's perplexity and KL-divergence with its linear layers quantized (harness/model_eval)",
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
           {.name = "kv_scores", .kind = K::choice, .default_value = std::string("dequantized"),
            .description = "attention scores from the dequantized cache (the reference) or from the key codes "
                           "(estimator: turboquant_prod's and qjl's unbiased inner products, through fused_lut)",
            .choices = {"dequantized", "estimator"}, .evaluation_only = true},
       }),
       // {0, 0}: no single matrix; each layer's shape is checked when the model is quantized.
       [](const Params&) { return std::pair<std::size_t, std::size_t>{0, 0}; },
       [](const Params&, std::uint64_t) -> Matrix {
         throw std::logic_error("the model source is evaluated by harness/model_eval, not as a matrix");
       },
       // The weights and the corpus are what they are; a quantized KV cache draws rotations from the seed.
       [](const Params& p) {
         for (const char* key : {"kv_key", "kv_value", "kv_outlier_key", "kv_outlier_value"}) {
           const std::string& name = get_str(p, key);
           if (name != "none" && name != "key" && parse_quantizer(name)->uses_seed()) return true;
         }
         return false;
       }},
  };
  return sources;
}

const DataSource* find_data_source(const std::string& name) {
  for (const auto& s : data_sources())
    if (s.name == name) return &s;
  return nullptr;
}

std::vector<std::string> data_source_names() {
  std::vector<std::string> out;
  for (const auto& s : data_sources()) out.push_back(s.name);
  return out;
}

}  // namespace tqb
