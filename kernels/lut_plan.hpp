#pragma once
// What the LUT kernels share beyond the decode description (quantizers/decode.hpp): the passes of a
// quantized matrix, their weight bytes, and the activations brought into each group's transformed domain.
#include <cstdint>
#include <vector>

#include "quantizers/decode.hpp"
#include "quantizers/quantizer.hpp"

namespace tqb {

// The decode description of q (quantized by `quantizer`): one pass per stage. Throws
// std::invalid_argument for formats without one.
std::vector<DecodePass> decode_passes(const Quantizer& quantizer, const QuantizedMatrix& q);

// For a kernel's refusal: the family of the quantizer (or of a stack's first pass) that has no decode description.
std::string undescribed_family(const Quantizer& quantizer);

// Bytes a kernel built on these passes holds for the weights: the stored codes and side data, plus
// the side data widened to fp32 (a, b).
std::size_t lut_weight_bytes(const QuantizedMatrix& q, const std::vector<DecodePass>& passes);

// x: n × cols. xt: n × groups·m activations in each group's transformed domain (T_j x_j); sx: n × groups
// sums of xt per group (only when the pass has offsets b, else left empty).
void transform_activations(const DecodePass& s, const float* x, std::size_t n, std::vector<float>& xt, std::vector<float>& sx);

}  // namespace tqb
