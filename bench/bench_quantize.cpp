// Quantization throughput on a Llama-3-8B-sized weight matrix (4096 x 14336 fp32, 235 MB).
// Counter "input_GB/s": fp32 input bytes quantized per second (decimal GB), rotation included.
// Baselines in the same run: reading the matrix once (memory bandwidth: the roofline) and RTN.
// Each benchmark checks its result against the reference dequantizer once, before timing. Last, GPTQ's factor of the
// inverse Hessian against the reference implementation's steps.
#include <benchmark/benchmark.h>

#include <cmath>
#include <map>
#include <stdexcept>

#include "common/rng.hpp"
#include "harness/data_source.hpp"
#include "quantizers/gptq.hpp"
#include "quantizers/registry.hpp"

namespace {

constexpr std::size_t kRows = 4096, kCols = 14336;

const tqb::Matrix& weights() {
  static const tqb::Matrix w = [] {
    tqb::Params p{{"rows", std::int64_t{kRows}}, {"cols", std::int64_t{kCols}}, {"std", 0.02}};
    return tqb::find_data_source("gaussian")->make(p, 1);
  }();
  return w;
}

void set_counters(benchmark::State& state) {
  const double bytes = static_cast<double>(kRows * kCols * sizeof(float));
  state.counters["input_GB/s"] = benchmark::Counter(bytes, benchmark::Counter::kIsIterationInvariantRate,
                                                    benchmark::Counter::kIs1000);
  state.counters["matrix_s"] = benchmark::Counter(1.0, benchmark::Counter::kIsIterationInvariantRate |
                                                           benchmark::Counter::kInvert);
}

void BM_ReadMatrix(benchmark::State& state) {
  const tqb::Matrix& w = weights();
  for (auto _ : state) {
    double s = 0;
#pragma omp parallel for reduction(+ : s) schedule(static)
    for (std::ptrdiff_t r = 0; r < static_cast<std::ptrdiff_t>(kRows); ++r) s += w.row(r).sum();
    benchmark::DoNotOptimize(s);
  }
  set_counters(state);
}

void BM_Quantize(benchmark::State& state, const std::string& name) {
  const tqb::Matrix& w = weights();
  auto q = tqb::parse_quantizer(name);
  {
    // Check once, outside the timing: the round trip's relative error is what the format promises.
    const auto qm = q->quantize(w.data(), kRows, kCols, 7);
    tqb::Matrix back(kRows, kCols);
    q->dequantize(qm, back.data());
    const double rel = (w - back).cast<double>().squaredNorm() / w.cast<double>().squaredNorm();
    if (!(rel < 0.02)) throw std::runtime_error(name + ": round-trip error too large");
    state.SetLabel(name);
  }
  for (auto _ : state) {
    auto qm = q->quantize(w.data(), kRows, kCols, 7);
    benchmark::DoNotOptimize(qm.codes.data());
  }
  set_counters(state);
}

}  // namespace

BENCHMARK(BM_ReadMatrix)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Quantize, rtn_4bit_g128, std::string("rtn(bits=4,group=128,mode=sym,scale=fp16)"))
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Quantize, turboquant_4bit_g128_hadamard,
                  std::string("turboquant(bits=4,group=128,rotation=hadamard,codebook=gaussian)"))
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Quantize, turboquant_4bit_g128_haar,
                  std::string("turboquant(bits=4,group=128,rotation=haar,codebook=gaussian)"))
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Quantize, residual_4p4_g128_hadamard,
                  std::string("residual(stack=4+4,group=128,rotation=hadamard,codebook=gaussian)"))
    ->Unit(benchmark::kMillisecond)->UseRealTime();

// GPTQ's factor of the inverse Hessian (quantizers/gptq.hpp) at a 4096-input layer (Llama-3-8B's q/k/v/o, gate/up),
// against the reference implementation's three steps (Cholesky, H⁻¹, Cholesky of H⁻¹) in the same run. Counter
// "max_rel_diff": the largest difference of the two factors relative to the reference's largest entry.
const Eigen::MatrixXd& hessian(Eigen::Index c) {
  static std::map<Eigen::Index, Eigen::MatrixXd> cache;
  auto it = cache.find(c);
  if (it == cache.end()) {
    tqb::Params p{{"rows", std::int64_t{c + 256}}, {"cols", std::int64_t{c}}, {"std", 1.0}};
    const Eigen::MatrixXd x = tqb::find_data_source("gaussian")->make(p, 3).cast<double>();
    Eigen::MatrixXd h = x.transpose() * x;
    h.diagonal().array() += 0.01 * h.diagonal().mean();
    it = cache.emplace(c, std::move(h)).first;
  }
  return it->second;
}

Eigen::MatrixXd reference_factor(const Eigen::MatrixXd& h) {
  const Eigen::MatrixXd hinv = Eigen::LLT<Eigen::MatrixXd>(h).solve(Eigen::MatrixXd::Identity(h.rows(), h.cols()));
  return Eigen::LLT<Eigen::MatrixXd>(hinv).matrixU();
}

void BM_GptqFactor(benchmark::State& state) {
  const Eigen::MatrixXd& h = hessian(state.range(0));
  const bool reference = state.range(1) != 0;
  Eigen::MatrixXd u;
  for (auto _ : state) {
    u = reference ? reference_factor(h) : tqb::inverse_hessian_factor(h);
    benchmark::DoNotOptimize(u.data());
  }
  const Eigen::MatrixXd other = reference ? tqb::inverse_hessian_factor(h) : reference_factor(h);
  state.counters["max_rel_diff"] = (u - other).cwiseAbs().maxCoeff() / u.cwiseAbs().maxCoeff();
  state.SetLabel(reference ? "reference: LLT, solve(I), LLT" : "tqbench: tiled Cholesky of J H J, L^-1");
}

BENCHMARK(BM_GptqFactor)->ArgsProduct({{1024, 4096}, {1, 0}})->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(1);

// A whole GPTQ layer, rows × 4096 inputs (Llama-3-8B's k/v: 1024 rows; q/o: 4096), rtn 4-bit g128, dynamic groups:
// the factor above plus the column loop.
void BM_GptqLayer(benchmark::State& state) {
  const auto rows = static_cast<std::size_t>(state.range(0));
  constexpr std::size_t cols = 4096;
  const Eigen::MatrixXd& h = hessian(cols);
  tqb::Params p{{"rows", std::int64_t(rows)}, {"cols", std::int64_t{cols}}, {"std", 0.02}};
  const tqb::Matrix w = tqb::find_data_source("gaussian")->make(p, 5);
  const auto rtn = tqb::parse_quantizer("rtn(bits=4,group=128)");
  for (auto _ : state) benchmark::DoNotOptimize(tqb::gptq_quantize(*rtn, w.data(), rows, cols, h, 0).codes.data());
}
BENCHMARK(BM_GptqLayer)->Arg(1024)->Arg(4096)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(1);

BENCHMARK_MAIN();
