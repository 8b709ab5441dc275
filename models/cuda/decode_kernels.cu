// One decode step's kernels with the token and position in device memory (decode_kernels.hpp). The attention is
// flash-decoding's split over the keys (Dao et al. 2023, "Flash-Decoding for long-context inference"): at one query
// per head the prefill kernel's 64-row tiles would idle, so each block takes a key range of one KV head and up to
// four of the query heads that read it (GQA: the heads' warps read the same rows, through L1), keeps an online
// softmax per head, and a second kernel combines the ranges. Each warp takes tiles of 32 keys, one key per lane: a
// lane computes its key's whole dot product (no reduction across lanes per key), the tile's softmax update costs one
// max across the warp, and P·V then runs with the lanes over the head's dimensions, the tile's probabilities read
// from shared memory. Sums and softmax in fp32; the cache is read in its own precision.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "models/cuda/decode_kernels.hpp"
#include "models/cuda/kv_codec_kernels.hpp"
#include "models/cuda/kv_codes.cuh"

namespace tqb::cuda_forward {
namespace {

constexpr int kWarps = 4, kThreads = 32 * kWarps;
constexpr int kTile = 32;          // keys per warp step, one per lane
constexpr int kMaxPer = 8;         // head_dim ≤ 256: in P·V each lane holds up to 8 of the head's dims
constexpr std::size_t kMaxSplits = 128;

// Keys per split: a whole number of tiles, at most kMaxSplits splits (short caches: one tile a split, so that many
// blocks share the few keys there are).
std::size_t split_keys(std::size_t capacity) {
  const std::size_t by_count = (capacity + kMaxSplits - 1) / kMaxSplits;
  return (std::max<std::size_t>(by_count, kTile) + kTile - 1) / kTile * kTile;
}
std::size_t splits_for(std::size_t capacity) { return (capacity + split_keys(capacity) - 1) / split_keys(capacity); }

__device__ __forceinline__ float load(const float* p) { return *p; }
__device__ __forceinline__ float load(const __nv_bfloat16* p) { return __bfloat162float(*p); }

__global__ void rope_tables_at(const DecodeState* st, const float* inv_freq, int half, float* cs, float* sn) {
  const double pos = st->pos;
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    const double a = pos * static_cast<double>(inv_freq[i]);
    cs[i] = static_cast<float>(cos(a));
    sn[i] = static_cast<float>(sin(a));
  }
}

// One query head's q·k for one key's row (qh: the head's scaled query in shared memory). HD > 0: the head_dim known at
// compile time (every load of the row issued at once); 0: hd at run time.
template <typename KV, int HD>
__device__ __forceinline__ float key_score(const KV* kr, const float* qh, int hd) {
  float s = 0;
  if (HD > 0 || hd % 8 == 0) {  // 16-byte loads (rows start on 16 bytes: hd·sizeof(KV) is a multiple of 16)
    const int dims = HD > 0 ? HD : hd;
#pragma unroll
    for (int d0 = 0; d0 < (HD > 0 ? HD : 1 << 30); d0 += 8) {
      if (HD == 0 && d0 >= dims) break;
      float k8[8];
      if constexpr (sizeof(KV) == 2) {
        const uint4 raw = *reinterpret_cast<const uint4*>(kr + d0);
        const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const float2 f = __bfloat1622float2(h[i]);
          k8[2 * i] = f.x;
          k8[2 * i + 1] = f.y;
        }
      } else {
        const float4 a = *reinterpret_cast<const float4*>(kr + d0), b = *reinterpret_cast<const float4*>(kr + d0 + 4);
        k8[0] = a.x, k8[1] = a.y, k8[2] = a.z, k8[3] = a.w, k8[4] = b.x, k8[5] = b.y, k8[6] = b.z, k8[7] = b.w;
      }
      const float4 a = *reinterpret_cast<const float4*>(qh + d0), b = *reinterpret_cast<const float4*>(qh + d0 + 4);
      s += a.x * k8[0] + a.y * k8[1] + a.z * k8[2] + a.w * k8[3] + b.x * k8[4] + b.y * k8[5] + b.z * k8[6] + b.w * k8[7];
    }
  } else {
    for (int d = 0; d < hd; ++d) s += qh[d] * load(kr + d);
  }
  return s;
}

// The PER values of a V row this lane owns: with HD > 0 the contiguous dims lane·PER … (one vector load), else the
// dims lane, lane + 32, … below hd.
template <typename KV, int HD, int PER>
__device__ __forceinline__ void value_dims(const KV* vr, int lane, int hd, float (&v)[PER]) {
  if constexpr (HD > 0 && sizeof(KV) == 2 && PER % 2 == 0) {
    const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(vr + lane * PER);
    if constexpr (PER == 8) {
      const uint4 raw = *reinterpret_cast<const uint4*>(h);
      const __nv_bfloat162* r = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
      for (int i = 0; i < 4; ++i) v[2 * i] = __low2float(r[i]), v[2 * i + 1] = __high2float(r[i]);
    } else if constexpr (PER == 4) {
      const uint2 raw = *reinterpret_cast<const uint2*>(h);
      const __nv_bfloat162* r = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
      for (int i = 0; i < 2; ++i) v[2 * i] = __low2float(r[i]), v[2 * i + 1] = __high2float(r[i]);
    } else {
      const __nv_bfloat162 r = *h;
      v[0] = __low2float(r), v[1] = __high2float(r);
    }
  } else if constexpr (HD > 0) {
#pragma unroll
    for (int e = 0; e < PER; ++e) v[e] = load(vr + lane * PER + e);
  } else {
#pragma unroll
    for (int e = 0; e < PER; ++e) {
      const int d = lane + 32 * e;
      v[e] = d < hd ? load(vr + d) : 0.0f;
    }
  }
}

// Where the split kernel reads keys and values (the dense cache's rows; a coded cache has its own staged kernel below,
// decode_attention_split_coded, which decodes a tile once for the group's heads). A reader gives a key's score against the warp's (scaled) query and
// the PER values of a V row a lane owns; it may transform the query first (prepare_query) and keep tables in the
// block's shared memory (setup writes them before a __syncthreads; score and values read them). Readers are const:
// a kernel parameter written to (or indexed at run time) is copied to the thread's stack, and every member read
// then goes through local memory (288 bytes of stack frame, seen with -Xptxas -v).
// The dense cache: rows of nkv·hd, bf16 or fp32.
template <typename KV>
struct DenseRows {
  const KV *K, *V;
  std::size_t ld;  // nkv·hd
  __device__ void setup(float*) const {}
  template <int HD>
  __device__ void prepare_query(float*, int, int) const {}
  template <int HD>
  __device__ float score(const float*, std::size_t j, int kvh, const float* qh, int hd) const {
    return key_score<KV, HD>(K + j * ld + static_cast<std::size_t>(kvh) * hd, qh, hd);
  }
  template <int HD, int PER>
  __device__ void values(const float*, std::size_t j, int kvh, int lane, int hd, float (&v)[PER]) const {
    value_dims<KV, HD, PER>(V + j * ld + static_cast<std::size_t>(kvh) * hd, lane, hd, v);
  }
};

// One tile's online-softmax step, shared by the split kernels: sc is this lane's key score (valid: the key is in the
// range; at least one lane's is), m the warp's running max, l this lane's part of the sum, acc its P·V sums (rescaled
// to the new max); the tile's probabilities go to ps (the warp's 32 floats), ready for P·V after the __syncwarp.
template <int PER>
__device__ __forceinline__ void softmax_tile(float sc, bool valid, float& m, float& l, float (&acc)[PER], float* ps, int lane) {
  float mt = sc;
  for (int o = 16; o > 0; o /= 2) mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, o));
  const float mn = fmaxf(m, mt), c = __expf(m - mn), p = valid ? __expf(sc - mn) : 0.0f;  // mt is finite: a key is valid
  l = l * c + p;
#pragma unroll
  for (int e = 0; e < PER; ++e) acc[e] *= c;
  m = mn;
  ps[lane] = p;
  __syncwarp();
}

// The end of a split block: each warp's (max, sum, P·V) put in shared memory, then each head's warps combined (several
// where the group is smaller than the block: warp g + s·heads is head g's share s) and stored for the combine kernel.
// wacc: kWarps rows of DIMS floats.
template <int HD, int PER>
__device__ void store_partials(float m, float l, const float (&acc)[PER], int heads, int shares, int group, int first_head, int kvh,
                               int split, int splits, int hd, float* wm, float* wl, float* wacc, float* partial) {
  constexpr int DIMS = HD > 0 ? HD : kMaxPer * 32;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int o = 16; o > 0; o /= 2) l += __shfl_xor_sync(0xffffffffu, l, o);
  if (lane == 0) {
    wm[warp] = m;
    wl[warp] = l;
  }
#pragma unroll
  for (int e = 0; e < PER; ++e) {
    const int d = HD > 0 ? lane * PER + e : lane + 32 * e;
    if (d < hd) wacc[warp * DIMS + d] = acc[e];
  }
  __syncthreads();
  for (int i = threadIdx.x; i < heads * hd; i += kThreads) {
    const int gg = i / hd, d = i % hd;
    if (first_head + gg >= group) continue;
    float mx = -INFINITY;
    for (int s = 0; s < shares; ++s) mx = fmaxf(mx, wm[gg + s * heads]);
    float sum = 0, a = 0;
    if (mx != -INFINITY)
      for (int s = 0; s < shares; ++s) {
        const int w = gg + s * heads;
        if (wm[w] == -INFINITY) continue;
        const float f = __expf(wm[w] - mx);
        sum += wl[w] * f;
        a += wacc[w * DIMS + d] * f;
      }
    float* P = partial + (static_cast<std::size_t>(kvh * group + first_head + gg) * splits + split) * (hd + 2);
    P[2 + d] = a;
    if (d == 0) {
      P[0] = mx;
      P[1] = sum;
    }
  }
}

// Block (KV head, key range, head chunk): partial[head][range] = (max score, Σ exp(s − max), Σ exp(s − max) v). Each
// warp takes one query head (GQA: the block's heads read the same K and V rows, which L1 serves to the others) and,
// where the group has fewer heads than warps, a share of the range's tiles. One head a warp keeps a warp's chain of
// dependent instructions short: with a head's loop per key, four heads a lane made a decode step's few blocks
// latency-bound (ncu on the H100: one warp a scheduler, 13 cycles an instruction, 30 µs a layer at ctx 600).
// HD: the head_dim when known at compile time (64, 128, 256), else 0.
template <typename Reader, int HD>
__global__ void __launch_bounds__(kThreads) decode_attention_split(const float* q, const Reader reader, const DecodeState* st,
                                                                   std::size_t chunk, int splits, int nh, int nkv, int hd, int window,
                                                                   float scale, float* partial) {
  constexpr int PER = HD > 0 ? HD / 32 : kMaxPer;  // V dims per lane
  constexpr int DIMS = HD > 0 ? HD : kMaxPer * 32;
  constexpr int kBatch = 8;  // V rows loaded together
  __shared__ __align__(16) float qs[kWarps][DIMS];  // each warp's query, scaled
  __shared__ float ps[kWarps][kTile];               // a tile's probabilities, per warp
  __shared__ float wm[kWarps], wl[kWarps];
  __shared__ float wacc[kWarps][DIMS];
  __shared__ float tables[32];
  reader.setup(tables);
  __syncthreads();
  if (HD > 0) hd = HD;
  const int group = nh / nkv, heads = min(group, kWarps), shares = kWarps / heads;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = warp % heads, share = warp / heads;
  const int kvh = blockIdx.x, split = blockIdx.y, first_head = blockIdx.z * heads;  // within the group
  const bool works = share < shares && first_head + g < group;
  const int head = kvh * group + first_head + g;
  const std::size_t pos = static_cast<std::size_t>(st->pos), visible = pos + 1;
  const std::size_t first = window > 0 && visible > static_cast<std::size_t>(window) ? visible - window : 0;
  const std::size_t start = split * chunk, begin = max(start, first), end = min(start + chunk, visible);
  float m = -INFINITY, l = 0, acc[PER];  // l: this lane's part of the sum
#pragma unroll
  for (int e = 0; e < PER; ++e) acc[e] = 0;
  if (works) {
    for (int d = lane; d < hd; d += 32) qs[warp][d] = q[static_cast<std::size_t>(head) * hd + d] * scale;
    __syncwarp();
    reader.template prepare_query<HD>(qs[warp], kvh, lane);
    // Every tile taken has a visible key (the range is empty when the window starts after it).
    const std::size_t stop = begin < end ? end : start;
    for (std::size_t j0 = start + share * kTile; j0 < stop; j0 += static_cast<std::size_t>(kTile) * shares) {
      if (j0 + kTile <= begin) continue;  // the whole tile before the window (uniform over the warp)
      const std::size_t j = j0 + lane;
      const bool valid = j >= begin && j < end;
      const float sc = valid ? reader.template score<HD>(tables, j, kvh, qs[warp], hd) : -INFINITY;
      softmax_tile(sc, valid, m, l, acc, ps[warp], lane);
      // P·V over the tile's keys up to the last visible one (rows past it are not written; a masked key's p is 0),
      // kBatch rows' loads in flight at a time.
      const int keys = static_cast<int>(min(static_cast<std::size_t>(kTile), end - j0));
      for (int k0 = 0; k0 < keys; k0 += kBatch) {
        float vx[kBatch][PER];
#pragma unroll
        for (int u = 0; u < kBatch; ++u) {
          if (k0 + u < keys) {
            reader.template values<HD, PER>(tables, j0 + k0 + u, kvh, lane, hd, vx[u]);
          } else {
#pragma unroll
            for (int e = 0; e < PER; ++e) vx[u][e] = 0.0f;
          }
        }
#pragma unroll
        for (int u = 0; u < kBatch; ++u) {
          const float pu = ps[warp][(k0 + u) % kTile];  // past the tile's keys: a masked lane's 0, times a zero row
#pragma unroll
          for (int e = 0; e < PER; ++e) acc[e] += pu * vx[u][e];
        }
      }
      __syncwarp();  // ps is rewritten by the next tile
    }
  }
  store_partials<HD, PER>(m, l, acc, heads, shares, group, first_head, kvh, split, splits, hd, wm, wl, &wacc[0][0], partial);
}

// The coded cache's split kernel (kv_codec_kernels.hpp; KB, VB: key and value bits). ⟨q, k̂⟩ = ‖y‖ ⟨Π q, lut[codes]⟩,
// so each warp rotates its query into the keys' domain once; values are summed in their rotated domain and the combine
// kernel rotates each head's output back. The block decodes each tile of 32 keys once into shared memory (K and V rows
// of ‖y‖ · lut[code], fp32), and then every warp (one query head of the GQA group) reads them as the dense path reads
// its rows: the decode is shared by the group's heads instead of repeated per head. A thread holds the next tile's
// codes in registers while the block works on the current one (one round trip to memory per tile, issued a tile
// ahead). ncu on the H100 (ctx 32k, 4-bit, Llama-3-8B shapes), a warp per head decoding its own keys and values:
// 162 µs a layer, 38% issue-active, stalled on long scoreboard, 1.85k instructions per warp and tile.
template <int HD, int KB, int VB>
struct CodedTile {
  static constexpr int kTasks = HD;  // 32 rows × HD/32 chunks of 32 codes (KB or VB words each)
  static constexpr int kPer = (kTasks + kThreads - 1) / kThreads;
  static constexpr int kStride = HD + 4;  // a staged row's floats: lane j's float4 at row j hits banks 4j… (no conflicts)
  std::uint32_t kw[kPer][KB], vw[kPer][VB];
  float kn[kPer], vn[kPer];

  template <int N>
  __device__ static void load_words(const std::uint32_t* p, std::uint32_t (&w)[N]) {
    if constexpr (N == 4) {  // 16-byte aligned: rows of HD/2 bytes, chunks of 16
      const uint4 u = *reinterpret_cast<const uint4*>(p);
      w[0] = u.x, w[1] = u.y, w[2] = u.z, w[3] = u.w;
    } else if constexpr (N == 2) {
      const uint2 u = *reinterpret_cast<const uint2*>(p);
      w[0] = u.x, w[1] = u.y;
    } else {
#pragma unroll
      for (int i = 0; i < N; ++i) w[i] = p[i];
    }
  }
  // This thread's chunks of tile [j0, j0 + 32) of KV head kvh; rows outside [begin, end) read as zero (never loaded:
  // past the last written row the buffer holds whatever was there).
  __device__ void load(const CodedKvLayer& L, std::size_t capacity, int kvh, std::size_t j0, std::size_t begin, std::size_t end) {
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      const int t = threadIdx.x + i * kThreads, c = t / 32, r = t % 32;
      const std::size_t j = j0 + r, at = static_cast<std::size_t>(kvh) * capacity + j;
      if (t < kTasks && j >= begin && j < end) {
        load_words(reinterpret_cast<const std::uint32_t*>(L.k_codes + at * (HD * KB / 8)) + c * KB, kw[i]);
        load_words(reinterpret_cast<const std::uint32_t*>(L.v_codes + at * (HD * VB / 8)) + c * VB, vw[i]);
        kn[i] = L.k_norms[at];
        vn[i] = L.v_norms[at];
      } else {
#pragma unroll
        for (int w = 0; w < KB; ++w) kw[i][w] = 0;
#pragma unroll
        for (int w = 0; w < VB; ++w) vw[i][w] = 0;
        kn[i] = vn[i] = 0;
      }
    }
  }
  // Writes the chunks as ‖y‖ · lut[code] into ks and vs (32 rows of kStride). lut: 16 key centroids, then 16 value ones.
  __device__ void stage(const float* lut, float* ks, float* vs) const {
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      const int t = threadIdx.x + i * kThreads, c = t / 32, r = t % 32;
      if (t >= kTasks) continue;
      float* kd = ks + r * kStride + c * 32;
      float* vd = vs + r * kStride + c * 32;
#pragma unroll
      for (int e = 0; e < 32; e += 4) {
        *reinterpret_cast<float4*>(kd + e) = make_float4(lut[code_at<KB>(kw[i], e)] * kn[i], lut[code_at<KB>(kw[i], e + 1)] * kn[i],
                                                         lut[code_at<KB>(kw[i], e + 2)] * kn[i], lut[code_at<KB>(kw[i], e + 3)] * kn[i]);
        *reinterpret_cast<float4*>(vd + e) =
            make_float4(lut[16 + code_at<VB>(vw[i], e)] * vn[i], lut[16 + code_at<VB>(vw[i], e + 1)] * vn[i],
                        lut[16 + code_at<VB>(vw[i], e + 2)] * vn[i], lut[16 + code_at<VB>(vw[i], e + 3)] * vn[i]);
      }
    }
  }
};

// Shared memory of the staged kernel's two tiles (dynamic: 66.6 KB at head_dim 256).
template <int HD>
constexpr std::size_t staged_tile_bytes() {
  return 2 * static_cast<std::size_t>(kTile) * (HD + 4) * sizeof(float);
}

// Block (KV head, key range, head chunk), as decode_attention_split, every warp of the block on every tile (the tile is
// staged by all of them); warps past the group's heads only stage.
template <int HD, int KB, int VB>
__global__ void __launch_bounds__(kThreads) decode_attention_split_coded(const float* q, const CodedKvLayer L, std::size_t capacity,
                                                                         const DecodeState* st, std::size_t chunk, int splits, int nh,
                                                                         int nkv, int window, float scale, float* partial) {
  using Tile = CodedTile<HD, KB, VB>;
  constexpr int PER = HD / 32, S = Tile::kStride;
  extern __shared__ float4 staged_smem[];
  float* ks = reinterpret_cast<float*>(staged_smem);
  float* vs = ks + kTile * S;
  __shared__ __align__(16) float qs[kWarps][HD];
  __shared__ float ps[kWarps][kTile];
  __shared__ float wm[kWarps], wl[kWarps];
  __shared__ __align__(16) float wacc[kWarps][HD];
  __shared__ float lut[32];
  if (threadIdx.x < 16) lut[threadIdx.x] = param_at(L.key.lut, threadIdx.x);
  else if (threadIdx.x < 32) lut[threadIdx.x] = param_at(L.value.lut, threadIdx.x - 16);
  const int group = nh / nkv, heads = min(group, kWarps);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int kvh = blockIdx.x, split = blockIdx.y, first_head = blockIdx.z * heads;
  const bool works = warp < heads && first_head + warp < group;
  const int head = kvh * group + first_head + warp;
  const std::size_t pos = static_cast<std::size_t>(st->pos), visible = pos + 1;
  const std::size_t first = window > 0 && visible > static_cast<std::size_t>(window) ? visible - window : 0;
  const std::size_t start = split * chunk, begin = max(start, first), end = min(start + chunk, visible);
  if (works) {
    for (int d = lane; d < HD; d += 32) qs[warp][d] = q[static_cast<std::size_t>(head) * HD + d] * scale;
    __syncwarp();
    if (L.key.rotated) {
      for (int d = lane; d < HD; d += 32) qs[warp][d] *= L.k_signs[kvh * HD + d];
      __syncwarp();
      warp_fwht<HD>(qs[warp], lane);
      for (int d = lane; d < HD; d += 32) qs[warp][d] *= L.key.scale;
      __syncwarp();
    }
  }
  float m = -INFINITY, l = 0, acc[PER];
#pragma unroll
  for (int e = 0; e < PER; ++e) acc[e] = 0;
  // The tiles holding [begin, end), the same for every warp (an empty range: none).
  const std::size_t t0 = begin < end ? start + (begin - start) / kTile * kTile : end;
  Tile tile;
  if (t0 < end) tile.load(L, capacity, kvh, t0, begin, end);
  for (std::size_t j0 = t0; j0 < end; j0 += kTile) {
    __syncthreads();  // the previous tile's readers are done (and, the first time, lut is written)
    tile.stage(lut, ks, vs);
    if (j0 + kTile < end) tile.load(L, capacity, kvh, j0 + kTile, begin, end);
    __syncthreads();
    if (!works) continue;
    const std::size_t j = j0 + lane;
    const bool valid = j >= begin && j < end;
    float sc = -INFINITY;
    if (valid) {
      const float* kr = ks + lane * S;
      sc = 0;
#pragma unroll
      for (int d = 0; d < HD; d += 4) {
        const float4 k4 = *reinterpret_cast<const float4*>(kr + d), q4 = *reinterpret_cast<const float4*>(&qs[warp][d]);
        sc += q4.x * k4.x + q4.y * k4.y + q4.z * k4.z + q4.w * k4.w;
      }
    }
    softmax_tile(sc, valid, m, l, acc, ps[warp], lane);
    const int keys = static_cast<int>(min(static_cast<std::size_t>(kTile), end - j0));  // rows past it are zero, p 0
#pragma unroll 4
    for (int k = 0; k < keys; ++k) {
      const float pk = ps[warp][k];
      const float* vr = vs + k * S + lane * PER;
#pragma unroll
      for (int e = 0; e < PER; e += 2) {
        const float2 v2 = *reinterpret_cast<const float2*>(vr + e);
        acc[e] += pk * v2.x;
        acc[e + 1] += pk * v2.y;
      }
    }
    __syncwarp();  // ps is rewritten by the next tile
  }
  store_partials<HD, PER>(m, l, acc, heads, 1, group, first_head, kvh, split, splits, HD, wm, wl, &wacc[0][0], partial);
}

// Threads over nh·half pairs of q, then nkv·half pairs of k (rotated, written to the cache too), then nkv·hd values of v.
template <typename T>
__global__ void rope_kv_write_at(float* q, float* k, const float* v, int nh, int nkv, int hd, bool interleaved, const float* cs,
                                 const float* sn, T* K, T* V, const DecodeState* st) {
  const int half = hd / 2, qp = nh * half, kp = nkv * half, row = nkv * hd;
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  const std::size_t at = static_cast<std::size_t>(st->pos) * row;
  auto put = [&](T* cache, int c, float x) {
    if (!cache) return;  // RoPE only (a coded cache encodes the rows in its own kernel)
    if constexpr (sizeof(T) == 2)
      cache[at + c] = __float2bfloat16_rn(x);
    else
      cache[at + c] = x;
  };
  if (i < qp + kp) {
    const bool is_q = i < qp;
    const int pair = is_q ? i : i - qp, h = pair / half, p = pair % half;
    float* x = (is_q ? q : k) + h * hd;
    const int a0 = interleaved ? 2 * p : p, a1 = interleaved ? 2 * p + 1 : p + half;
    const float c = cs[p], s = sn[p], x0 = x[a0], x1 = x[a1];
    const float y0 = x0 * c - x1 * s, y1 = x0 * s + x1 * c;
    x[a0] = y0;
    x[a1] = y1;
    if (!is_q) {
      put(K, h * hd + a0, y0);
      put(K, h * hd + a1, y1);
    }
  } else if (i < qp + kp + row) {
    const int c = i - qp - kp;
    put(V, c, v[c]);
  }
}

// The split kernel for a head_dim: compile-time for the common ones.
template <typename KV>
void launch_split(dim3 grid, const float* q, const KV* K, const KV* V, const DecodeState* st, std::size_t chunk, int splits, int nh, int nkv,
                  int hd, int window, float scale, float* partial) {
  const DenseRows<KV> r{K, V, static_cast<std::size_t>(nkv) * hd};
  switch (hd) {
    case 64: decode_attention_split<DenseRows<KV>, 64><<<grid, kThreads>>>(q, r, st, chunk, splits, nh, nkv, hd, window, scale, partial); break;
    case 128: decode_attention_split<DenseRows<KV>, 128><<<grid, kThreads>>>(q, r, st, chunk, splits, nh, nkv, hd, window, scale, partial); break;
    case 256: decode_attention_split<DenseRows<KV>, 256><<<grid, kThreads>>>(q, r, st, chunk, splits, nh, nkv, hd, window, scale, partial); break;
    default: decode_attention_split<DenseRows<KV>, 0><<<grid, kThreads>>>(q, r, st, chunk, splits, nh, nkv, hd, window, scale, partial); break;
  }
}

// The coded cache's split kernel: head_dim and both streams' bits at compile time. Its dynamic shared memory is
// allowed once per instantiation (before the graph's capture: the first decode step runs eagerly), and its split
// count is chosen so that the grid is one wave of resident blocks where the cache is long enough (at most the dense
// rule's count, which sizes the scratch): 5 blocks an SM at head_dim 128 (the staged tiles), so the dense rule's 912
// blocks at 32k would run as 1.4 waves. Returns the split count (the combine kernel's).
template <int HD, int KB, int VB>
int launch_coded_split_hd(const float* q, const CodedKvLayer& layer, std::size_t capacity, const DecodeState* st, int nh, int nkv,
                          int window, float scale, float* partial) {
  constexpr std::size_t bytes = staged_tile_bytes<HD>();
  static const int slots = [] {  // resident blocks on the device (0: unknown)
    const auto kernel = decode_attention_split_coded<HD, KB, VB>;
    int device = 0, sms = 0, per_sm = 0;
    if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)) != cudaSuccess) return 0;
    if (cudaGetDevice(&device) != cudaSuccess || cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess) return 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, bytes) != cudaSuccess) return 0;
    return sms * per_sm;
  }();
  const int group = nh / nkv, heads = std::min(group, kWarps), z = (group + heads - 1) / heads;
  int splits = static_cast<int>(splits_for(capacity));
  if (slots > 0) splits = std::max(1, std::min(splits, slots / (nkv * z)));
  std::size_t chunk = (capacity + splits - 1) / splits;
  chunk = (chunk + kTile - 1) / kTile * kTile;
  splits = static_cast<int>((capacity + chunk - 1) / chunk);
  const dim3 grid(static_cast<unsigned>(nkv), static_cast<unsigned>(splits), static_cast<unsigned>(z));
  decode_attention_split_coded<HD, KB, VB><<<grid, kThreads, bytes>>>(q, layer, capacity, st, chunk, splits, nh, nkv, window, scale, partial);
  return splits;
}
template <int KB, int VB>
int launch_coded_split(const float* q, const CodedKvLayer& layer, std::size_t capacity, const DecodeState* st, int nh, int nkv, int hd,
                       int window, float scale, float* partial) {
  switch (hd) {
    case 64: return launch_coded_split_hd<64, KB, VB>(q, layer, capacity, st, nh, nkv, window, scale, partial);
    case 128: return launch_coded_split_hd<128, KB, VB>(q, layer, capacity, st, nh, nkv, window, scale, partial);
    default: return launch_coded_split_hd<256, KB, VB>(q, layer, capacity, st, nh, nkv, window, scale, partial);
  }
}
template <int KB>
int launch_coded_split_v(int vb, const float* q, const CodedKvLayer& layer, std::size_t capacity, const DecodeState* st, int nh, int nkv,
                         int hd, int window, float scale, float* partial) {
  switch (vb) {
    case 2: return launch_coded_split<KB, 2>(q, layer, capacity, st, nh, nkv, hd, window, scale, partial);
    case 3: return launch_coded_split<KB, 3>(q, layer, capacity, st, nh, nkv, hd, window, scale, partial);
    default: return launch_coded_split<KB, 4>(q, layer, capacity, st, nh, nkv, hd, window, scale, partial);
  }
}

// Block per query head: the ranges' partials combined (rescaled to the largest max), divided by the total sum. Each
// split's max and sum are loaded at once into shared memory, and a thread's output dim reads its splits with the
// loads in flight together (a loop of dependent loads per split cost a round trip to L2 each).
// With v_signs (a coded cache's rotated values; blockDim = hd), the output is rotated back: Πᵀ = D H / √d.
__global__ void decode_attention_combine(const float* partial, int splits, int hd, float* out, __nv_bfloat16* out_bf16,
                                         const float* v_signs, float v_scale, int group) {
  __shared__ float ms[kMaxSplits], ls[kMaxSplits], wgt[kMaxSplits];
  __shared__ float rotated[kMaxPer * 32];
  const int h = blockIdx.x;
  const float* P = partial + static_cast<std::size_t>(h) * splits * (hd + 2);
  for (int s = threadIdx.x; s < splits; s += blockDim.x) {
    ms[s] = P[s * (hd + 2)];
    ls[s] = P[s * (hd + 2) + 1];
  }
  __syncthreads();
  float mx = -INFINITY;
  for (int s = 0; s < splits; ++s) mx = fmaxf(mx, ms[s]);
  for (int s = threadIdx.x; s < splits; s += blockDim.x) wgt[s] = ms[s] == -INFINITY ? 0.0f : __expf(ms[s] - mx);
  __syncthreads();
  float sum = 0;
  for (int s = 0; s < splits; ++s)
    if (ms[s] != -INFINITY) sum += ls[s] * wgt[s];
  const float inv = 1.0f / sum;
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float a = 0;
#pragma unroll 8
    for (int s = 0; s < splits; ++s)
      if (ms[s] != -INFINITY) a += P[s * (hd + 2) + 2 + d] * wgt[s];
    float v = a * inv;
    if (v_signs) {
      rotated[d] = v;
      block_fwht(rotated, hd);
      v = rotated[d] * v_scale * v_signs[(h / group) * hd + d];
    }
    if (out) out[static_cast<std::size_t>(h) * hd + d] = v;
    if (out_bf16) out_bf16[static_cast<std::size_t>(h) * hd + d] = __float2bfloat16_rn(v);
  }
}

// One block: the largest logit and its first index (ties to the lower index, as a scan from 0 keeps the first).
__global__ void greedy_advance(const float* logits, std::size_t vocab, DecodeState* st, int* tokens) {
  __shared__ float bv[32];
  __shared__ int bi[32];
  float v = -INFINITY;
  int idx = 0x7fffffff;
  for (std::size_t i = threadIdx.x; i < vocab; i += blockDim.x)
    if (logits[i] > v) {  // a later index of this thread only wins when strictly larger
      v = logits[i];
      idx = static_cast<int>(i);
    }
  auto better = [](float v1, int i1, float v2, int i2) { return v2 > v1 || (v2 == v1 && i2 < i1); };
  for (int o = 16; o > 0; o /= 2) {
    const float v2 = __shfl_xor_sync(0xffffffffu, v, o);
    const int i2 = __shfl_xor_sync(0xffffffffu, idx, o);
    if (better(v, idx, v2, i2)) {
      v = v2;
      idx = i2;
    }
  }
  if (threadIdx.x % 32 == 0) {
    bv[threadIdx.x / 32] = v;
    bi[threadIdx.x / 32] = idx;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (unsigned w = 1; w < blockDim.x / 32; ++w)
      if (better(v, idx, bv[w], bi[w])) {
        v = bv[w];
        idx = bi[w];
      }
    if (idx == 0x7fffffff) idx = 0;  // every logit NaN: the CPU's scan keeps index 0 as well
    tokens[st->step] = idx;
    st->token = idx;
    st->step += 1;
    st->pos += 1;
  }
}

}  // namespace

void launch_rope_tables_at(const DecodeState* state, const float* inv_freq, int half, float* cs, float* sn) {
  rope_tables_at<<<1, 128>>>(state, inv_freq, half, cs, sn);
}

void launch_rope_kv_write_at(float* q, float* k, const float* v, int nh, int nkv, int hd, bool interleaved, const float* cs,
                             const float* sn, void* K, void* V, bool bf16, const DecodeState* state) {
  const int total = (nh + nkv) * (hd / 2) + nkv * hd;
  const unsigned blocks = static_cast<unsigned>((total + 255) / 256);
  if (bf16)
    rope_kv_write_at<<<blocks, 256>>>(q, k, v, nh, nkv, hd, interleaved, cs, sn, static_cast<__nv_bfloat16*>(K), static_cast<__nv_bfloat16*>(V),
                                      state);
  else
    rope_kv_write_at<<<blocks, 256>>>(q, k, v, nh, nkv, hd, interleaved, cs, sn, static_cast<float*>(K), static_cast<float*>(V), state);
}

std::size_t decode_attention_scratch_floats(int nh, int hd, std::size_t capacity) {
  return static_cast<std::size_t>(nh) * splits_for(capacity) * (static_cast<std::size_t>(hd) + 2);
}

bool launch_decode_attention(const float* q, const void* K, const void* V, bool bf16, float* out, std::uint16_t* out_bf16,
                             const DecodeState* state, std::size_t capacity, int nh, int nkv, int hd, int window, float scale,
                             float* scratch) {
  if (hd > kMaxPer * 32 || hd <= 0 || nkv <= 0 || nh % nkv != 0) return false;
  const std::size_t chunk = split_keys(capacity);
  const int splits = static_cast<int>(splits_for(capacity)), group = nh / nkv, heads = std::min(group, kWarps);
  const dim3 grid(static_cast<unsigned>(nkv), static_cast<unsigned>(splits), static_cast<unsigned>((group + heads - 1) / heads));
  if (bf16)
    launch_split(grid, q, static_cast<const __nv_bfloat16*>(K), static_cast<const __nv_bfloat16*>(V), state, chunk, splits, nh, nkv, hd, window,
                 scale, scratch);
  else
    launch_split(grid, q, static_cast<const float*>(K), static_cast<const float*>(V), state, chunk, splits, nh, nkv, hd, window, scale, scratch);
  decode_attention_combine<<<static_cast<unsigned>(nh), static_cast<unsigned>(std::min(256, (hd + 31) / 32 * 32))>>>(
      scratch, splits, hd, out, reinterpret_cast<__nv_bfloat16*>(out_bf16), nullptr, 1.0f, 1);
  return true;
}

bool launch_decode_attention(const float* q, const CodedKvLayer& layer, float* out, std::uint16_t* out_bf16, const DecodeState* state,
                             std::size_t capacity, int nh, int nkv, int hd, int window, float scale, float* scratch) {
  const auto bits_ok = [](int b) { return b >= 2 && b <= 4; };
  if ((hd != 64 && hd != 128 && hd != 256) || nkv <= 0 || nh % nkv != 0 || !bits_ok(layer.key.bits) || !bits_ok(layer.value.bits)) return false;
  const int group = nh / nkv;
  int splits = 0;
  switch (layer.key.bits) {
    case 2: splits = launch_coded_split_v<2>(layer.value.bits, q, layer, capacity, state, nh, nkv, hd, window, scale, scratch); break;
    case 3: splits = launch_coded_split_v<3>(layer.value.bits, q, layer, capacity, state, nh, nkv, hd, window, scale, scratch); break;
    default: splits = launch_coded_split_v<4>(layer.value.bits, q, layer, capacity, state, nh, nkv, hd, window, scale, scratch); break;
  }
  decode_attention_combine<<<static_cast<unsigned>(nh), static_cast<unsigned>(hd)>>>(
      scratch, splits, hd, out, reinterpret_cast<__nv_bfloat16*>(out_bf16), layer.value.rotated ? layer.v_signs : nullptr,
      layer.value.scale, group);
  return true;
}

void launch_greedy_advance(const float* logits, std::size_t vocab, DecodeState* state, int* tokens) {
  greedy_advance<<<1, 1024>>>(logits, vocab, state, tokens);
}

}  // namespace tqb::cuda_forward
