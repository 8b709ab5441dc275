#pragma once
// Random rotations of R^d (TurboQuant §3): Haar-random orthogonal, randomized Hadamard, or none, each a
// parameter so that the rotation is an ablation axis. The rotation *stage* (one rotation per group of g
// input columns, seeded per group) is in weight_groups.hpp (group_rotations, rotate_groups), shared by
// turboquant's `rotation=` and the rotated(...) modifier of any quantizer (rotated.hpp); kernels see it as the
// group transform of the decode description (decode.hpp) and rotate activations instead of weights.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "quantizers/hadamard.hpp"

namespace tqb {

enum class RotationKind { none, haar, hadamard };
std::string to_string(RotationKind k);
RotationKind parse_rotation_kind(const std::string& s);  // throws std::invalid_argument
const std::vector<std::string>& rotation_kind_names();

// An orthogonal map Π of R^d.
class Rotation {
 public:
  explicit Rotation(std::size_t dim) : dim_(dim) {}
  virtual ~Rotation() = default;
  std::size_t dim() const { return dim_; }
  virtual RotationKind kind() const = 0;
  // x: n vectors of dim() floats, vector i at x + i*stride (stride >= dim()). In place: x_i ← Π x_i.
  // Hadamard and none run on the calling thread (callers parallelise over rows); Haar is one GEMM,
  // which Eigen parallelises.
  virtual void forward(float* x, std::size_t n, std::size_t stride) const = 0;
  // In place: x_i ← Πᵀ x_i.
  virtual void inverse(float* x, std::size_t n, std::size_t stride) const = 0;
  // The signs and blocks of a randomized Hadamard rotation, for loops that inline the transform
  // (hadamard.hpp); nullptr for other kinds.
  virtual const HadamardPlan* hadamard_plan() const { return nullptr; }

 private:
  std::size_t dim_;
};

// Haar: Q of the QR factorisation of a d×d matrix of i.i.d. N(0,1) (drawn from `seed` with
//   common/rng.hpp), columns' signs fixed so that diag(R) > 0 — exactly Haar-distributed
//   (Mezzadri 2007). O(d³) to build, O(d²) per vector; stored as a dense float matrix.
// Hadamard: x ← H D x / √L per block, D random ±1 signs from `seed`, H the Walsh–Hadamard matrix
//   applied by the fast transform in O(L log L). When d is not a power of two, d is split into
//   power-of-two blocks, largest first (1536 = 1024 + 512), each with its own transform.
// None: the identity.
// The same (kind, d, seed) gives the same rotation on every machine running the same build.
std::unique_ptr<Rotation> make_rotation(RotationKind kind, std::size_t dim, std::uint64_t seed);

// As make_rotation, from a process-wide cache (Haar at d = 4096 takes seconds to build). Bounded
// to about 512 MiB of rotations; least recently used ones are dropped.
std::shared_ptr<const Rotation> cached_rotation(RotationKind kind, std::size_t dim, std::uint64_t seed);

// A d-dimensional dense matrix of i.i.d. N(0,1) entries, m rows × d columns, row-major, from `seed`
// (QJL's projection S). Cached like rotations.
std::shared_ptr<const std::vector<float>> cached_gaussian_matrix(std::size_t m, std::size_t d, std::uint64_t seed);

// In-place unnormalised fast Walsh–Hadamard transform of x[0..n), n a power of two.
void fwht(float* x, std::size_t n);

}  // namespace tqb
