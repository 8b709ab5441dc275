#include "kernels/lut_plan.hpp"

#include <cmath>
#include <cstring>
#include <stdexcept>


namespace tqb {

std::vector<DecodePass> decode_passes(const Quantizer& quantizer, const QuantizedMatrix& q) {
  std::vector<DecodePass> out;
  quantizer.describe_decode(q, out);
  return out;
}

std::string undescribed_family(const Quantizer& quantizer) {
  for (const Quantizer* p : quantizer.passes())
    if (p->decode_form().empty()) return undescribed_family(*p);
  return quantizer.family();
}

std::size_t lut_weight_bytes(const QuantizedMatrix& q, const std::vector<DecodePass>& passes) {
  std::size_t bytes = q.storage_bytes();
  for (const auto& s : passes) bytes += (s.a.size() + s.b.size()) * sizeof(float);
  return bytes;
}

void transform_activations(const DecodePass& s, const float* x, std::size_t n, std::vector<float>& xt, std::vector<float>& sx) {
  const std::size_t width = s.groups * s.m;
  xt.assign(n * width, 0.0f);
  sx.assign(s.b.empty() ? 0 : n * s.groups, 0.0f);
  // One task per (batch row, group); Hadamard and the projections run on the calling thread, a Haar
  // rotation is a small Eigen product (single-threaded inside this parallel loop).
  const std::ptrdiff_t tasks = static_cast<std::ptrdiff_t>(n * s.groups);
#pragma omp parallel for schedule(static) if (tasks >= 32)
  for (std::ptrdiff_t task = 0; task < tasks; ++task) {
    const std::size_t t = static_cast<std::size_t>(task) / s.groups, j = static_cast<std::size_t>(task) % s.groups;
    const float* src = x + t * s.cols + j * s.g;
    float* dst = xt.data() + t * width + j * s.m;
    if (s.transform == GroupTransform::gaussian_projection) {
      const float* S = s.projections[j]->data();
      for (std::size_t k = 0; k < s.m; ++k) {
        double acc = 0;
        for (std::size_t i = 0; i < s.g; ++i) acc += static_cast<double>(S[k * s.g + i]) * src[i];
        dst[k] = static_cast<float>(acc);
      }
    } else {
      std::memcpy(dst, src, s.g * sizeof(float));
      if (!s.rotations.empty()) s.rotations[j]->forward(dst, 1, s.g);
    }
    if (!sx.empty()) {
      double sum = 0;
      for (std::size_t k = 0; k < s.m; ++k) sum += dst[k];
      sx[t * s.groups + j] = static_cast<float>(sum);
    }
  }
}

}  // namespace tqb
