// Forward-pass speed of real models on the CPU: prefill of a 512-token context and decoding one token
// with a 511-token cache; fp32 weights against turboquant 4-bit g64 weights run by the `auto` kernel
// (fused_i16) and by the reference ("dequantize, then dense"), in the same binary.
// Counter tokens/s; models that are absent (run scripts/setup.sh) are skipped with a message.
#include <benchmark/benchmark.h>

#include <filesystem>
#include <map>
#include <memory>

#include "eval/model_eval.hpp"
#include "models/checkpoint.hpp"
#include "models/llama.hpp"
#include "quantizers/registry.hpp"

namespace {

struct Loaded {
  tqb::Checkpoint ck;
  std::unique_ptr<tqb::LlamaModel> fp32;
  std::map<std::string, std::unique_ptr<tqb::LlamaModel>> quantized;  // by kernel
};

Loaded* load(const std::string& name) {
  static std::map<std::string, std::unique_ptr<Loaded>> cache;
  auto& slot = cache[name];
  if (!slot) {
    try {
      auto l = std::make_unique<Loaded>();
      l->ck = tqb::load_checkpoint(name);
      l->fp32 = std::make_unique<tqb::LlamaModel>(l->ck);
      auto q = tqb::parse_quantizer("turboquant(bits=4,group=64,codebook=gaussian,rotation=hadamard)");
      for (const std::string kernel : {"auto", "dequantized_dense", "fused_i8"})
        l->quantized[kernel] = tqb::quantize_model(l->ck, *q, 1, {.kernel = kernel});
      slot = std::move(l);
    } catch (const std::exception& e) {
      return nullptr;
    }
  }
  return slot.get();
}

// kernel: "" for the fp32 model, else the kernel the quantized layers run.
const tqb::LlamaModel& model(const Loaded& l, const std::string& kernel) { return kernel.empty() ? *l.fp32 : *l.quantized.at(kernel); }

// last_only: logits for the last position only, as llama-bench's pp test and generation compute them;
// otherwise for all 512, as perplexity needs.
void prefill(benchmark::State& state, const std::string& name, const std::string& kernel, bool last_only) {
  Loaded* l = load(name);
  if (!l) return state.SkipWithError(("model " + name + " not available (run scripts/setup.sh)").c_str());
  const tqb::LlamaModel& m = model(*l, kernel);
  const int ctx = static_cast<int>(state.range(0));
  std::vector<int> tokens(ctx);
  for (int i = 0; i < ctx; ++i) tokens[i] = 1 + (i * 7919) % (m.config().vocab - 1);
  for (auto _ : state) {
    tqb::KvCache c = m.new_cache(ctx);
    benchmark::DoNotOptimize(m.forward(tokens, c, last_only ? 1 : 0).data());
  }
  state.counters["tokens/s"] = benchmark::Counter(ctx, benchmark::Counter::kIsIterationInvariantRate);
}
void BM_Prefill(benchmark::State& state, const std::string& name, const std::string& kernel) { prefill(state, name, kernel, false); }
void BM_PrefillLast(benchmark::State& state, const std::string& name, const std::string& kernel) { prefill(state, name, kernel, true); }

void BM_Decode(benchmark::State& state, const std::string& name, const std::string& kernel) {
  Loaded* l = load(name);
  if (!l) return state.SkipWithError(("model " + name + " not available (run scripts/setup.sh)").c_str());
  const tqb::LlamaModel& m = model(*l, kernel);
  const int ctx = static_cast<int>(state.range(0));
  std::vector<int> tokens(ctx - 1);
  for (int i = 0; i < ctx - 1; ++i) tokens[i] = 1 + (i * 7919) % (m.config().vocab - 1);
  tqb::KvCache c = m.new_cache(ctx);
  m.forward(tokens, c);
  for (auto _ : state) {
    c.len = ctx - 1;  // decode the last position again each iteration
    benchmark::DoNotOptimize(m.forward({5}, c).data());
  }
  state.counters["tokens/s"] = benchmark::Counter(1, benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

BENCHMARK_CAPTURE(BM_Prefill, smollm2_fp32, std::string("smollm2-135m"), std::string())->Arg(512)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Prefill, smollm2_turboquant4_auto, std::string("smollm2-135m"), std::string("auto"))->Arg(512)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Prefill, smollm2_turboquant4_dequantized, std::string("smollm2-135m"), std::string("dequantized_dense"))->Arg(512)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Prefill, smollm2_turboquant4_fused_i8, std::string("smollm2-135m"), std::string("fused_i8"))->Arg(512)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_PrefillLast, smollm2_fp32, std::string("smollm2-135m"), std::string())->Arg(512)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_PrefillLast, smollm2_turboquant4_auto, std::string("smollm2-135m"), std::string("auto"))->Arg(512)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_PrefillLast, smollm2_turboquant4_fused_i8, std::string("smollm2-135m"), std::string("fused_i8"))->Arg(512)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Decode, smollm2_fp32, std::string("smollm2-135m"), std::string())->Arg(512)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Decode, smollm2_turboquant4_auto, std::string("smollm2-135m"), std::string("auto"))->Arg(512)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Decode, smollm2_turboquant4_fused_i8, std::string("smollm2-135m"), std::string("fused_i8"))->Arg(512)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Decode, smollm2_turboquant4_dequantized, std::string("smollm2-135m"), std::string("dequantized_dense"))->Arg(512)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Prefill, stories260k_fp32, std::string("stories260k"), std::string())->Arg(512)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_MAIN();
