#include "quantizers/weight_groups.hpp"

#include <fmt/format.h>

#include "common/float_format.hpp"
#include "common/rng.hpp"
#include "quantizers/bitpack.hpp"
#include "quantizers/rotation.hpp"

namespace tqb {

using K = ParamSpec::Kind;

ParamSpec group_param(std::int64_t default_group) {
  return {.name = "group", .kind = K::integer, .default_value = default_group,
          .description = "input columns per group (one scale or norm each)", .min = 4, .max = 1 << 20,
          .aliases = {{"row", 0}}, .power_of_two = true};
}

ParamSpec norm_param() {
  return {.name = "norm", .kind = K::choice, .default_value = std::string("fp32"),
          .description = "storage format of each group's L2 norm", .choices = float_format_names()};
}

ParamSpec rotation_param() {
  return {.name = "rotation", .kind = K::choice, .default_value = std::string("haar"),
          .description = "random rotation per group: haar (QR of a Gaussian), hadamard (random signs + "
                         "Walsh-Hadamard), none",
          .choices = rotation_kind_names()};
}

ParamSpec codebook_param() {
  return {.name = "codebook", .kind = K::choice, .default_value = std::string("beta"),
          .description = "Lloyd-Max codebook: beta (exact density of a unit vector's coordinate in d = group "
                         "dimensions) or gaussian (N(0,1), scaled by 1/sqrt(d))",
          .choices = {"beta", "gaussian"}};
}

ShapeProblem check_group_shape(std::int64_t group, std::size_t rows, std::size_t cols) {
  if (rows == 0 || cols == 0) return {"", "the matrix is empty"};
  if (group != 0 && cols % static_cast<std::size_t>(group) != 0)
    return {"group", fmt::format("group size {} does not divide the {} columns; use a divisor of {} or 'row'", group,
                                 cols, cols)};
  return {};
}

void dequantize_affine_lut(const QuantizedMatrix& q, std::size_t g, const std::vector<float>& lut, float* out) {
  const std::size_t groups = q.cols / g, nb = bytes_of(q.side_format);
  const bool offsets = !q.zeros.empty();
#pragma omp parallel
  {
    std::vector<std::uint8_t> codes(q.cols);
#pragma omp for schedule(static)
    for (std::ptrdiff_t r = 0; r < static_cast<std::ptrdiff_t>(q.rows); ++r) {
      unpack_codes_range(q.codes.data(), r * q.cols, q.cols, q.code_bits, codes.data());
      for (std::size_t j = 0; j < groups; ++j) {
        const std::size_t slot = r * groups + j;
        const float a = load_float(q.side_format, q.scales.data() + slot * nb);
        const float b = offsets ? load_float(q.side_format, q.zeros.data() + slot * nb) : 0.0f;
        float* v = out + r * q.cols + j * g;
        const std::uint8_t* c = codes.data() + j * g;
        if (offsets) {
          for (std::size_t i = 0; i < g; ++i) v[i] = b + lut[c[i]] * a;
        } else {
          for (std::size_t i = 0; i < g; ++i) v[i] = lut[c[i]] * a;
        }
      }
    }
  }
}

std::uint64_t group_seed(std::uint64_t seed, const char* use, std::size_t j) {
  return derive_seed(seed, fmt::format("{} group {}", use, j));
}

std::vector<std::shared_ptr<const Rotation>> group_rotations(RotationKind kind, std::size_t g, std::size_t groups,
                                                             std::uint64_t seed) {
  std::vector<std::shared_ptr<const Rotation>> rot(groups);
  // In parallel: a Haar rotation is a QR of a g × g Gaussian, and an 8B model's layers draw about 10,000 of them.
#pragma omp parallel for schedule(dynamic) if (kind == RotationKind::haar && groups > 1)
  for (std::ptrdiff_t j = 0; j < static_cast<std::ptrdiff_t>(groups); ++j)
    rot[j] = cached_rotation(kind, g, group_seed(seed, "rotation", static_cast<std::size_t>(j)));
  return rot;
}

void rotate_groups(const std::vector<std::shared_ptr<const Rotation>>& rot, float* x, std::size_t rows,
                   std::size_t cols, bool inverse) {
  if (rot.empty() || rot[0]->kind() == RotationKind::none) return;
  const std::size_t groups = rot.size(), g = cols / groups;
  if (rot[0]->kind() == RotationKind::haar) {
    for (std::size_t j = 0; j < groups; ++j) inverse ? rot[j]->inverse(x + j * g, rows, cols) : rot[j]->forward(x + j * g, rows, cols);
    return;
  }
#pragma omp parallel for schedule(static)
  for (std::ptrdiff_t r = 0; r < static_cast<std::ptrdiff_t>(rows); ++r)
    for (std::size_t j = 0; j < groups; ++j)
      inverse ? rot[j]->inverse(x + r * cols + j * g, 1, g) : rot[j]->forward(x + r * cols + j * g, 1, g);
}

DecodePass affine_lut_pass(const QuantizedMatrix& q, std::size_t g, std::vector<float> lut) {
  DecodePass s;
  s.rows = q.rows;
  s.cols = q.cols;
  s.g = g;
  s.groups = q.cols / g;
  s.m = g;
  s.bits = q.code_bits;
  s.codes = q.codes.data();
  s.a = load_floats(q.side_format, q.scales);
  if (!q.zeros.empty()) s.b = load_floats(q.side_format, q.zeros);
  s.lut = std::move(lut);
  return s;
}

std::string to_string(GroupTransform t) {
  switch (t) {
    case GroupTransform::identity: return "identity";
    case GroupTransform::hadamard: return "hadamard";
    case GroupTransform::haar: return "haar";
    case GroupTransform::gaussian_projection: return "gaussian_projection";
  }
  return "?";
}

GroupTransform group_transform_of(RotationKind k) {
  switch (k) {
    case RotationKind::haar: return GroupTransform::haar;
    case RotationKind::hadamard: return GroupTransform::hadamard;
    default: return GroupTransform::identity;
  }
}

}  // namespace tqb
