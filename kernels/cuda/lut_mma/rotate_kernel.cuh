#pragma once
// The rotation kernel: the activations rotated once per launch, in the layout of the kernel that reads them.
#include "kernels/cuda/lut_mma/common.cuh"

namespace tqb::lut_mma {

// Rotated activations for every pass: grid (ceil(n·groups / 8), passes), a warp per (row, group).
__global__ void __launch_bounds__(kThreads) rotate_kernel(const Args a) {
  launch_dependents();  // the small kernel, when launched as its dependent, starts its prologue meanwhile
  const PassArgs& p = a.pass[blockIdx.y];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int cols_pad = a.ktiles * 64;
  by_group_width(p.log2_group, [&](auto e) {
    constexpr int E = decltype(e)::value;
    const int groups = a.cols / (32 * E);
    const int task = blockIdx.x * kWarps + warp;
    if (task >= a.n * groups) return;
    const int t = task / groups, j = task % groups;
    const int k = j * 32 * E, kl = k + E * lane;
    std::size_t at;
    if (a.xr_layout == kXrWgmmaTiles) {
      at = wg_tile_offset(blockIdx.y, t, kl, a.xr_tile_rows, (a.n + a.xr_tile_rows - 1) / a.xr_tile_rows, a.ktiles);
    } else {
      const std::size_t row = a.xr_layout == kXrBatchMajor ? static_cast<std::size_t>(t) * gridDim.y + blockIdx.y : static_cast<std::size_t>(blockIdx.y) * a.n + t;
      at = row * cols_pad + kl;
    }
    rotate_one<E>(a, p, t, k, const_cast<__nv_bfloat16*>(a.xr) + at, lane);
  });
}

}  // namespace tqb::lut_mma
