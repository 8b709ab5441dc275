#pragma once
// Which SIMD variant the fused kernels run: detected from the CPU at run time (AVX-512 needs F, BW, VL
// and DQ; AVX2 needs FMA too), or forced — by TQB_SIMD=scalar|avx2|avx512 in the environment, or by
// tests through set_simd_level — never above what the CPU supports.
#include <string>

namespace tqb {

enum class SimdLevel { scalar = 0, avx2 = 1, avx512 = 2 };

std::string to_string(SimdLevel l);
SimdLevel detected_simd_level();  // the best the CPU supports
SimdLevel simd_level();           // what kernels use now
// Forces a level (clamped to the detected one); returns the level in effect.
SimdLevel set_simd_level(SimdLevel l);

}  // namespace tqb
