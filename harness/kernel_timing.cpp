#include "harness/kernel_timing.hpp"

#include <algorithm>
#include <chrono>
#include <vector>

#include "common/error.hpp"
#include "common/rng.hpp"
#include "kernels/cuda/gpu.hpp"
#include "kernels/cuda/lut_mma_layout.hpp"
#include "kernels/registry.hpp"

namespace tqb {
namespace {

struct Summary {
  double median = 0, min = 0, max = 0;
};

Summary summarize(std::vector<double> us) {
  std::sort(us.begin(), us.end());
  return {us[us.size() / 2], us.front(), us.back()};
}

Summary time_calls(const Linear& k, const Matrix& x, std::int64_t repetitions) {
  Matrix y(x.rows(), k.out());
  for (int warm = 0; warm < 2; ++warm) k.forward(x.data(), x.rows(), y.data());
  std::vector<double> us;
  us.reserve(repetitions);
  for (std::int64_t i = 0; i < repetitions; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    k.forward(x.data(), x.rows(), y.data());
    us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
  }
  return summarize(std::move(us));
}

KernelTiming time_kernel_cuda(const TimingSpec& spec, const Matrix& w, const Quantizer& quantizer, const QuantizedMatrix& q, std::uint64_t seed) {
  if (spec.kernel != "auto" && spec.kernel != "cuda_lut_mma")
    throw InputError("timing.device cuda times the cuda_lut_mma kernel; timing.kernel '" + spec.kernel + "' is a CPU kernel");
  if (const std::string why = gpu::unavailable_reason(); !why.empty()) throw InputError("timing.device cuda needs a CUDA GPU: " + why);
  if (const std::string why = lut_mma_supports(quantizer); !why.empty()) throw InputError("kernel 'cuda_lut_mma' cannot run " + quantizer.name() + ": " + why);
  const std::size_t n = static_cast<std::size_t>(spec.batch), rows = static_cast<std::size_t>(w.rows()), cols = static_cast<std::size_t>(w.cols());
  const int reps = static_cast<int>(spec.repetitions);
  std::vector<std::uint16_t> xb(n * cols);
  Rng rng(seed);
  for (auto& v : xb) v = to_bf16_bits(static_cast<float>(rng.normal()));
  gpu::reset_peak_bytes();
  const std::size_t before = gpu::allocated_bytes();
  KernelTiming t;
  {
    gpu::DeviceBuffer x(xb.size() * 2), y(n * rows * 4), yb(n * rows * 2);
    x.upload(xb.data(), xb.size() * 2);
    gpu::LutMmaMatrix m(make_lut_mma_layout(quantizer, q));
    t.kernel = "cuda_lut_mma:" + m.variant(n);
    t.weight_bytes = static_cast<double>(m.weight_bytes());
    const Summary k = summarize(gpu::time_calls([&](void* s) { m.multiply(x.as<const std::uint16_t>(), n, y.as<float>(), s); }, reps, true));
    t.median_us = k.median;
    t.min_us = k.min;
    t.max_us = k.max;
    gpu::CublasBf16Matrix dense(w.data(), rows, cols);
    t.dense_median_us =
        summarize(gpu::time_calls([&](void* s) { dense.multiply(x.as<const std::uint16_t>(), n, yb.as<std::uint16_t>(), s); }, reps, true)).median;
    t.device_peak_bytes = static_cast<double>(gpu::peak_bytes() - before);
  }
  return t;
}

}  // namespace

KernelTiming time_kernel(const TimingSpec& spec, const Matrix& w, const Quantizer& quantizer, const QuantizedMatrix& q,
                         std::uint64_t seed) {
  if (spec.device == "cuda") return time_kernel_cuda(spec, w, quantizer, q, seed);
  Matrix x(spec.batch, w.cols());
  Rng rng(seed);
  for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(rng.normal());
  const auto kernel = make_linear(spec.kernel, quantizer, q);
  const auto dense = make_dense_linear(w);
  KernelTiming t;
  t.kernel = kernel->kernel();
  t.weight_bytes = static_cast<double>(kernel->weight_bytes());
  const Summary k = time_calls(*kernel, x, spec.repetitions);
  t.median_us = k.median;
  t.min_us = k.min;
  t.max_us = k.max;
  t.dense_median_us = time_calls(*dense, x, spec.repetitions).median;
  return t;
}

}  // namespace tqb
