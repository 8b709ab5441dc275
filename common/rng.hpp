#pragma once
// Seeded random numbers that are bit-for-bit the same on every machine and standard library.
// std::normal_distribution is implementation-defined, so tqbench draws its own: xoshiro256** for bits,
// splitmix64 to expand seeds, Marsaglia's polar method for normals (only sqrt, which IEEE rounds
// exactly, and log from the C library).
#include <cstdint>
#include <string_view>

namespace tqb {

// splitmix64 step: a good 64-bit mixer, used to derive independent seeds.
std::uint64_t splitmix64(std::uint64_t& state);

// A seed derived from a parent seed and a label (e.g. the canonical key of a sweep point), so that
// adding or reordering sweep points never changes the random numbers of the others.
std::uint64_t derive_seed(std::uint64_t parent, std::string_view label);

class Rng {
 public:
  explicit Rng(std::uint64_t seed);
  std::uint64_t next_u64();
  double uniform();         // in [0, 1), 53 random bits
  double normal();          // standard normal N(0, 1)
  double student_t(double nu);  // Student-t with nu degrees of freedom (heavy-tailed weights)

 private:
  std::uint64_t s_[4];
  bool has_spare_ = false;
  double spare_ = 0.0;
};

}  // namespace tqb
