#pragma once
// Weight mode, shared by every family: each row (output channel) is split into groups of g input
// columns ("group": a power of two, or 0 = the whole row); per-group side data (scales, norms) is
// stored [rows][groups] in a FloatFormat. Also the parameter specs several families share, so a
// parameter means the same thing (and validates the same way) everywhere.
#include <cstddef>
#include <cstdint>
#include <string>

#include "quantizers/params.hpp"
#include "quantizers/quantizer.hpp"
#include "quantizers/rotation.hpp"

namespace tqb {

ParamSpec group_param(std::int64_t default_group);  // "group": power of two >= 4, or row (= 0)
ParamSpec norm_param();                             // "norm": fp32 | fp16 | bf16, storage of group norms
ParamSpec rotation_param();                         // "rotation": haar | hadamard | none
ParamSpec codebook_param();                         // "codebook": beta | gaussian

// Group width for a row of `cols` columns (group 0 = the whole row).
inline std::size_t group_width(std::int64_t group, std::size_t cols) {
  return group == 0 ? cols : static_cast<std::size_t>(group);
}

// Problem with `group` for a rows x cols matrix, or an empty message.
ShapeProblem check_group_shape(std::int64_t group, std::size_t rows, std::size_t cols);

// The reference dequantization every per-group format shares: weight (r, j·g + i) = a_rj·lut[code] + b_rj
// with a = q.scales and b = q.zeros (absent: 0), both [rows][groups] in q.side_format, and codes from
// q's bit stream. out: q.rows × q.cols floats.
void dequantize_affine_lut(const QuantizedMatrix& q, std::size_t g, const std::vector<float>& lut, float* out);

// The rotation stage every rotated format shares (turboquant's rotation=, the rotated(...) wrapper):
// `groups` rotations of g columns, group j's drawn from group_seed(seed, "rotation", j) (TurboQuant §3:
// an independent rotation per group), from the process-wide cache. kind none gives identity objects.
std::vector<std::shared_ptr<const Rotation>> group_rotations(RotationKind kind, std::size_t g, std::size_t groups,
                                                             std::uint64_t seed);
// x: rows × cols row-major, group j = columns [j·g, (j+1)·g) with g = cols / rot.size(). In place: each
// group's block ← its rotation (inverse: the transpose). Haar as one GEMM per group; Hadamard per row in
// parallel; none leaves x as it is.
void rotate_groups(const std::vector<std::shared_ptr<const Rotation>>& rot, float* x, std::size_t rows,
                   std::size_t cols, bool inverse);

// A pass of the decode description (decode.hpp) whose values are q's side data: a = q.scales, b = q.zeros
// (empty when q has none), both widened to fp32; codes m = g per group, the identity transform.
DecodePass affine_lut_pass(const QuantizedMatrix& q, std::size_t g, std::vector<float> lut);

// Seed of group j's randomness (rotation, projection), labelled so that different uses never share
// a stream.
std::uint64_t group_seed(std::uint64_t seed, const char* use, std::size_t j);

}  // namespace tqb
