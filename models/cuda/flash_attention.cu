// Causal GQA attention on tensor cores, one pass over the keys with an online softmax (FlashAttention-2's
// scheme: Dao 2023, §3.1-3.2: each warp owns 16 query rows, so the running max and sum need no block-wide
// reduction, and the scores never leave registers). Products are mma.sync m16n8k16 on bf16 with fp32
// accumulation (sm_80 and later): Q's fragments stay in registers for the whole pass; K and V tiles come to
// shared memory by cp.async, double-buffered, and into fragments by ldmatrix (.trans for V); the score
// accumulators are rounded to bf16 in place as the A operand of P·V (the accumulator layout of two n-tiles
// is the A layout of one k-step), as FlashAttention does. Softmax statistics, the output accumulator and
// the rescaling stay in fp32. Why our own kernel and not cuDNN's SDPA: cuDNN is not among the project's
// dependencies (and not on the CI machine), and the quantized KV cache of issue 25 will read its codes in
// this same loop. The cache is bf16 (what torch keeps for a bf16 model); the queries come in fp32 and are
// rounded here.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "models/cuda/flash_attention.hpp"

namespace tqb::cuda_forward {
namespace {

constexpr int kWarps = 4;
constexpr int kRows = 16 * kWarps;  // queries per block: 16 rows per warp
constexpr int kKeys = 64;           // keys per step
constexpr int kThreads = 32 * kWarps;

template <int HD>
struct Layout {
  static constexpr int ldh = HD + 8;  // bf16 rows of K and V: a 16-byte shift per row makes ldmatrix conflict-free
  static constexpr std::size_t tile = std::size_t{kKeys} * ldh;           // elements of one K or V tile
  static constexpr std::size_t bytes = 2 /*buffers*/ * 2 /*K, V*/ * tile * 2;
};

__device__ __forceinline__ unsigned smem(const void* p) { return static_cast<unsigned>(__cvta_generic_to_shared(p)); }

// 16 bytes from global to shared without passing through registers; src_bytes 0 writes zeros.
__device__ __forceinline__ void cp_async16(void* dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem(dst)), "l"(src), "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

__device__ __forceinline__ void ldmatrix_x4(unsigned (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem(p)));
}
__device__ __forceinline__ void ldmatrix_x2(unsigned (&r)[2], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n" : "=r"(r[0]), "=r"(r[1]) : "r"(smem(p)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(unsigned (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem(p)));
}

// d += a · b: A 16×16 (4 registers of bf16 pairs), B 16×8 (2), D 16×8 fp32. Fragment layouts (PTX ISA, mma
// m16n8k16): with g = lane / 4, t = lane % 4, a thread holds A[g][2t..], A[g+8][2t..], A[g][2t+8..],
// A[g+8][2t+8..]; B[2t..][g], B[2t+8..][g]; D[g][2t..2t+1], D[g+8][2t..2t+1].
__device__ __forceinline__ void mma(float (&d)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ unsigned pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const unsigned*>(&v);
}

// K or V rows j0 … j0 + kKeys − 1 of one sequence's head (row stride ld elements) into a shared tile; rows at or
// past `valid` are zeros (the cache past the written positions is uninitialized, and 0 · NaN would poison P·V).
template <int HD>
__device__ void load_tile(const __nv_bfloat16* src, std::size_t ld, std::size_t valid, __nv_bfloat16* dst) {
  constexpr int per_row = HD / 8;  // 16-byte pieces
  for (int i = threadIdx.x; i < kKeys * per_row; i += kThreads) {
    const int r = i / per_row, c = (i % per_row) * 8;
    const bool in = static_cast<std::size_t>(r) < valid;
    cp_async16(dst + r * Layout<HD>::ldh + c, in ? src + r * ld + c : src, in ? 16 : 0);
  }
}

template <typename Out>
__device__ __forceinline__ void store_pair(Out* p, float a, float b);
template <>
__device__ __forceinline__ void store_pair(float* p, float a, float b) { *reinterpret_cast<float2*>(p) = make_float2(a, b); }
template <>
__device__ __forceinline__ void store_pair(__nv_bfloat16* p, float a, float b) {
  *reinterpret_cast<__nv_bfloat162*>(p) = __floats2bfloat162_rn(a, b);
}

template <int HD>
__global__ void __launch_bounds__(kThreads, 2)
    flash_attention(const float* q, const __nv_bfloat16* K, const __nv_bfloat16* V, float* out, __nv_bfloat16* out_bf16,
                    std::size_t n, std::size_t pos0, std::size_t capacity, int nh, int nkv, int window, float scale) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  static_assert(HD % 16 == 0, "head_dim must be a multiple of 16");
  constexpr int kSteps = HD / 16;    // k-steps of Q·Kᵀ
  constexpr int kTiles = HD / 8;     // n-tiles of the output
  constexpr int kScoreTiles = kKeys / 8;
  using L = Layout<HD>;
  extern __shared__ __align__(128) unsigned char shared[];
  auto* tiles = reinterpret_cast<__nv_bfloat16*>(shared);  // [buffer][K, V][kKeys × ldh]
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;

  const int hh = blockIdx.y, kvh = hh / (nh / nkv);
  const std::size_t seq = blockIdx.z, t0 = static_cast<std::size_t>(blockIdx.x) * kRows;
  const std::size_t ldq = static_cast<std::size_t>(nh) * HD, ldkv = static_cast<std::size_t>(nkv) * HD, total = pos0 + n;
  const __nv_bfloat16* Kb = K + seq * capacity * ldkv + kvh * HD;
  const __nv_bfloat16* Vb = V + seq * capacity * ldkv + kvh * HD;

  // The key range of the whole block, and of this warp's rows (a warp skips the products of a step none of its
  // rows can see).
  const std::size_t rows_here = n - t0 < static_cast<std::size_t>(kRows) ? n - t0 : kRows;
  const std::size_t last = pos0 + t0 + rows_here;  // keys < last are visible to some row of the block
  const std::size_t first_visible = window > 0 && pos0 + t0 + 1 > static_cast<std::size_t>(window) ? pos0 + t0 + 1 - window : 0;
  const std::size_t j_begin = first_visible / kKeys * kKeys;
  const std::size_t wq0 = pos0 + t0 + warp * 16;  // position of the warp's first row
  const std::size_t q_row[2] = {wq0 + g, wq0 + g + 8};

  auto issue = [&](std::size_t j0, int buffer) {
    __nv_bfloat16* k_tile = tiles + (2 * buffer) * L::tile;
    load_tile<HD>(Kb + j0 * ldkv, ldkv, total - j0, k_tile);
    load_tile<HD>(Vb + j0 * ldkv, ldkv, total - j0, k_tile + L::tile);
    cp_async_commit();
  };
  if (j_begin < last) issue(j_begin, 0);

  // Q's A fragments, rounded to bf16 (rows past n are zeros).
  unsigned qf[kSteps][4];
  {
    const float* qb = q + (seq * n + t0 + warp * 16) * ldq + hh * HD;
    const std::size_t local = t0 + warp * 16;
    const bool in0 = local + g < n, in1 = local + g + 8 < n;
    for (int k = 0; k < kSteps; ++k) {
      const int c = 16 * k + 2 * t;
      const float2 z = make_float2(0, 0);
      const float2 a0 = in0 ? *reinterpret_cast<const float2*>(qb + g * ldq + c) : z;
      const float2 a1 = in1 ? *reinterpret_cast<const float2*>(qb + (g + 8) * ldq + c) : z;
      const float2 a2 = in0 ? *reinterpret_cast<const float2*>(qb + g * ldq + c + 8) : z;
      const float2 a3 = in1 ? *reinterpret_cast<const float2*>(qb + (g + 8) * ldq + c + 8) : z;
      qf[k][0] = pack_bf16(a0.x, a0.y);
      qf[k][1] = pack_bf16(a1.x, a1.y);
      qf[k][2] = pack_bf16(a2.x, a2.y);
      qf[k][3] = pack_bf16(a3.x, a3.y);
    }
  }
  float o[kTiles][4];
  for (auto& f : o) f[0] = f[1] = f[2] = f[3] = 0.0f;
  // Per row this thread holds (g and g + 8): the running max (in log2 units) and this thread's part of the sum
  // (its 2 of every 8 columns; the quad's parts are added at the end).
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
  const float scale_log2 = scale * 1.4426950408889634f;  // exp(x·scale) = exp2(x·scale·log2 e)

  int buffer = 0;
  for (std::size_t j0 = j_begin; j0 < last; j0 += kKeys, buffer ^= 1) {
    if (j0 + kKeys < last) {
      issue(j0 + kKeys, buffer ^ 1);  // the other buffer was released by the barrier that ended the last step
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const __nv_bfloat16* Ks = tiles + (2 * buffer) * L::tile;
    const __nv_bfloat16* Vs = Ks + L::tile;
    // Skip the step when none of this warp's rows sees any of its keys (causal: all keys after the last row;
    // window: all keys before the first row's window).
    const bool after = j0 > wq0 + 15;
    const bool before = window > 0 && j0 + kKeys + window <= wq0 + 1;
    if (!after && !before) {
      // S = Q Kᵀ: 16 rows × kKeys keys as kScoreTiles n-tiles of 8 keys.
      float s[kScoreTiles][4];
      for (int j = 0; j < kScoreTiles; ++j) {
        s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
        if constexpr (kSteps % 2 == 0) {
          for (int k = 0; k < kSteps; k += 2) {  // B fragments of two k-steps per ldmatrix
            unsigned b[4];
            ldmatrix_x4(b, Ks + (8 * j + lane % 8) * L::ldh + 16 * k + (lane / 8) * 8);
            mma(s[j], qf[k], b[0], b[1]);
            mma(s[j], qf[k + 1], b[2], b[3]);
          }
        } else {
          for (int k = 0; k < kSteps; ++k) {
            unsigned b[2];
            ldmatrix_x2(b, Ks + (8 * j + lane % 8) * L::ldh + 16 * k + ((lane / 8) % 2) * 8);
            mma(s[j], qf[k], b[0], b[1]);
          }
        }
      }
      // Mask (only where a step crosses a row's causal edge or window start), scale, online softmax.
      const bool edge = j0 + kKeys - 1 > wq0 || (window > 0 && j0 + window <= wq0 + 15);
      for (int r = 0; r < 2; ++r) {
        float mx = -INFINITY;
        for (int j = 0; j < kScoreTiles; ++j)
          for (int e = 0; e < 2; ++e) {
            float& v = s[j][2 * r + e];
            v *= scale_log2;
            if (edge) {
              const std::size_t key = j0 + 8 * j + 2 * t + e;
              if (key > q_row[r] || (window > 0 && key + window <= q_row[r])) v = -INFINITY;
            }
            mx = fmaxf(mx, v);
          }
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float m_new = fmaxf(m[r], mx), base = m_new == -INFINITY ? 0.0f : m_new;  // base: no (−∞) − (−∞)
        const float alpha = exp2f(m[r] - base);
        float sum = 0.0f;
        for (int j = 0; j < kScoreTiles; ++j)
          for (int e = 0; e < 2; ++e) {
            float& v = s[j][2 * r + e];
            v = exp2f(v - base);
            sum += v;
          }
        l[r] = l[r] * alpha + sum;
        m[r] = m_new;
        for (int c = 0; c < kTiles; ++c) {
          o[c][2 * r] *= alpha;
          o[c][2 * r + 1] *= alpha;
        }
      }
      // O += P V: P's k-step kk is score tiles 2kk and 2kk + 1, rounded to bf16 in the A layout.
      for (int kk = 0; kk < kKeys / 16; ++kk) {
        const unsigned a[4] = {pack_bf16(s[2 * kk][0], s[2 * kk][1]), pack_bf16(s[2 * kk][2], s[2 * kk][3]),
                               pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]), pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3])};
        const __nv_bfloat16* vrow = Vs + (16 * kk + lane % 8 + ((lane / 8) % 2) * 8) * L::ldh;
        static_assert(kTiles % 2 == 0, "two output n-tiles per ldmatrix");
        for (int c = 0; c < kTiles; c += 2) {  // B fragments of two output n-tiles per ldmatrix
          unsigned b[4];
          ldmatrix_x4_trans(b, vrow + 8 * c + (lane / 16) * 8);
          mma(o[c], a, b[0], b[1]);
          mma(o[c + 1], a, b[2], b[3]);
        }
      }
    }
    __syncthreads();  // every warp is done with this buffer before the next step's load overwrites it
  }
  // out = O / l, the quad's partial sums added first.
  const std::size_t local = t0 + warp * 16;
  for (int r = 0; r < 2; ++r) {
    float sum = l[r];
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
    const std::size_t row = local + g + 8 * r;
    if (row >= n) continue;
    const std::size_t at = (seq * n + row) * ldq + hh * HD + 2 * t;
    for (int c = 0; c < kTiles; ++c) {
      const float a = o[c][2 * r] * inv, b = o[c][2 * r + 1] * inv;
      if (out) store_pair(out + at + 8 * c, a, b);
      if (out_bf16) store_pair(out_bf16 + at + 8 * c, a, b);
    }
  }
#endif
}

template <int HD>
bool launch(const float* q, const __nv_bfloat16* K, const __nv_bfloat16* V, float* out, __nv_bfloat16* out_bf16, std::size_t n,
            std::size_t sequences, std::size_t pos0, std::size_t capacity, int nh, int nkv, int window, float scale) {
  constexpr std::size_t bytes = Layout<HD>::bytes;
  static const bool configured =
      cudaFuncSetAttribute(flash_attention<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)) == cudaSuccess;
  if (!configured) return false;
  const dim3 grid(static_cast<unsigned>((n + kRows - 1) / kRows), static_cast<unsigned>(nh), static_cast<unsigned>(sequences));
  flash_attention<HD><<<grid, kThreads, bytes>>>(q, K, V, out, out_bf16, n, pos0, capacity, nh, nkv, window, scale);
  return true;
}

}  // namespace

bool flash_attention_supports(int head_dim) {
  int device = 0, major = 0;
  if (cudaGetDevice(&device) != cudaSuccess || cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess)
    return false;
  return major >= 8 && (head_dim == 16 || head_dim == 32 || head_dim == 64 || head_dim == 128 || head_dim == 256);
}

bool launch_flash_attention(const float* q, const std::uint16_t* K, const std::uint16_t* V, float* out, std::uint16_t* out_bf16,
                            std::size_t n, std::size_t sequences, std::size_t pos0, std::size_t capacity, int nh, int nkv, int head_dim,
                            int window, float scale) {
  const auto* k = reinterpret_cast<const __nv_bfloat16*>(K);
  const auto* v = reinterpret_cast<const __nv_bfloat16*>(V);
  auto* ob = reinterpret_cast<__nv_bfloat16*>(out_bf16);
  switch (head_dim) {
    case 16: return launch<16>(q, k, v, out, ob, n, sequences, pos0, capacity, nh, nkv, window, scale);
    case 32: return launch<32>(q, k, v, out, ob, n, sequences, pos0, capacity, nh, nkv, window, scale);
    case 64: return launch<64>(q, k, v, out, ob, n, sequences, pos0, capacity, nh, nkv, window, scale);
    case 128: return launch<128>(q, k, v, out, ob, n, sequences, pos0, capacity, nh, nkv, window, scale);
    case 256: return launch<256>(q, k, v, out, ob, n, sequences, pos0, capacity, nh, nkv, window, scale);
    default: return false;
  }
}

}  // namespace tqb::cuda_forward
