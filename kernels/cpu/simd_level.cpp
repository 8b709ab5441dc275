#include "kernels/cpu/simd_level.hpp"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace tqb {

std::string to_string(SimdLevel l) {
  switch (l) {
    case SimdLevel::scalar: return "scalar";
    case SimdLevel::avx2: return "avx2";
    case SimdLevel::avx512: return "avx512";
  }
  return "?";
}

SimdLevel detected_simd_level() {
#if defined(__x86_64__) && defined(__GNUC__)
  static const SimdLevel level = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512dq"))
      return SimdLevel::avx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return SimdLevel::avx2;
    return SimdLevel::scalar;
  }();
  return level;
#else
  return SimdLevel::scalar;
#endif
}

namespace {
std::atomic<int>& forced() {
  static std::atomic<int> f = [] {
    const char* e = std::getenv("TQB_SIMD");
    if (!e) return -1;
    if (!std::strcmp(e, "scalar")) return 0;
    if (!std::strcmp(e, "avx2")) return 1;
    if (!std::strcmp(e, "avx512")) return 2;
    std::fprintf(stderr, "warning: TQB_SIMD='%s' is not one of scalar, avx2, avx512; using the detected level\n", e);
    return -1;
  }();
  return f;
}
}  // namespace

SimdLevel simd_level() {
  const int f = forced().load();
  const SimdLevel d = detected_simd_level();
  return f < 0 ? d : static_cast<SimdLevel>(std::min(f, static_cast<int>(d)));
}

SimdLevel set_simd_level(SimdLevel l) {
  forced().store(static_cast<int>(l));
  return simd_level();
}

}  // namespace tqb
