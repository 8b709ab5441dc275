// Y = X Ŵᵀ kernels on real layer shapes (Llama-3-8B's 4096×4096, 14336×4096 and 4096×14336; rows =
// outputs × inputs) at batch n = 1, 4, 16 (and 512 for prefill at 4096 × 4096): the fused LUT kernel at the CPU's SIMD level against the
// dense fp32 Eigen product in the same binary. Counters: weight GB/s (bytes of the format read per
// second, decimal) and GFLOP/s (2·rows·cols·n per call). Each fused kernel is checked against the
// reference before timing.
#include <benchmark/benchmark.h>

#include <map>
#include <stdexcept>

#include "common/rng.hpp"
#include "kernels/registry.hpp"
#include "kernels/linear.hpp"
#include "quantizers/registry.hpp"

namespace {

tqb::Matrix random_matrix(std::size_t rows, std::size_t cols, std::uint64_t seed) {
  tqb::Matrix m(rows, cols);
  tqb::Rng rng(seed);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<float>(0.02 * rng.normal());
  return m;
}

const tqb::Matrix& weights(std::size_t rows, std::size_t cols) {
  static std::map<std::pair<std::size_t, std::size_t>, tqb::Matrix> cache;
  auto& m = cache[{rows, cols}];
  if (m.size() == 0) m = random_matrix(rows, cols, rows * 31 + cols);
  return m;
}

void run(benchmark::State& state, const tqb::Linear& k) {
  const std::size_t n = state.range(2);
  const tqb::Matrix x = random_matrix(n, k.in(), 5);
  tqb::Matrix y(n, k.out());
  for (auto _ : state) {
    k.forward(x.data(), n, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["weight_GB/s"] = benchmark::Counter(static_cast<double>(k.weight_bytes()),
                                                     benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * k.in() * k.out() * n * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(k.kernel());
}

void BM_Dense(benchmark::State& state) {
  const tqb::Matrix& w = weights(state.range(0), state.range(1));
  const auto k = tqb::make_dense_linear(w);
  run(state, *k);
}

void BM_Fused(benchmark::State& state, const std::string& name, const std::string& kernel) {
  const tqb::Matrix& w = weights(state.range(0), state.range(1));
  auto q = tqb::parse_quantizer(name);
  const auto qm = q->quantize(w.data(), w.rows(), w.cols(), 3);
  const auto fused = tqb::make_linear(kernel, *q, qm);
  {
    const auto ref = tqb::make_dequantized_linear(*q, qm);
    const tqb::Matrix x = random_matrix(2, w.cols(), 9);
    tqb::Matrix a(2, w.rows()), b(2, w.rows());
    ref->forward(x.data(), 2, a.data());
    fused->forward(x.data(), 2, b.data());
    const double tolerance = kernel == "fused_i16" ? 2e-3 : 1e-5;  // integer activations: 2e-3
    if (!((a - b).norm() <= tolerance * a.norm())) throw std::runtime_error(name + ": fused result differs from the reference");
  }
  run(state, *fused);
}

void shapes(benchmark::internal::Benchmark* b) {
  for (auto [rows, cols] : {std::pair{4096, 4096}, std::pair{14336, 4096}, std::pair{4096, 14336}})
    for (int n : {1, 4, 16}) b->Args({rows, cols, n});
  b->Args({4096, 4096, 512});  // prefill
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}

}  // namespace

BENCHMARK(BM_Dense)->Apply(shapes);
const std::string kTq4 = "turboquant(bits=4,group=128,rotation=hadamard,codebook=gaussian)";
const std::string kRtn4 = "rtn(bits=4,group=128,mode=asym)";
const std::string kRes44 = "residual(stack=4+4,group=128,rotation=hadamard,codebook=gaussian)";
BENCHMARK_CAPTURE(BM_Fused, turboquant4_g128_lut, kTq4, std::string("fused_lut"))->Apply(shapes);
BENCHMARK_CAPTURE(BM_Fused, turboquant4_g128_i16, kTq4, std::string("fused_i16"))->Apply(shapes);
BENCHMARK_CAPTURE(BM_Fused, rtn4_g128_i16, kRtn4, std::string("fused_i16"))->Apply(shapes);
BENCHMARK_CAPTURE(BM_Fused, residual_4p4_g128_i16, kRes44, std::string("fused_i16"))->Apply(shapes);

BENCHMARK_MAIN();
