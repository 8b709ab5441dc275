#pragma once
// TurboQuant_mse (Zandieh et al., arXiv 2504.19874, Algorithm 1) in weight mode.
//
// Each row's group of g input columns v is stored as its L2 norm ‖v‖ (format `norm`) and b-bit codes:
// u = Π_j v/‖v‖ is rotated with group j's own rotation (the same for every row, so activations can be
// rotated once per group at inference), and each coordinate of u is replaced by the nearest of the
// 2^b Lloyd-Max centroids for the density of a unit vector's coordinate in g dimensions (codebook
// beta), or of N(0,1) scaled by 1/√g (codebook gaussian, the open-source weights method of
// REFERENCE.md). Dequantization: v̂ = ‖v‖ Π_jᵀ c[idx]. With group = row on unit vectors this is
// Algorithm 1 exactly, plus the stored norm.
//
// Layout: codes as one b-bit stream, row-major (bitpack.hpp); norms [rows][groups] in `norm`.
// The codebook and rotations are recomputed from (codebook, g, b) and the seed: not stored.
// Bits per weight: b + 8·bytes(norm)/g; e.g. 4-bit, g = 128, fp32 norms: 4.25.
#include "quantizers/registry.hpp"

namespace tqb {

QuantizerFamily turboquant_family();

// The 2^bits centroids for unit vectors in g dimensions (codebook "beta" or "gaussian", the latter
// scaled by 1/sqrt(g)), ascending: what a code decodes to before the group's norm and rotation.
std::vector<float> turboquant_centroids(const std::string& codebook, std::size_t g, int bits);
// The 2^bits − 1 decision boundaries between those centroids, ascending, as the encoder compares them (a
// coordinate's code is the number of boundaries below it, each scaled by the group's norm): what another
// encoder (the GPU's KV cache, models/kv_codec.hpp) needs to write the same codes.
std::vector<float> turboquant_boundaries(const std::string& codebook, std::size_t g, int bits);

}  // namespace tqb
