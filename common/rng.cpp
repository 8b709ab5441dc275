#include "common/rng.hpp"

#include <cmath>

namespace tqb {

std::uint64_t splitmix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

std::uint64_t derive_seed(std::uint64_t parent, std::string_view label) {
  // FNV-1a over the label, then mixed with the parent seed.
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : label) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  std::uint64_t state = parent ^ h;
  splitmix64(state);
  return splitmix64(state);
}

Rng::Rng(std::uint64_t seed) {
  std::uint64_t st = seed;
  for (auto& s : s_) s = splitmix64(st);
}

static inline std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

std::uint64_t Rng::next_u64() {
  // xoshiro256** (Blackman and Vigna, 2018)
  const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const std::uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

double Rng::uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

double Rng::normal() {
  if (has_spare_) {
    has_spare_ = false;
    return spare_;
  }
  double u, v, s;
  do {
    u = 2.0 * uniform() - 1.0;
    v = 2.0 * uniform() - 1.0;
    s = u * u + v * v;
  } while (s >= 1.0 || s == 0.0);
  const double f = std::sqrt(-2.0 * std::log(s) / s);
  spare_ = v * f;
  has_spare_ = true;
  return u * f;
}

double Rng::student_t(double nu) {
  // t = Z / sqrt(V / nu) with V ~ chi^2(nu); for integer-free nu use the sum of squares for the
  // integer part and a gamma-free approximation is not exact, so nu must be a positive integer here.
  const double z = normal();
  double v = 0.0;
  const int k = static_cast<int>(nu);
  for (int i = 0; i < k; ++i) {
    const double g = normal();
    v += g * g;
  }
  return z / std::sqrt(v / k);
}

}  // namespace tqb
