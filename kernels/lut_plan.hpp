#pragma once
// The plan the fused kernels share: every supported format as passes in which the weight of row r,
// group j, code q is a[r][j]·lut[q] + b[r][j], applied to a per-group transform of the activations
// (identity for RTN, the group's rotation for TurboQuant, the projection S_j for QJL); see fused_lut.hpp.
#include <cstdint>
#include <memory>
#include <vector>

#include "quantizers/quantizer.hpp"
#include "quantizers/rotation.hpp"

namespace tqb {

struct LutPass {
  std::size_t rows = 0, cols = 0, groups = 0, g = 0, m = 0;  // m: codes per (row, group)
  int bits = 0;
  const std::uint8_t* codes = nullptr;  // into the QuantizedMatrix the kernel owns
  std::vector<float> a, b;              // rows × groups; b empty when zero
  std::vector<float> lut;               // 2^bits
  std::vector<std::shared_ptr<const Rotation>> rotations;              // per group, or empty
  std::vector<std::shared_ptr<const std::vector<float>>> projections;  // per group (m × g), or empty
};

// Appends the passes of q (quantized by `quantizer`; residual stacks give one pass each).
// Throws std::invalid_argument for formats no fused kernel reads.
void build_lut_passes(const Quantizer& quantizer, const QuantizedMatrix& q, std::vector<LutPass>& out);

// Bytes a kernel built on these passes holds for the weights: the stored codes and side data, plus
// the side data widened to fp32 (a, b).
std::size_t lut_weight_bytes(const QuantizedMatrix& q, const std::vector<LutPass>& passes);

// x: n × cols. xt: n × groups·m transformed activations; sx: n × groups sums of xt per group (only
// when the pass has offsets b, else left empty).
void transform_activations(const LutPass& s, const float* x, std::size_t n, std::vector<float>& xt, std::vector<float>& sx);

}  // namespace tqb
