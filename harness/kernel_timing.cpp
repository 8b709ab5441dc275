#include "harness/kernel_timing.hpp"

#include <algorithm>
#include <chrono>
#include <vector>

#include "common/error.hpp"
#include "common/rng.hpp"
#include "kernels/cuda/gpu.hpp"
#include "kernels/registry.hpp"

namespace tqb {
namespace {

TimingSummary time_calls(const Linear& k, const Matrix& x, std::int64_t repetitions) {
  Matrix y(x.rows(), k.out());
  for (int warm = 0; warm < 2; ++warm) k.forward(x.data(), x.rows(), y.data());
  std::vector<double> us;
  us.reserve(repetitions);
  for (std::int64_t i = 0; i < repetitions; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    k.forward(x.data(), x.rows(), y.data());
    us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
  }
  return summarize_us(std::move(us));
}

// A GPU kernel from the registry, timed by its own device timer.
KernelTiming time_kernel_on_device(const TimingSpec& spec, const Matrix& w, const Quantizer& quantizer, const QuantizedMatrix& q,
                                   std::uint64_t seed) {
  if (const std::string why = gpu::unavailable_reason(); !why.empty()) throw InputError("timing.device cuda needs a CUDA GPU: " + why);
  // auto: the first GPU kernel that reads the format; when none does, the first GPU kernel, whose timer
  // refuses the format saying why.
  const LinearKernel* chosen = nullptr;
  for (const auto& k : linear_kernels()) {
    if (!k.time_on_device || (spec.kernel != "auto" && k.name != spec.kernel)) continue;
    if (!chosen) chosen = &k;
    if (spec.kernel != "auto" || k.supports(quantizer).empty()) {
      chosen = &k;
      break;
    }
  }
  if (!chosen)
    throw InputError("timing.device cuda times a GPU kernel; timing.kernel '" + spec.kernel + "' is a CPU kernel");
  return chosen->time_on_device(quantizer, q, w,
                                {static_cast<std::size_t>(spec.batch), static_cast<int>(spec.repetitions), seed});
}

}  // namespace

KernelTiming time_kernel(const TimingSpec& spec, const Matrix& w, const Quantizer& quantizer, const QuantizedMatrix& q,
                         std::uint64_t seed) {
  if (spec.device == "cuda") return time_kernel_on_device(spec, w, quantizer, q, seed);
  Matrix x(spec.batch, w.cols());
  Rng rng(seed);
  for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(rng.normal());
  const auto kernel = make_linear(spec.kernel, quantizer, q);
  const auto dense = make_dense_linear(w);
  KernelTiming t;
  t.kernel = kernel->kernel();
  t.weight_bytes = static_cast<double>(kernel->weight_bytes());
  const TimingSummary k = time_calls(*kernel, x, spec.repetitions);
  t.median_us = k.median;
  t.min_us = k.min;
  t.max_us = k.max;
  t.dense_median_us = time_calls(*dense, x, spec.repetitions).median;
  return t;
}

}  // namespace tqb
