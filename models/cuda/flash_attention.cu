// Causal GQA attention on tensor cores, one pass over the keys with an online softmax (FlashAttention-2's
// scheme: Dao 2023, §3.1: each warp owns query rows, so the running max and sum need no block-wide
// reduction). Products on bf16 tensor cores with fp32 accumulation (WMMA 16×16×16, sm_80 and later);
// softmax statistics, the output accumulator and the rescaling in fp32; P rounded to bf16 for P·V as
// FlashAttention does. Why our own kernel and not cuDNN's SDPA: cuDNN is not among the project's
// dependencies (and not on the CI machine), and the quantized KV cache of issue 25 will read its codes in this
// same loop. The cache is bf16 (what torch keeps for a bf16 model); the queries come in fp32 and are rounded here.
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <cmath>
#include <cstddef>

#include "models/cuda/flash_attention.hpp"

namespace tqb::cuda_forward {
namespace {

constexpr int kWarps = 8;
constexpr int kRows = 16 * kWarps;  // queries per block: 16 rows per warp
constexpr int kKeys = 64;           // keys per step
constexpr int kThreads = 32 * kWarps;

template <int HD>
struct Layout {
  static constexpr int ldh = HD + 8;      // bf16 rows of Q, K, V (a 16-byte shift per row: fewer bank conflicts)
  static constexpr int lds = kKeys + 4;   // fp32 scores (also the output's staging, 64 columns at a time)
  static constexpr int ldp = kKeys + 8;   // bf16 probabilities
  static constexpr std::size_t q_bytes = std::size_t{kRows} * ldh * 2, s_bytes = std::size_t{kWarps} * 16 * lds * 4;
  // Q is only read into registers before the first step, so the scores reuse its bytes.
  static constexpr std::size_t k = 0, v = k + kKeys * ldh * 2, p = v + kKeys * ldh * 2, qs = p + kWarps * 16 * ldp * 2,
                               bytes = qs + (q_bytes > s_bytes ? q_bytes : s_bytes);
};

// rows × HD fp32 (row stride ld) → bf16 in shared memory (row stride ldh); rows at or past `valid` are zeros.
template <int HD>
__device__ void load_rows(const float* src, std::size_t ld, std::size_t valid, int rows, __nv_bfloat16* dst) {
  constexpr int per_row = HD / 4;
  for (int i = threadIdx.x; i < rows * per_row; i += kThreads) {
    const int r = i / per_row, c = (i % per_row) * 4;
    float4 x = make_float4(0, 0, 0, 0);
    if (static_cast<std::size_t>(r) < valid) x = *reinterpret_cast<const float4*>(src + r * ld + c);
    auto* d = reinterpret_cast<__nv_bfloat162*>(dst + r * Layout<HD>::ldh + c);
    d[0] = __floats2bfloat162_rn(x.x, x.y);
    d[1] = __floats2bfloat162_rn(x.z, x.w);
  }
}
template <int HD>
__device__ void load_rows(const __nv_bfloat16* src, std::size_t ld, std::size_t valid, int rows, __nv_bfloat16* dst) {
  constexpr int per_row = HD / 8;  // 16 bytes at a time
  for (int i = threadIdx.x; i < rows * per_row; i += kThreads) {
    const int r = i / per_row, c = (i % per_row) * 8;
    uint4 x = make_uint4(0, 0, 0, 0);
    if (static_cast<std::size_t>(r) < valid) x = *reinterpret_cast<const uint4*>(src + r * ld + c);
    *reinterpret_cast<uint4*>(dst + r * Layout<HD>::ldh + c) = x;
  }
}

template <int HD, typename Kv>
__global__ void __launch_bounds__(kThreads, 2) flash_attention(const float* q, const Kv* K, const Kv* V, float* out, std::size_t n,
                                                            std::size_t pos0, std::size_t capacity, int nh, int nkv, int window,
                                                            float scale) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  using namespace nvcuda;
  using L = Layout<HD>;
  using Acc = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;
  extern __shared__ __align__(128) unsigned char shared[];
  __shared__ float row_scale[kWarps][16];  // per row: the step's rescaling of the output, then 1 / the sum
  auto* Ks = reinterpret_cast<__nv_bfloat16*>(shared + L::k);
  auto* Vs = reinterpret_cast<__nv_bfloat16*>(shared + L::v);
  auto* Qs = reinterpret_cast<__nv_bfloat16*>(shared + L::qs);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float* S = reinterpret_cast<float*>(shared + L::qs) + warp * 16 * L::lds;
  auto* P = reinterpret_cast<__nv_bfloat16*>(shared + L::p) + warp * 16 * L::ldp;

  const int hh = blockIdx.y, kvh = hh / (nh / nkv);
  const std::size_t seq = blockIdx.z, t0 = static_cast<std::size_t>(blockIdx.x) * kRows;
  const std::size_t ldq = static_cast<std::size_t>(nh) * HD, ldkv = static_cast<std::size_t>(nkv) * HD, total = pos0 + n;
  const Kv* Kb = K + seq * capacity * ldkv + kvh * HD;
  const Kv* Vb = V + seq * capacity * ldkv + kvh * HD;
  load_rows<HD>(q + (seq * n + t0) * ldq + hh * HD, ldq, n - t0, kRows, Qs);
  // Which row of its 16 × 16 tile each accumulator element a thread holds is the fragment's private layout: read
  // it once by loading a tile whose every element is its row number (the output stays in registers, rescaled
  // row by row).
  float* rows_tile = reinterpret_cast<float*>(P);
  for (int i = lane; i < 256; i += 32) rows_tile[i] = static_cast<float>(i / 16);
  __syncthreads();
  Acc row_of;
  wmma::load_matrix_sync(row_of, rows_tile, 16, wmma::mem_row_major);
  wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> qf[HD / 16];
  for (int k = 0; k < HD / 16; ++k) wmma::load_matrix_sync(qf[k], Qs + warp * 16 * L::ldh + k * 16, L::ldh);
  Acc o[HD / 16];
  for (auto& f : o) wmma::fill_fragment(f, 0.0f);

  // This lane's row (two lanes per row, each every other key of a step) and its running max m and sum l.
  const int r = lane / 2, half = lane % 2;
  const std::size_t qpos = pos0 + t0 + warp * 16 + r;
  float m = -INFINITY, l = 0.0f;
  const std::size_t last = pos0 + (n < t0 + kRows ? n : t0 + kRows);  // keys < last are visible to some row here
  const std::size_t first_visible = window > 0 && pos0 + t0 + 1 > static_cast<std::size_t>(window) ? pos0 + t0 + 1 - window : 0;
  for (std::size_t j0 = first_visible / kKeys * kKeys; j0 < last; j0 += kKeys) {
    __syncthreads();  // every warp is done with the previous K and V (and, the first time, with Q)
    load_rows<HD>(Kb + j0 * ldkv, ldkv, total - j0, kKeys, Ks);
    load_rows<HD>(Vb + j0 * ldkv, ldkv, total - j0, kKeys, Vs);
    __syncthreads();
    for (int c = 0; c < kKeys / 16; ++c) {  // S = Q Kᵀ (16 rows × 64 keys)
      Acc acc;
      wmma::fill_fragment(acc, 0.0f);
      for (int k = 0; k < HD / 16; ++k) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> kf;
        wmma::load_matrix_sync(kf, Ks + c * 16 * L::ldh + k * 16, L::ldh);
        wmma::mma_sync(acc, qf[k], kf, acc);
      }
      wmma::store_matrix_sync(S + c * 16, acc, L::lds, wmma::mem_row_major);
    }
    __syncwarp();
    // Online softmax over this lane's 32 keys (every other one): mask (causal, window), max, exponentials, sum.
    float* srow = S + r * L::lds + half;
    float mx = -INFINITY;
    for (int c = 0; c < 32; ++c) {
      const std::size_t j = j0 + 2 * c + half;
      const bool visible = j <= qpos && (window <= 0 || j + window > qpos);
      const float v = visible ? srow[2 * c] * scale : -INFINITY;
      srow[2 * c] = v;
      mx = fmaxf(mx, v);
    }
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    const float m_new = fmaxf(m, mx), base = m_new == -INFINITY ? 0.0f : m_new;  // base: no (−∞) − (−∞)
    const float alpha = __expf(m - base);
    float sum = 0.0f;
    __nv_bfloat16* prow = P + r * L::ldp + half;
    for (int c = 0; c < 32; ++c) {
      const float p = __expf(srow[2 * c] - base);
      sum += p;
      prow[2 * c] = __float2bfloat16_rn(p);
    }
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    l = l * alpha + sum;
    m = m_new;
    if (half == 0) row_scale[warp][r] = alpha;
    __syncwarp();
    // O ← diag(alpha) O + P V
    for (auto& f : o)
      for (int i = 0; i < f.num_elements; ++i) f.x[i] *= row_scale[warp][static_cast<int>(row_of.x[i])];
    wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> pf[kKeys / 16];
    for (int k = 0; k < kKeys / 16; ++k) wmma::load_matrix_sync(pf[k], P + k * 16, L::ldp);
    for (int c = 0; c < HD / 16; ++c)
      for (int k = 0; k < kKeys / 16; ++k) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> vf;
        wmma::load_matrix_sync(vf, Vs + k * 16 * L::ldh + c * 16, L::ldh);
        wmma::mma_sync(o[c], pf[k], vf, o[c]);
      }
    __syncwarp();
  }
  // out = O / l, through this warp's score tile 64 columns at a time.
  if (half == 0) row_scale[warp][r] = 1.0f / l;
  const std::size_t t = t0 + warp * 16 + r;
  constexpr int kChunk = HD < 64 ? HD : 64;
  for (int c0 = 0; c0 < HD; c0 += kChunk) {
    __syncwarp();
    for (int c = 0; c < kChunk / 16; ++c) wmma::store_matrix_sync(S + c * 16, o[c0 / 16 + c], L::lds, wmma::mem_row_major);
    __syncwarp();
    if (t < n) {
      float* dst = out + (seq * n + t) * ldq + hh * HD + c0;
      for (int c = half; c < kChunk; c += 2) dst[c] = S[r * L::lds + c] * row_scale[warp][r];
    }
  }
#endif
}

template <int HD, typename Kv>
bool launch(const float* q, const Kv* K, const Kv* V, float* out, std::size_t n, std::size_t sequences, std::size_t pos0,
            std::size_t capacity, int nh, int nkv, int window, float scale) {
  constexpr std::size_t bytes = Layout<HD>::bytes;
  static const bool configured =
      cudaFuncSetAttribute(flash_attention<HD, Kv>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)) == cudaSuccess;
  if (!configured) return false;
  const dim3 grid(static_cast<unsigned>((n + kRows - 1) / kRows), static_cast<unsigned>(nh), static_cast<unsigned>(sequences));
  flash_attention<HD, Kv><<<grid, kThreads, bytes>>>(q, K, V, out, n, pos0, capacity, nh, nkv, window, scale);
  return true;
}

template <typename Kv>
bool launch_for(const float* q, const Kv* K, const Kv* V, float* out, std::size_t n, std::size_t sequences, std::size_t pos0,
                std::size_t capacity, int nh, int nkv, int head_dim, int window, float scale) {
  switch (head_dim) {
    case 16: return launch<16>(q, K, V, out, n, sequences, pos0, capacity, nh, nkv, window, scale);
    case 32: return launch<32>(q, K, V, out, n, sequences, pos0, capacity, nh, nkv, window, scale);
    case 64: return launch<64>(q, K, V, out, n, sequences, pos0, capacity, nh, nkv, window, scale);
    case 128: return launch<128>(q, K, V, out, n, sequences, pos0, capacity, nh, nkv, window, scale);
    case 256: return launch<256>(q, K, V, out, n, sequences, pos0, capacity, nh, nkv, window, scale);
    default: return false;
  }
}

}  // namespace

bool flash_attention_supports(int head_dim) {
  int device = 0, major = 0;
  if (cudaGetDevice(&device) != cudaSuccess || cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess)
    return false;
  return major >= 8 && (head_dim == 16 || head_dim == 32 || head_dim == 64 || head_dim == 128 || head_dim == 256);
}

bool launch_flash_attention(const float* q, const std::uint16_t* K, const std::uint16_t* V, float* out, std::size_t n,
                                 std::size_t sequences, std::size_t pos0, std::size_t capacity, int nh, int nkv, int head_dim, int window,
                                 float scale) {
  return launch_for(q, reinterpret_cast<const __nv_bfloat16*>(K), reinterpret_cast<const __nv_bfloat16*>(V), out, n, sequences, pos0,
                    capacity, nh, nkv, head_dim, window, scale);
}

}  // namespace tqb::cuda_forward
