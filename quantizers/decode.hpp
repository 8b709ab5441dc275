#pragma once
// The decode description: how a kernel reads a quantized matrix without knowing which quantizer made it.
// Every format that has one is a list of passes (one for a plain quantizer, one per stage of a residual
// stack), and in each pass the weight of row r, group j, code q is
//
//     a[r][j] · lut[q] + b[r][j]     in the domain of group j's transform T_j,
//
// so that  y_r = Σ_passes Σ_j ⟨ a_rj·lut[codes_rj] + b_rj, T_j x_j ⟩  (x_j: group j of the activations).
// T_j is the identity (RTN), the group's rotation (TurboQuant §3: Haar or randomized Hadamard; any
// quantizer wrapped by `rotated`), or a Gaussian projection of m rows (QJL, whose m sign codes per group
// live in the projected domain). Kernels (kernels/cpu, kernels/cuda) read only this; the quantizers
// (quantizers/*.cpp) are the only code that knows how their bits came to be.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "quantizers/rotation.hpp"

namespace tqb {

// The per-group transform of the activations a pass's codes live behind.
enum class GroupTransform { identity, hadamard, haar, gaussian_projection };
std::string to_string(GroupTransform t);
GroupTransform group_transform_of(RotationKind k);

// What a kernel may check before any matrix is quantized: one entry per pass.
struct PassForm {
  int bits = 0;             // bits per code
  std::int64_t group = 0;   // columns per group; 0 = the whole row (known once cols is)
  GroupTransform transform = GroupTransform::identity;
  bool has_offset = false;  // b present (asymmetric RTN's minimum)
};

// One pass of a quantized matrix, ready for a kernel: shapes, the code stream, the side values widened
// to fp32, the lookup table and the per-group transforms.
struct DecodePass {
  std::size_t rows = 0, cols = 0;  // of the weight matrix
  std::size_t g = 0;               // columns per group
  std::size_t groups = 0;          // cols / g
  std::size_t m = 0;               // codes per (row, group): g, or the projection's rows
  int bits = 0;
  GroupTransform transform = GroupTransform::identity;
  const std::uint8_t* codes = nullptr;  // rows × groups × m codes, bitpack.hpp's stream, owned by the QuantizedMatrix
  std::vector<float> a, b;              // rows × groups; b empty when there are no offsets
  std::vector<float> lut;               // 2^bits values
  std::vector<std::shared_ptr<const Rotation>> rotations;              // per group (hadamard, haar), else empty
  std::vector<std::shared_ptr<const std::vector<float>>> projections;  // per group, m × g row-major (gaussian_projection)
  // Consecutive groups whose grids the format sets together (a k-quant's super-block: Quantizer::search_grid); 1 for
  // every format whose groups are independent. Kernels ignore it.
  std::size_t grid_span = 1;
};

}  // namespace tqb
