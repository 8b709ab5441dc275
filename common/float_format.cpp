#include "common/float_format.hpp"

#include <Eigen/Core>
#include <cmath>
#include <cstring>
#include <limits>

namespace tqb {

std::size_t bytes_of(FloatFormat f) { return f == FloatFormat::fp32 ? 4 : 2; }

std::string to_string(FloatFormat f) {
  switch (f) {
    case FloatFormat::fp32: return "fp32";
    case FloatFormat::fp16: return "fp16";
    case FloatFormat::bf16: return "bf16";
  }
  return "?";
}

const std::vector<std::string>& float_format_names() {
  static const std::vector<std::string> names{"fp32", "fp16", "bf16"};
  return names;
}

std::optional<FloatFormat> parse_float_format(const std::string& s) {
  if (s == "fp32") return FloatFormat::fp32;
  if (s == "fp16") return FloatFormat::fp16;
  if (s == "bf16") return FloatFormat::bf16;
  return std::nullopt;
}

float round_to(FloatFormat f, float x) {
  switch (f) {
    case FloatFormat::fp32: return x;
    case FloatFormat::fp16: return static_cast<float>(Eigen::half(x));
    case FloatFormat::bf16: return static_cast<float>(Eigen::bfloat16(x));
  }
  return x;
}

// Step to the neighbouring representable value in the given direction by nudging the float and
// re-rounding; fp16/bf16 values are exact floats, so nextafter on their bit pattern is enough.
static float step(FloatFormat f, float r, bool up) {
  if (f == FloatFormat::fp32) return std::nextafter(r, up ? INFINITY : -INFINITY);
  if (f == FloatFormat::fp16) {
    Eigen::half h(r);
    std::uint16_t bits = Eigen::numext::bit_cast<std::uint16_t>(h);
    const bool neg = bits & 0x8000;
    if ((bits & 0x7fff) == 0) return up ? 5.9604645e-08f : -5.9604645e-08f;  // smallest subnormal
    bits = (up != neg) ? bits + 1 : bits - 1;
    return static_cast<float>(Eigen::numext::bit_cast<Eigen::half>(bits));
  }
  Eigen::bfloat16 h(r);
  std::uint16_t bits = Eigen::numext::bit_cast<std::uint16_t>(h);
  const bool neg = bits & 0x8000;
  if ((bits & 0x7fff) == 0) bits = up ? 0x0001 : 0x8001;
  else bits = (up != neg) ? bits + 1 : bits - 1;
  return static_cast<float>(Eigen::numext::bit_cast<Eigen::bfloat16>(bits));
}

float round_up_to(FloatFormat f, float x) {
  const float r = round_to(f, x);
  return r >= x ? r : step(f, r, true);
}

float round_down_to(FloatFormat f, float x) {
  const float r = round_to(f, x);
  return r <= x ? r : step(f, r, false);
}

std::uint16_t fp16_bits(float x) { return Eigen::numext::bit_cast<std::uint16_t>(Eigen::half(x)); }

float fp16_value(std::uint16_t h) { return static_cast<float>(Eigen::numext::bit_cast<Eigen::half>(h)); }

std::uint16_t bf16_bits(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<std::uint16_t>(u >> 16);
}

float bf16_value(std::uint16_t h) {
  const std::uint32_t u = static_cast<std::uint32_t>(h) << 16;
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

void store_float(FloatFormat f, float x, std::uint8_t* dst) {
  switch (f) {
    case FloatFormat::fp32: std::memcpy(dst, &x, 4); return;
    case FloatFormat::fp16: {
      const std::uint16_t b = fp16_bits(x);
      std::memcpy(dst, &b, 2);
      return;
    }
    case FloatFormat::bf16: {
      const std::uint16_t b = bf16_bits(x);
      std::memcpy(dst, &b, 2);
      return;
    }
  }
}

float load_float(FloatFormat f, const std::uint8_t* src) {
  switch (f) {
    case FloatFormat::fp32: {
      float x;
      std::memcpy(&x, src, 4);
      return x;
    }
    case FloatFormat::fp16: {
      std::uint16_t b;
      std::memcpy(&b, src, 2);
      return fp16_value(b);
    }
    case FloatFormat::bf16: {
      std::uint16_t b;
      std::memcpy(&b, src, 2);
      return bf16_value(b);
    }
  }
  return 0.0f;
}

std::vector<float> load_floats(FloatFormat f, const std::vector<std::uint8_t>& bytes) {
  const std::size_t nb = bytes_of(f), n = bytes.size() / nb;
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = load_float(f, bytes.data() + i * nb);
  return v;
}

}  // namespace tqb
