#include "kernels/lut_plan.hpp"

#include <cmath>
#include <cstring>
#include <stdexcept>

#include "common/float_format.hpp"
#include "quantizers/turboquant.hpp"
#include "quantizers/weight_groups.hpp"

namespace tqb {

namespace {
std::vector<float> side_values(const QuantizedMatrix& q, const std::vector<std::uint8_t>& bytes) {
  const std::size_t nb = bytes_of(q.side_format), n = bytes.size() / nb;
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = load_float(q.side_format, bytes.data() + i * nb);
  return v;
}

}  // namespace

void build_lut_passes(const Quantizer& quantizer, const QuantizedMatrix& q, std::vector<LutPass>& out) {
  const std::string& f = quantizer.family();
  const Params& p = quantizer.params();
  if (const auto passes = quantizer.passes(); !passes.empty()) {
    for (std::size_t k = 0; k < passes.size(); ++k) build_lut_passes(*passes[k], q.passes.at(k), out);
    return;
  }
  LutPass s;
  s.rows = q.rows;
  s.cols = q.cols;
  s.bits = q.code_bits;
  s.codes = q.codes.data();
  s.g = group_width(get_int(p, "group"), q.cols);
  s.groups = q.cols / s.g;
  s.m = s.g;
  s.a = side_values(q, q.scales);
  if (f == "rtn") {
    const bool sym = get_str(p, "mode") == "sym";
    const int qmax = (1 << (s.bits - 1)) - 1;
    for (int c = 0; c < (1 << s.bits); ++c) s.lut.push_back(static_cast<float>(sym ? c - qmax : c));
    if (!sym) s.b = side_values(q, q.zeros);
  } else if (f == "turboquant") {
    s.lut = turboquant_centroids(get_str(p, "codebook"), s.g, s.bits);
    const RotationKind kind = parse_rotation_kind(get_str(p, "rotation"));
    if (kind != RotationKind::none)
      for (std::size_t j = 0; j < s.groups; ++j) s.rotations.push_back(cached_rotation(kind, s.g, group_seed(q.seed, "rotation", j)));
  } else if (f == "qjl") {
    const std::int64_t sk = get_int(p, "sketch");
    s.m = sk < 0 ? static_cast<std::size_t>(-sk) * s.g : static_cast<std::size_t>(sk);
    s.lut = {-1.0f, 1.0f};
    const float c = static_cast<float>(std::sqrt(M_PI / 2.0) / static_cast<double>(s.m));
    for (auto& x : s.a) x *= c;
    for (std::size_t j = 0; j < s.groups; ++j) s.projections.push_back(cached_gaussian_matrix(s.m, s.g, group_seed(q.seed, "qjl", j)));
  } else {
    throw std::invalid_argument("fused_lut: unsupported format " + quantizer.name());
  }
  out.push_back(std::move(s));
}

std::size_t lut_weight_bytes(const QuantizedMatrix& q, const std::vector<LutPass>& passes) {
  std::size_t bytes = q.storage_bytes();
  for (const auto& s : passes) bytes += (s.a.size() + s.b.size()) * sizeof(float);
  return bytes;
}

void transform_activations(const LutPass& s, const float* x, std::size_t n, std::vector<float>& xt, std::vector<float>& sx) {
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
    if (!s.projections.empty()) {
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
