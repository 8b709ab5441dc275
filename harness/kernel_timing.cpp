#include "harness/kernel_timing.hpp"

#include <algorithm>
#include <chrono>
#include <vector>

#include "common/rng.hpp"
#include "kernels/registry.hpp"

namespace tqb {
namespace {

struct Summary {
  double median = 0, min = 0, max = 0;
};

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
  std::sort(us.begin(), us.end());
  return {us[us.size() / 2], us.front(), us.back()};
}

}  // namespace

KernelTiming time_kernel(const TimingSpec& spec, const Matrix& w, const Quantizer& quantizer, const QuantizedMatrix& q,
                         std::uint64_t seed) {
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
