#include "kernels/cpu/integer_kernels.hpp"

#include <cmath>

#include "common/simd.hpp"
#include "kernels/cpu/simd_level.hpp"

namespace tqb {

bool cpu_has_avx512_vnni() {
#if defined(__x86_64__) && defined(__GNUC__)
  return __builtin_cpu_supports("avx512vnni");
#else
  return false;
#endif
}

IntegerVariant current_integer_variant() {
  const SimdLevel level = simd_level();
#if defined(__x86_64__) && defined(__GNUC__)
  if (level == SimdLevel::avx512 && cpu_has_avx512_vnni()) return IntegerVariant::avx512_vnni;
  if (level >= SimdLevel::avx2) return IntegerVariant::avx2;
#endif
  return IntegerVariant::scalar;
}

namespace {

template <class Int>
[[gnu::always_inline]] inline void quantize_span_impl(const float* v, const std::uint16_t* order, std::size_t m, float inv,
                                                      int offset, Int* out) {
  if (order == nullptr) {
    for (std::size_t p = 0; p < m; ++p) out[p] = static_cast<Int>(static_cast<int>(std::rint(v[p] * inv)) + offset);
  } else {
    for (std::size_t p = 0; p < m; ++p) out[p] = static_cast<Int>(static_cast<int>(std::rint(v[order[p]] * inv)) + offset);
  }
}

}  // namespace

TQB_MULTIVERSION void quantize_span(const float* v, const std::uint16_t* order, std::size_t m, float inv, int offset,
                                    std::int16_t* out) {
  quantize_span_impl(v, order, m, inv, offset, out);
}

TQB_MULTIVERSION void quantize_span(const float* v, const std::uint16_t* order, std::size_t m, float inv, int offset,
                                    std::uint8_t* out) {
  quantize_span_impl(v, order, m, inv, offset, out);
}

const char* to_string(IntegerVariant v) {
  switch (v) {
    case IntegerVariant::avx512_vnni: return "avx512_vnni";
    case IntegerVariant::avx2: return "avx2";
    default: return "scalar";
  }
}

}  // namespace tqb
