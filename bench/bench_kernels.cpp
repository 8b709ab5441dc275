// Y = X Ŵᵀ kernels on real layer shapes (rows = outputs × inputs): SmolLM2-135M (576×576, 1536×576,
// 576×1536), Qwen3-0.6B (2048×1024, 1024×2048, 3072×1024, 1024×3072) and Llama-3-8B (4096×4096,
// 14336×4096, 4096×14336), at batch n = 1, 4, 16 and 512, against the dense fp32 Eigen product in the
// same binary (and Eigen's plain product, BM_DensePlain, for reference).
//
// Counters: weight_GB/s (bytes the kernel holds for the weights, read once per call, decimal),
// GFLOP/s (2·rows·cols·n per call) and x_dense: the dense fp32 product's time per call for the same
// shape and batch in this process (BM_Dense's, or five calls timed on the spot when it was filtered
// out) divided by this benchmark's — the ratio the targets are stated in. The dense baseline
// splits W's rows over the threads below 32 columns (kernels/linear.cpp), Eigen's GEMM above.
// Groups are 128 columns where they divide the layer width, else 64 (SmolLM2's 576).
// Each kernel is checked against the reference (dequantize, then dense) before timing.
//
// BM_Cold rotates through four independently quantized copies of the 4096×14336 layer (124 MB in all,
// four times this machine's L3), so the codes come from DRAM as they would in a model's forward pass,
// where the other layers evict them; the plain benchmarks reuse one copy, which a 32 MB L3 can
// partly hold.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <stdexcept>
#include <tuple>
#include <vector>

#include "common/rng.hpp"
#include "kernels/linear.hpp"
#include "kernels/registry.hpp"
#include "quantizers/registry.hpp"

namespace {

using Clock = std::chrono::steady_clock;

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

std::string with_group(const std::string& format, std::size_t cols) {
  const std::string group = cols % 128 == 0 ? "128" : "64";
  const auto at = format.find("group=G");
  return at == std::string::npos ? format : format.substr(0, at) + "group=" + group + format.substr(at + 7);
}

using ShapeKey = std::tuple<std::size_t, std::size_t, std::size_t>;  // rows, cols, n
std::map<ShapeKey, double>& dense_cache() {
  static std::map<ShapeKey, double> cache;
  return cache;
}

// Seconds per call of the dense fp32 product for (rows, cols, n): BM_Dense's own mean when it ran in
// this process (so that x_dense agrees with the BM_Dense line), else the median of five calls.
double dense_seconds(std::size_t rows, std::size_t cols, std::size_t n) {
  auto& cache = dense_cache();
  const auto key = std::make_tuple(rows, cols, n);
  if (auto it = cache.find(key); it != cache.end()) return it->second;
  const auto dense = tqb::make_dense_linear(weights(rows, cols));
  const tqb::Matrix x = random_matrix(n, cols, 5);
  tqb::Matrix y(n, rows);
  dense->forward(x.data(), n, y.data());
  std::vector<double> s;
  for (int i = 0; i < 5; ++i) {
    const auto t0 = Clock::now();
    dense->forward(x.data(), n, y.data());
    s.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  std::sort(s.begin(), s.end());
  return cache[key] = s[2];
}

// Times forward over `layers` in turn (one per iteration), sets the counters and returns seconds per call.
double run(benchmark::State& state, const std::vector<const tqb::Linear*>& layers, bool ratio) {
  const tqb::Linear& k = *layers.front();
  const std::size_t n = state.range(2);
  const tqb::Matrix x = random_matrix(n, k.in(), 5);
  tqb::Matrix y(n, k.out());
  const double dense_s = ratio ? dense_seconds(k.out(), k.in(), n) : 0.0;
  std::size_t i = 0;
  const auto t0 = Clock::now();
  for (auto _ : state) {
    layers[i++ % layers.size()]->forward(x.data(), n, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  const double per_call = std::chrono::duration<double>(Clock::now() - t0).count() / static_cast<double>(state.iterations());
  state.counters["weight_GB/s"] = benchmark::Counter(static_cast<double>(k.weight_bytes()),
                                                     benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * k.in() * k.out() * n * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  if (ratio) state.counters["x_dense"] = dense_s / per_call;
  state.SetLabel(k.kernel());
  return per_call;
}

void BM_Dense(benchmark::State& state) {
  const auto k = tqb::make_dense_linear(weights(state.range(0), state.range(1)));
  dense_cache()[{state.range(0), state.range(1), state.range(2)}] = run(state, {k.get()}, false);
}

// Eigen's product exactly as written, Y = X Wᵀ: one thread for a GEMV, heavy packing for thin GEMMs.
// Shown beside the baseline so that ratios against it can be read off; not the baseline.
class PlainEigenLinear final : public tqb::Linear {
 public:
  explicit PlainEigenLinear(const tqb::Matrix& w) : w_(w) {}
  std::size_t in() const override { return w_.cols(); }
  std::size_t out() const override { return w_.rows(); }
  void forward(const float* x, std::size_t n, float* y) const override {
    Eigen::Map<tqb::Matrix>(y, n, out()).noalias() = Eigen::Map<const tqb::Matrix>(x, n, in()) * w_.transpose();
  }
  std::size_t weight_bytes() const override { return static_cast<std::size_t>(w_.size()) * sizeof(float); }
  std::string kernel() const override { return "eigen_plain"; }

 private:
  const tqb::Matrix& w_;
};

void BM_DensePlain(benchmark::State& state) {
  const PlainEigenLinear k(weights(state.range(0), state.range(1)));
  run(state, {&k}, true);
}

// One quantized layer per (format, kernel, shape, copy), built once and checked against the reference.
const tqb::Linear& layer(const std::string& format, const std::string& kernel, std::size_t rows, std::size_t cols, int copy = 0) {
  static std::map<std::tuple<std::string, std::string, std::size_t, std::size_t, int>, std::unique_ptr<tqb::Linear>> cache;
  auto& slot = cache[{format, kernel, rows, cols, copy}];
  if (slot) return *slot;
  const tqb::Matrix& w = weights(rows, cols);
  const std::string name = with_group(format, cols);
  auto q = tqb::parse_quantizer(name);
  const auto qm = q->quantize(w.data(), w.rows(), w.cols(), 3 + copy);
  slot = tqb::make_linear(kernel, *q, qm);
  const auto ref = tqb::make_dequantized_linear(*q, qm);
  for (std::size_t n : {std::size_t{1}, std::size_t{5}, std::size_t{40}}) {
    const tqb::Matrix x = random_matrix(n, w.cols(), 9);
    tqb::Matrix a(n, w.rows()), b(n, w.rows());
    ref->forward(x.data(), n, a.data());
    slot->forward(x.data(), n, b.data());
    // Integer activations: 2e-3 for fused_i16's 14 bits, 2e-2 for fused_i8's int8 (as in tests/test_kernels.cpp).
    const std::string used = slot->kernel();
    const double tolerance = used.rfind("fused_i8", 0) == 0 ? 2e-2 : used.rfind("fused_i16", 0) == 0 ? 2e-3 : 1e-5;
    if (!((a - b).norm() <= tolerance * a.norm()))
      throw std::runtime_error(name + " with " + kernel + ": result differs from the reference at n = " + std::to_string(n));
  }
  return *slot;
}

void BM_Fused(benchmark::State& state, const std::string& format, const std::string& kernel) {
  run(state, {&layer(format, kernel, state.range(0), state.range(1))}, true);
}

void BM_Cold(benchmark::State& state, const std::string& format) {
  std::vector<const tqb::Linear*> copies;
  for (int c = 0; c < 4; ++c) copies.push_back(&layer(format, "auto", state.range(0), state.range(1), c));
  run(state, copies, true);
}

void shapes(benchmark::internal::Benchmark* b) {
  const std::vector<std::pair<int, int>> all{
      {576, 576},   {1536, 576},  {576, 1536},                  // SmolLM2-135M: q/o, gate/up, down
      {2048, 1024}, {1024, 2048}, {3072, 1024}, {1024, 3072},   // Qwen3-0.6B: q, o, gate/up, down
      {4096, 4096}, {14336, 4096}, {4096, 14336}};              // Llama-3-8B: q/o, gate/up, down
  for (auto [rows, cols] : all)
    for (int n : {1, 4, 16, 512}) b->Args({rows, cols, n});
  b->Unit(benchmark::kMicrosecond)->UseRealTime();
}

const std::string kTq4 = "turboquant(bits=4,group=G,rotation=hadamard,codebook=gaussian)";
const std::string kTq3 = "turboquant(bits=3,group=G,rotation=hadamard,codebook=gaussian)";
const std::string kRtn4 = "rtn(bits=4,group=G,mode=asym)";
const std::string kRes44 = "residual(stack=4+4,group=G,rotation=hadamard,codebook=gaussian)";

}  // namespace

BENCHMARK(BM_Dense)->Apply(shapes);
BENCHMARK(BM_DensePlain)->Apply(shapes);
BENCHMARK_CAPTURE(BM_Fused, turboquant4_auto, kTq4, std::string("auto"))->Apply(shapes);
BENCHMARK_CAPTURE(BM_Fused, turboquant4_fused_lut, kTq4, std::string("fused_lut"))->Apply(shapes);
BENCHMARK_CAPTURE(BM_Fused, turboquant4_fused_i8, kTq4, std::string("fused_i8"))->Apply(shapes);
BENCHMARK_CAPTURE(BM_Fused, rtn4_auto, kRtn4, std::string("auto"))->Apply(shapes);
BENCHMARK_CAPTURE(BM_Fused, residual_4p4_auto, kRes44, std::string("auto"))->Apply(shapes);
BENCHMARK_CAPTURE(BM_Fused, turboquant3_auto, kTq3, std::string("auto"))->Apply(shapes);
BENCHMARK_CAPTURE(BM_Cold, turboquant4_auto, kTq4)->Args({4096, 14336, 1})->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Cold, residual_4p4_auto, kRes44)->Args({4096, 14336, 1})->Unit(benchmark::kMicrosecond)->UseRealTime();

BENCHMARK_MAIN();
