#pragma once
// Median, min and max of timed calls (microseconds), as every latency figure reports them. Header-only and free of
// Eigen, so that the CUDA sources (kernels/cuda/device.cu) and the benchmarks use the same summary as the harness.
#include <algorithm>
#include <vector>

namespace tqb {

struct TimingSummary {
  double median = 0, min = 0, max = 0;
};
inline TimingSummary summarize_us(std::vector<double> us) {  // us non-empty
  std::sort(us.begin(), us.end());
  return {us[us.size() / 2], us.front(), us.back()};
}

}  // namespace tqb
