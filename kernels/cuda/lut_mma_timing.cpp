#include "kernels/cuda/lut_mma_timing.hpp"

#include <algorithm>
#include <vector>

#include "common/error.hpp"
#include "common/rng.hpp"
#include "kernels/cuda/gpu.hpp"
#include "kernels/cuda/lut_mma_layout.hpp"

namespace tqb {

KernelTiming time_lut_mma(const Quantizer& quantizer, const QuantizedMatrix& q, const Matrix& w, const DeviceTimingRequest& request) {
  if (const std::string why = gpu::unavailable_reason(); !why.empty()) throw InputError("timing.device cuda needs a CUDA GPU: " + why);
  if (const std::string why = lut_mma_supports(quantizer); !why.empty()) throw InputError("kernel 'cuda_lut_mma' cannot run " + quantizer.name() + ": " + why);
  const std::size_t n = request.batch, rows = static_cast<std::size_t>(w.rows()), cols = static_cast<std::size_t>(w.cols());
  const int reps = request.repetitions;
  std::vector<std::uint16_t> xb(n * cols);
  Rng rng(request.seed);
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
    const TimingSummary k = summarize_us(gpu::time_calls([&](void* s) { m.multiply(x.as<const std::uint16_t>(), n, y.as<float>(), s); }, reps, true));
    t.median_us = k.median;
    t.min_us = k.min;
    t.max_us = k.max;
    gpu::CublasBf16Matrix dense(w.data(), rows, cols);
    t.dense_median_us =
        summarize_us(gpu::time_calls([&](void* s) { dense.multiply(x.as<const std::uint16_t>(), n, yb.as<std::uint16_t>(), s); }, reps, true)).median;
    t.device_peak_bytes = static_cast<double>(gpu::peak_bytes() - before);
  }
  return t;
}

}  // namespace tqb
