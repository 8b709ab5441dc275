#pragma once
// Device building blocks of the lut_mma kernels (kernels/cuda/lut_mma/): PTX wrappers for the tensor-core
// instructions, the pair-table decode of one A fragment, and the per-group randomized Hadamard
// transform of activations in registers. Fragment layouts follow the PTX ISA's m16n8k16 description
// (lut_mma_layout.hpp lists the ones the repacking relies on).
#include <cuda_bf16.h>
#include <cstdint>

#include "kernels/cuda/lut_mma_layout.hpp"

namespace tqb::lut_mma {

constexpr int kWarps = 8;  // warps per block in every lut_mma kernel
constexpr int kThreads = 32 * kWarps;
constexpr int kPad = 8;    // bf16 padding per activation row in shared memory: rows 16 B apart mod 128,
                           // so the 8 row addresses of one ldmatrix hit 8 different bank quads

__device__ __forceinline__ std::uint32_t smem_addr(const void* p) {
  return static_cast<std::uint32_t>(__cvta_generic_to_shared(p));
}

// D = A·B + D, m16n8k16, bf16 inputs, fp32 accumulators.
__device__ __forceinline__ void mma_bf16(float (&d)[4], const std::uint32_t (&a)[4], std::uint32_t b0, std::uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ void ldmatrix_x4(std::uint32_t addr, std::uint32_t& r0, std::uint32_t& r1, std::uint32_t& r2, std::uint32_t& r3) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3) : "r"(addr));
}

__device__ __forceinline__ void ldmatrix_x2(std::uint32_t addr, std::uint32_t& r0, std::uint32_t& r1) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n" : "=r"(r0), "=r"(r1) : "r"(addr));
}

// B fragments of NT n8-tiles (NT = 1 or even) for one k16 step from activations stored [n][stride]
// bf16 in shared memory (row = batch column, k contiguous). b_lane_offset: this lane's ldmatrix row
// address relative to (row 0, column k), in bytes, rows past last_row reading last_row (the small
// kernel's zero row); load_b then takes that address at column k.
template <int NT>
__device__ __forceinline__ std::uint32_t b_lane_offset(int stride, int lane, int last_row) {
  static_assert(NT == 1 || NT % 2 == 0, "n8-tiles: 1 or even");
  // x4: matrices (tile j, k 0-7), (j, k 8-15), (j+1, k 0-7), (j+1, k 8-15), rows from lanes 8m..8m+7.
  // x2: (tile 0, k 0-7), (0, k 8-15) from lanes 0-15 (16-31 repeat them).
  const int m = lane >> 3;
  const int row = NT == 1 ? (lane & 7) : 8 * (m >> 1) + (lane & 7), col = 8 * (m & 1);
  return static_cast<std::uint32_t>((min(row, last_row) * stride + col) * 2);
}
template <int NT>
__device__ __forceinline__ void load_b(std::uint32_t addr, int stride, std::uint32_t (&b)[NT][2]) {
  if constexpr (NT == 1) {
    ldmatrix_x2(addr, b[0][0], b[0][1]);
  } else {
#pragma unroll
    for (int j = 0; j < NT; j += 2) ldmatrix_x4(addr + j * 8 * stride * 2, b[j][0], b[j][1], b[j + 1][0], b[j + 1][1]);
  }
}

__device__ __forceinline__ std::uint32_t lds32(std::uint32_t addr) {
  std::uint32_t v;
  asm volatile("ld.shared.b32 %0, [%1];\n" : "=r"(v) : "r"(addr));
  return v;
}

// d = a·b + c on bf16 pairs, one rounding (fma.rn.bf16x2).
__device__ __forceinline__ std::uint32_t fma_bf16x2(std::uint32_t a, std::uint32_t b, std::uint32_t c) {
  std::uint32_t d;
  asm("fma.rn.bf16x2 %0, %1, %2, %3;\n" : "=r"(d) : "r"(a), "r"(b), "r"(c));
  return d;
}

// The side data of one (stripe, group) for a lane: bf16 pairs (row gid, row gid+8) splatted so that
// one bf16x2 fma serves both weights of a pair.
struct GroupSide {
  std::uint32_t a_lo, a_hi, b_lo, b_hi;
};
__device__ __forceinline__ GroupSide splat_side(std::uint32_t scale, std::uint32_t offset) {
  return {__byte_perm(scale, 0, 0x1010), __byte_perm(scale, 0, 0x3232), __byte_perm(offset, 0, 0x1010),
          __byte_perm(offset, 0, 0x3232)};
}

// The table entry (a bf16 pair) of pair r (0..3) of sub-tile s (0..3) in a lane's tile words w, from
// this lane's copy of the table (lut_addr: shared address of the table + 4·lane; entries 128 bytes
// apart). For 4-bit codes a pair is a byte: one PRMT and one address add per lookup.
template <int B>
__device__ __forceinline__ std::uint32_t lookup_pair(const std::uint32_t (&w)[B], int s, int r, std::uint32_t lut_addr) {
  std::uint32_t idx;
  if constexpr (B == 4) idx = __byte_perm(w[s], 0, 0x4440 | r);
  else idx = lut_mma_pair_field<B>(w, 4 * s + r);
  return lds32(lut_addr + (idx << 7));
}

// The A fragment of sub-tile s with the group's scale and offset applied: four lookups and four bf16x2
// fmas (the large kernel; the small kernel scales per group in fp32 instead).
template <int B>
__device__ __forceinline__ void decode_a(const std::uint32_t (&w)[B], int s, std::uint32_t lut_addr, const GroupSide& g, std::uint32_t (&a)[4]) {
#pragma unroll
  for (int r = 0; r < 4; ++r) a[r] = fma_bf16x2(lookup_pair<B>(w, s, r, lut_addr), (r & 1) ? g.a_hi : g.a_lo, (r & 1) ? g.b_hi : g.b_lo);
}

// Loads n 32-bit words (n = 2, 3, 4) from global memory: one 16- or 8-byte load where aligned.
template <int B>
__device__ __forceinline__ void load_words(const std::uint32_t* p, std::uint32_t (&w)[B]) {
  if constexpr (B == 4) {
    const uint4 v = __ldg(reinterpret_cast<const uint4*>(p));
    w[0] = v.x, w[1] = v.y, w[2] = v.z, w[3] = v.w;
  } else if constexpr (B == 2) {
    const uint2 v = __ldg(reinterpret_cast<const uint2*>(p));
    w[0] = v.x, w[1] = v.y;
  } else {
#pragma unroll
    for (int i = 0; i < B; ++i) w[i] = __ldg(p + i);
  }
}

// One group of g = 32·E activations, lane holding elements [E·lane, E·lane + E): signs, the
// unnormalised Walsh–Hadamard butterflies (within the lane, then across lanes by shuffles; the same
// network as quantizers/hadamard.hpp), and the 1/√g scale. TurboQuant §3, per group (weight mode).
template <int E>
__device__ __forceinline__ void hadamard_in_registers(float (&v)[E], std::uint32_t sign_bits, int lane) {
#pragma unroll
  for (int e = 0; e < E; ++e)
    if ((sign_bits >> e) & 1u) v[e] = -v[e];
#pragma unroll
  for (int h = 1; h < E; h *= 2)
#pragma unroll
    for (int e = 0; e < E; ++e)
      if ((e & h) == 0) {
        const float x = v[e], y = v[e + h];
        v[e] = x + y;
        v[e + h] = x - y;
      }
#pragma unroll
  for (int m = 1; m < 32; m *= 2) {  // partner lane distance m = element distance m·E
    const bool upper = (lane & m) != 0;
#pragma unroll
    for (int e = 0; e < E; ++e) {
      const float other = __shfl_xor_sync(0xffffffffu, v[e], m);
      v[e] = upper ? other - v[e] : v[e] + other;
    }
  }
  const float scale = 1.0f / sqrtf(static_cast<float>(32 * E));  // as the CPU rotation: 1/√L, then a product
#pragma unroll
  for (int e = 0; e < E; ++e) v[e] *= scale;
}

}  // namespace tqb::lut_mma
