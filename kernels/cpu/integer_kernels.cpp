#include "kernels/cpu/integer_kernels.hpp"

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

const char* to_string(IntegerVariant v) {
  switch (v) {
    case IntegerVariant::avx512_vnni: return "avx512_vnni";
    case IntegerVariant::avx2: return "avx2";
    default: return "scalar";
  }
}

}  // namespace tqb
