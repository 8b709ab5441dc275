// lut_mma: y = Ŵx from 2/3/4-bit codebook codes (TurboQuant, RTN, residual stacks of two passes) on
// NVIDIA GPUs of compute capability 8.0+, through the layout of lut_mma_layout.hpp: the host side (LutMmaMatrix,
// its plans and launches). The kernels, one file each, are in kernels/cuda/lut_mma/ (small_kernel: n ≤ 16;
// rotate_kernel; large_kernel: mma.sync tiles for n > 16; wgmma_kernel and wgmma_ws_kernel: Hopper; dequantize_kernel:
// bf16 weights for cuBLAS), their shared pieces in args.cuh and common.cuh, the PTX wrappers in lut_mma.cuh,
// wgmma.cuh and bulk_copy.cuh. Every kernel decodes weights with the same pair-table lookups (a 32-way replicated
// table in shared memory, conflict-free: lane L reads copy L); which one serves a batch is lut_mma_paths.cpp's rule.
// Design, error bound and measured figures: docs/GPU.md.

#include <cooperative_groups.h>
#include <cublas_v2.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>

#include "common/env.hpp"
#include "kernels/cuda/cuda_check.hpp"
#include "kernels/cuda/gpu.hpp"
#include "kernels/cuda/lut_mma/args.cuh"
#include "kernels/cuda/lut_mma/common.cuh"
#include "kernels/cuda/lut_mma/dequantize_kernel.cuh"
#include "kernels/cuda/lut_mma/large_kernel.cuh"
#include "kernels/cuda/lut_mma/rotate_kernel.cuh"
#include "kernels/cuda/lut_mma/small_kernel.cuh"
#include "kernels/cuda/lut_mma/wgmma_kernel.cuh"
#include "kernels/cuda/lut_mma/wgmma_ws_kernel.cuh"

namespace tqb::gpu {

using namespace tqb::lut_mma;

namespace {

using KernelFn = void (*)(Args);

struct Kernels {
  KernelFn small[2] = {nullptr, nullptr};  // NT = 1, 2
  KernelFn large = nullptr;
  KernelFn dequantize = nullptr;
  KernelFn wgmma[4] = {nullptr, nullptr, nullptr, nullptr};  // N = 32, 64, 128, 256 (wg_cols_for); 256 for one pass only
  KernelFn wgmma_ws[2] = {nullptr, nullptr};  // the producer-decoded wgmma kernel, N = 128, 256 (ws_cols_for); one pass only
};
constexpr int kWgWidths[4] = {32, 64, 128, 256};
constexpr int wg_index(int cols) { return cols == 32 ? 0 : cols == 64 ? 1 : cols == 128 ? 2 : 3; }

template <int B0, int B1>
Kernels kernels_for() {
  KernelFn wg256 = nullptr, ws128 = nullptr, ws256 = nullptr;
  if constexpr (B1 == 0) wg256 = wgmma_kernel<B0, B1, 256>, ws128 = wgmma_ws_kernel<B0, 128>, ws256 = wgmma_ws_kernel<B0, 256>;
  return {{small_kernel<B0, B1, 1>, small_kernel<B0, B1, 2>}, large_kernel<B0, B1>, dequantize_kernel<B0, B1>,
          {wgmma_kernel<B0, B1, 32>, wgmma_kernel<B0, B1, 64>, wgmma_kernel<B0, B1, 128>, wg256}, {ws128, ws256}};
}

// Passes are summed, so a stack runs with its widest pass first: (b0, b1) with b0 ≥ b1.
Kernels pick_kernels(int b0, int b1) {
  switch (b0 * 10 + b1) {
    case 20: return kernels_for<2, 0>();
    case 30: return kernels_for<3, 0>();
    case 40: return kernels_for<4, 0>();
    case 22: return kernels_for<2, 2>();
    case 32: return kernels_for<3, 2>();
    case 33: return kernels_for<3, 3>();
    case 42: return kernels_for<4, 2>();
    case 43: return kernels_for<4, 3>();
    case 44: return kernels_for<4, 4>();
  }
  throw std::invalid_argument("lut_mma: no kernel for passes of " + std::to_string(b0) + " and " + std::to_string(b1) + " bits");
}

}  // namespace

// The dequantized path's shared state: one cuBLAS handle for every matrix (a handle per matrix would be
// 224 handles in an 8B forward) and one bf16 workspace per stream, grown on demand to at most
// kDequantChunkBytes (larger matrices, e.g. an LM head, go through it in chunks of stripes). Both live
// while any matrix does (DequantUser counts them) and go with the last one, so that nothing is left for
// exit, when the CUDA context may already be gone (and compute-sanitizer's leak check finds nothing).
constexpr std::size_t kDequantChunkBytes = std::size_t{64} << 20;  // TQB_LUT_MMA_DEQUANT_CHUNK_MB overrides it (tuning)
struct DequantShared {
  std::mutex mutex;
  cublasHandle_t handle = nullptr;
  std::map<cudaStream_t, DeviceBuffer> workspace;
  int users = 0;
};
DequantShared& dequant_shared() {
  static DequantShared* s = new DequantShared();  // never destroyed: matrices in static storage may outlive it
  return *s;
}
// One matrix's claim on DequantShared; the last to go releases the handle and the workspaces.
struct DequantUser {
  DequantUser() {
    DequantShared& sh = dequant_shared();
    std::lock_guard<std::mutex> lock(sh.mutex);
    ++sh.users;
  }
  ~DequantUser() {
    DequantShared& sh = dequant_shared();
    std::lock_guard<std::mutex> lock(sh.mutex);
    if (--sh.users > 0) return;
    if (sh.handle) cublasDestroy(sh.handle);  // its status is of no use here: a destructor must not throw
    sh.handle = nullptr;
    sh.workspace.clear();
  }
  DequantUser(const DequantUser&) = delete;
  DequantUser& operator=(const DequantUser&) = delete;
};
void cublas_ok(cublasStatus_t st, const char* what) {
  if (st != CUBLAS_STATUS_SUCCESS) throw std::runtime_error(std::string("lut_mma dequantized path: cuBLAS error in ") + what + ": " + cublasGetStatusString(st));
}

struct SmallPlan {
  int tiles_per_split = 0, splits = 0;
  std::size_t smem = 0;
  int blocks_per_sm = 0;
  bool cluster = false;  // splits > 1 summed through the cluster's shared memory (Args::cluster_splits)
};
// The most splits one cluster holds: 16 on the H100 with cudaFuncAttributeNonPortableClusterSizeAllowed (8 portable).
constexpr int kMaxClusterSplits = 16;
namespace {
// The launch attribute that makes the `splits` small-kernel blocks of a row block one cluster (grid: row blocks × splits).
cudaLaunchAttribute small_cluster_attr(int splits) {
  cudaLaunchAttribute attr{};
  attr.id = cudaLaunchAttributeClusterDimension;
  attr.val.clusterDim.x = 1, attr.val.clusterDim.y = static_cast<unsigned>(splits), attr.val.clusterDim.z = 1;
  return attr;
}
}  // namespace

struct LutMmaMatrix::Impl {
  LutMmaLayout shape;  // the layout's sizes and per-pass flags (code arrays released after upload)
  std::vector<int> order;  // passes by decreasing width
  std::vector<DeviceBuffer> buffers;
  Args base;
  Kernels kernels;
  int sms = 0;
  // By split-K reduction (0 global, 1 cluster) and batch size n = 1..16: the global plans at construction (they also
  // serve earlier GPUs, and their failure is the layout's error), the cluster plans when first needed (a Hopper matrix
  // that the rule gives the global reduction never pays their occupancy queries).
  mutable SmallPlan small[2][16];
  mutable std::once_flag cluster_plans_once;
  // A kernel choice as set (set_small_cluster_reduce, set_small_pre_rotation, set_wgmma_producer, set_wgmma_stream_k: 1 /
  // 0, -1 automatic) and as the environment forces it (TQB_LUT_MMA_CLUSTER, TQB_LUT_MMA_PREROTATE, TQB_LUT_MMA_WGMMA_WS,
  // TQB_LUT_MMA_STREAM_K; -1 unset), which
  // the automatic choice obeys, so that a program resetting its own choice to automatic (bench_gpu after its columns)
  // keeps the environment's. mode(): 1 / 0 forced, -1 automatic.
  struct Choice {
    int set = -1, env = -1;
    int mode() const { return set >= 0 ? set : env; }
    // The setters' mode, checked: -1 automatic, else 0 / 1 as `choices` names them ("0 off, 1 on").
    void force(int mode, const char* what, const char* choices) {
      if (mode < -1 || mode > 1)
        throw std::invalid_argument(std::string("lut_mma: ") + what + " mode " + std::to_string(mode) + " (valid: -1 automatic, " + choices + ")");
      set = mode;
    }
  };
  Choice cluster_reduce;  // the split-K through the cluster (sm_90), else global memory
  Choice pre_rotate;      // the rotation kernel first, else in every block's prologue
  int smem_optin = 0;  // the device's shared memory per block with opt-in
  int stream_only = 0;  // TQB_LUT_MMA_STREAM_ONLY: a diagnostic, see Args
  int pdl = 1;           // TQB_LUT_MMA_PDL=0: the pre-rotated small kernel launched in plain stream order
  // Off by default: on the H100 it gained nothing at 4096 x 4096 (16.77 against 16.83 us at n = 1) and cost 16%
  // at 14336 x 4096 (32.70 against 28.16 us): docs/GPU.md, issue 31. set_l2_prefetch or TQB_LUT_MMA_PREFETCH=1.
  int l2_prefetch = 0;
  int l2_bytes = 0, cc_major = 0;
  std::size_t prefill_min_batch = SIZE_MAX;  // lut_mma_prefill_min_batch; TQB_LUT_MMA_PREFILL_MIN overrides it
  std::size_t dequant_chunk_bytes = kDequantChunkBytes;
  using BatchPath = LutMmaMatrix::BatchPath;
  BatchPath batch_path = BatchPath::automatic;  // set_batch_path
  int wgmma_ok = 0;         // compute capability 9.0 and the wgmma kernel's shared memory fits
  int wgmma_everywhere = 0;  // TQB_LUT_MMA_WGMMA=1: the automatic choice takes wgmma for every n > 16; =0: no wgmma
  Choice wgmma_producer;      // the producer-decoded wgmma kernel (wgmma_ws_kernel) for one-pass batches of n > 64
  int ws_ok = 0;              // the kernel exists for this format (one pass) and its shared memory fits
  int ws_resident[2] = {};    // its blocks per SM at N = 128, 256
  int ws_skip = 0;            // TQB_LUT_MMA_WS_SKIP: a diagnostic, see Args
  Choice wgmma_stream_k;      // the wgmma kernel (A in registers) over stream-K shares instead of the grid's tiles
  DequantUser dequant_user;  // keeps the shared cuBLAS handle and workspaces while this matrix lives
  mutable DeviceBuffer partial, counters, xr;
  mutable int xr_layout = kXrPassMajor;  // the layout the rotation last wrote xr in
  mutable int xr_tile_rows = 0;          // and its rows per tile (kXrWgmmaTiles)
  int tracing = 0;                        // set_trace
  mutable DeviceBuffer trace;             // the last traced call's [blocks][kTracePoints] timer readings
  mutable std::size_t trace_blocks = 0;

  // The kernel that serves a batch of n: the forced one, or the measured rule (kernels/cuda/lut_mma_paths.cpp).
  BatchPath path_for(std::size_t n) const {
    if (batch_path != BatchPath::automatic) return batch_path;
    return lut_mma_default_path({shape.rows, shape.cols, shape.passes.size(), wgmma_ok != 0, wgmma_everywhere != 0, prefill_min_batch}, n);
  }

  int max_group_log2() const {
    int m = 6;
    for (const auto& p : shape.passes) m = std::max(m, p.log2_group);
    return m;
  }
  std::size_t small_smem_bytes(int n, int tiles_per_split) const {
    const int b0 = shape.passes[0].bits, b1 = shape.passes.size() > 1 ? shape.passes[1].bits : 0;
    const int kc = tiles_per_split * 64;
    // The code ring; after the stream, the block's partial sums when the cluster reduces them (cluster_split_k_finish).
    const std::size_t ring = std::max<std::size_t>(static_cast<std::size_t>(kWarps) * kRing * 32 * (b0 + b1) * 4, static_cast<std::size_t>(kWarps) * 16 * n * 4);
    std::size_t bytes = static_cast<std::size_t>(base.lut_words) * 4 + ring;
    for (const auto& p : shape.passes) bytes += static_cast<std::size_t>(side_words(kc, p.log2_group, p.has_offset)) * 4;
    bytes += shape.passes.size() * static_cast<std::size_t>((n * (kc >> 5) + 3) & ~3) * 4;  // group sums
    bytes += shape.passes.size() * static_cast<std::size_t>(small_sign_stride(kc)) * 4;     // sign words
    return bytes + shape.passes.size() * static_cast<std::size_t>(n + 1) * (kc + kPad) * 2;
  }
  bool small_cluster_reduces() const {
    const int mode = cluster_reduce.mode();
    if (cc_major < 9 || mode == 0) return false;
    return mode == 1 || lut_mma_small_cluster_reduces(shape.rows, shape.cols);
  }
  const SmallPlan& small_plan(int n) const {
    if (!small_cluster_reduces()) return small[0][n - 1];
    std::call_once(cluster_plans_once, [this] {
      for (int m = 1; m <= 16; ++m) small[1][m - 1] = make_small_plan(m, true);
    });
    return small[1][n - 1];
  }
  // Resident clusters of (1 × splits) small-kernel blocks the runtime reports for this grid; 0 where that cluster
  // cannot be launched.
  int active_clusters(int nt, int row_blocks, int splits, std::size_t smem) const {
    cudaLaunchConfig_t cfg{};
    cfg.gridDim = dim3(row_blocks, splits);
    cfg.blockDim = dim3(kThreads);
    cfg.dynamicSmemBytes = smem;
    cudaLaunchAttribute attr[1] = {small_cluster_attr(splits)};
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    int clusters = 0;
    if (cudaOccupancyMaxActiveClusters(&clusters, kernels.small[nt - 1], &cfg) != cudaSuccess) {
      (void)cudaGetLastError();  // an unsupported cluster shape: not a plan
      return 0;
    }
    return clusters;
  }
  // Split-K for the small kernel (lut_mma_small_split, kernels/cuda/lut_mma_paths.cpp): occupancy from the CUDA runtime
  // at each chunk's shared memory, with `cluster` also the resident clusters of its splits (at most kMaxClusterSplits).
  // With `cluster` where no chunk gives a launchable cluster, the global reduction's plan. TQB_LUT_MMA_CHUNK (tiles of
  // 64 columns) forces the chunk for tuning experiments.
  SmallPlan make_small_plan(int n, bool cluster) const {
    const int nt = n <= 8 ? 1 : 2;
    const int row_blocks = (static_cast<int>(shape.stripes) + kWarps - 1) / kWarps;
    const int align = std::max(1, 1 << (max_group_log2() - 6));  // tiles per largest group
    const auto resident = [&](int tps, int splits) -> LutMmaResidency {
      const std::size_t smem = small_smem_bytes(n, tps);
      if (smem > static_cast<std::size_t>(smem_optin)) return {-1, 0};
      int per_sm = 0;
      TQB_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernels.small[nt - 1], kThreads, smem));
      int slots = per_sm * sms;
      if (cluster && splits > 1 && per_sm > 0)
        slots = splits > kMaxClusterSplits ? 0 : std::min(slots, active_clusters(nt, row_blocks, splits, smem) * splits);
      return {per_sm, slots};
    };
    const int forced = static_cast<int>(env_count("TQB_LUT_MMA_CHUNK", 1, 1 << 20).value_or(0));
    const LutMmaSmallSplit split = lut_mma_small_split(row_blocks, static_cast<int>(shape.ktiles), align, forced, resident);
    SmallPlan best;
    if (split.tiles_per_split > 0)
      best = {split.tiles_per_split, split.splits, small_smem_bytes(n, split.tiles_per_split), split.blocks_per_sm, cluster && split.splits > 1};
    if (best.tiles_per_split == 0 && cluster) return make_small_plan(n, false);
    if (best.tiles_per_split == 0) throw std::runtime_error("lut_mma: no chunk size fits in shared memory");
    return best;
  }
  // A tiled kernel's grid (the large kernel: 256 rows × 64 batch columns per block; wgmma: wgmma_plan), K split
  // when that leaves SMs idle (n = 64 on a 4096-row matrix is 16 large blocks), at most one wave, chunks of at
  // least 4 tiles.
  struct TiledPlan {
    unsigned col_blocks, row_blocks, splits;
    int tiles_per_split;
  };
  TiledPlan tiled_plan(std::size_t n, int block_rows, int block_cols, int blocks_per_sm = 1) const {
    TiledPlan p;
    p.col_blocks = static_cast<unsigned>((n + block_cols - 1) / block_cols);
    p.row_blocks = static_cast<unsigned>((shape.stripes + block_rows / 16 - 1) / (block_rows / 16));
    const int ktiles = static_cast<int>(shape.ktiles), blocks = static_cast<int>(p.col_blocks * p.row_blocks);
    const int align = std::max(1, 1 << (max_group_log2() - 6));
    const int slots = sms * blocks_per_sm;
    int splits = blocks < slots ? std::min(slots / blocks, std::max(1, ktiles / 4)) : 1;
    int tps = (ktiles + splits - 1) / splits;
    tps = (tps + align - 1) / align * align;
    p.tiles_per_split = tps;
    p.splits = static_cast<unsigned>((ktiles + tps - 1) / tps);
    return p;
  }
  // The small kernel's batch of n: activations rotated by rotate_kernel first (one rotation per launch), or in
  // every block's prologue.
  bool small_pre_rotates(std::size_t n) const {
    if (const int mode = pre_rotate.mode(); mode >= 0) return mode == 1;
    const int kc = small_plan(n).tiles_per_split * 64;
    int min_log2 = 30;
    for (const auto& p : shape.passes) min_log2 = std::min(min_log2, p.log2_group);
    return lut_mma_small_pre_rotates(n, static_cast<std::size_t>(kc >> min_log2));
  }
  // The rotated activations of a batch of n into the workspace xr in a.xr_layout (a.xr_tile_rows for the wgmma tiles),
  // by rotate_kernel on the stream; sets a.xr.
  void rotate_into_xr(Args& a, std::size_t n, cudaStream_t stream) const {
    const std::size_t xr_rows = a.xr_layout == kXrWgmmaTiles ? (n + a.xr_tile_rows - 1) / a.xr_tile_rows * a.xr_tile_rows : n;
    const std::size_t need = shape.passes.size() * xr_rows * shape.cols_pad() * 2;
    if (xr.size() < need) {
      xr = DeviceBuffer(need);
      xr.fill_zero();  // the columns past cols stay zero: the rotation never writes them
      xr_layout = a.xr_layout;
      xr_tile_rows = a.xr_tile_rows;
    } else if (xr_layout != a.xr_layout || xr_tile_rows != a.xr_tile_rows) {
      // The columns past cols sit elsewhere in the tiled layouts (and differ with their rows per tile) than in the
      // row layouts (whose padding columns coincide): zero the buffer when the layout changes, which only a change
      // of batch path or of the wgmma's N does.
      if (shape.cols_pad() != static_cast<std::size_t>(a.cols)) TQB_CUDA_CHECK(cudaMemsetAsync(xr.get(), 0, xr.size(), stream));
      xr_layout = a.xr_layout;
      xr_tile_rows = a.xr_tile_rows;
    }
    a.xr = xr.as<const __nv_bfloat16>();
    int max_groups = 0;
    for (std::size_t p = 0; p < shape.passes.size(); ++p) max_groups = std::max(max_groups, a.cols >> a.pass[p].log2_group);
    const dim3 rgrid(static_cast<unsigned>((n * max_groups + kWarps - 1) / kWarps), static_cast<unsigned>(shape.passes.size()));
    rotate_kernel<<<rgrid, kThreads, 0, stream>>>(a);
    TQB_CUDA_CHECK_LAUNCH("lut_mma rotate_kernel");
  }
  // The split-K workspace for `splits` partial sums of an n-column batch, grown on demand.
  float* partials(int splits, std::size_t n) {
    const std::size_t need = static_cast<std::size_t>(splits) * n * shape.rows_pad() * sizeof(float);
    if (partial.size() < need) partial = DeviceBuffer(need);
    return partial.as<float>();
  }
  void ensure_counters(std::size_t count) {
    if (counters.size() >= count * sizeof(int)) return;
    counters = DeviceBuffer(count * sizeof(int));
    counters.fill_zero();
  }
  // y = Ŵx through bf16 weights: chunks of stripes decoded into the stream's workspace, each followed by
  // one GEMM with K = passes · cols_pad (xr rotated batch-major, [n][passes][cols_pad]).
  void multiply_dequantized(Args a, std::size_t n, cudaStream_t stream) const {
    const std::size_t P = shape.passes.size(), ld = P * shape.cols_pad();
    const std::size_t stripe_bytes = 16 * ld * 2;
    const int chunk_stripes = static_cast<int>(std::max<std::size_t>(1, std::min<std::size_t>(shape.stripes, dequant_chunk_bytes / stripe_bytes)));
    DequantShared& sh = dequant_shared();
    std::lock_guard<std::mutex> lock(sh.mutex);  // the handle's stream and the workspace: one caller at a time
    if (!sh.handle) cublas_ok(cublasCreate(&sh.handle), "cublasCreate");
    DeviceBuffer& ws = sh.workspace[stream];
    if (ws.size() < chunk_stripes * stripe_bytes) ws = DeviceBuffer(chunk_stripes * stripe_bytes);
    a.w_hat = ws.as<__nv_bfloat16>();
    cublas_ok(cublasSetStream(sh.handle, stream), "cublasSetStream");
    const float one = 1.0f, zero = 0.0f;
    const float* beta = a.accumulate ? &one : &zero;
    const std::size_t dsmem = static_cast<std::size_t>(base.lut_words) * 4 + kWarps * 16 * (64 + kPad) * 2;
    for (int s0 = 0; s0 < a.stripes; s0 += chunk_stripes) {
      const int stripes_here = std::min(chunk_stripes, a.stripes - s0);
      a.row_stripe0 = s0;
      const dim3 grid(static_cast<unsigned>(stripes_here), static_cast<unsigned>((a.ktiles + kWarps - 1) / kWarps));
      kernels.dequantize<<<grid, kThreads, dsmem, stream>>>(a);
      TQB_CUDA_CHECK_LAUNCH("lut_mma dequantize_kernel");
      const int row0 = 16 * s0, m = std::min(16 * stripes_here, a.rows - row0);
      if (m <= 0) break;
      // Column-major view, as the dense baseline: Yᵀ (rows × n) = Ŵ (row-major, hence OP_T) · xrᵀ.
      void* c = a.y_bf16 ? static_cast<void*>(a.y_bf16 + row0) : static_cast<void*>(a.y + row0);
      cublas_ok(cublasGemmEx(sh.handle, CUBLAS_OP_T, CUBLAS_OP_N, m, static_cast<int>(n), static_cast<int>(ld), &one, a.w_hat, CUDA_R_16BF,
                             static_cast<int>(ld), a.xr, CUDA_R_16BF, static_cast<int>(ld), beta, c, a.y_bf16 ? CUDA_R_16BF : CUDA_R_32F, a.rows,
                             CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                "cublasGemmEx");
    }
  }
  std::size_t large_smem_bytes() const {
    const std::size_t P = shape.passes.size();
    return static_cast<std::size_t>(base.lut_words) * 4 + kLargeStages * P * kLargeCols * kLargeStride * 2;
  }
  // The wgmma kernel of N = cols: the tables, the barriers, up to 1 KB to align the swizzled stages, the stages.
  std::size_t wgmma_smem_bytes(int cols) const {
    const int b0 = shape.passes[0].bits, b1 = shape.passes.size() > 1 ? shape.passes[1].bits : 0;
    return static_cast<std::size_t>(base.lut_words) * 4 + 8 + kWgBarrierBytes + 1024 + static_cast<std::size_t>(wg_stages(b1 ? 2 : 1)) * wg_stage_bytes(b0, b1, cols);
  }
  std::size_t wgmma_ws_smem_bytes(int cols) const { return ws_smem_bytes(base.lut_words, cols, shape.passes[0].bits); }
  // Whether the wgmma path's batch of n goes to the producer-decoded kernel: one pass, n > 64, forced or by the rule.
  bool wgmma_ws_for(std::size_t n) const {
    if (!ws_ok || n <= 64) return false;
    return wgmma_producer.mode() == 1;  // automatic: off until measured (docs/GPU.md, issue 31)
  }
  // Its grid for a batch of n: N, blocks of wg_rows × N (the producer-decoded kernel: 128 × N), split-K over the
  // resident blocks.
  struct WgmmaPlan {
    int cols = 0;
    bool producer = false;  // wgmma_ws_kernel
    TiledPlan tiled{};
    StreamK stream_k{};  // blocks > 0: wgmma_kernel in a 1-D grid of that many blocks sharing the tiles' k-tiles
  };
  WgmmaPlan wgmma_plan(std::size_t n) const {
    const int P = static_cast<int>(shape.passes.size());
    if (wgmma_ws_for(n)) {
      const int cols = ws_cols_for(n);
      return {cols, true, tiled_plan(n, kWsRows, cols, std::max(1, ws_resident[ws_index(cols)]))};
    }
    const int cols = wg_cols_for(n, P), resident = std::max(1, wg_resident[wg_index(cols)]);
    WgmmaPlan p{cols, false, tiled_plan(n, wg_rows(P), cols, resident), {}};
    if (wgmma_stream_k.mode() == 1) {  // automatic: off until measured (docs/GPU.md, issue 31)
      const std::int64_t units = std::int64_t{p.tiled.col_blocks} * p.tiled.row_blocks * static_cast<std::int64_t>(shape.ktiles);
      p.stream_k = {units, static_cast<int>(std::min<std::int64_t>(units, std::int64_t{sms} * resident)), static_cast<int>(shape.ktiles)};
    }
    return p;
  }
  int wg_resident[4] = {};  // blocks per SM of each N's kernel (the runtime's occupancy at its shared memory)
};

LutMmaMatrix::LutMmaMatrix(const LutMmaLayout& layout) : impl_(std::make_unique<Impl>()) {
  if (auto why = unavailable_reason(); !why.empty()) throw std::runtime_error("lut_mma needs a CUDA GPU: " + why);
  Impl& I = *impl_;
  if (layout.passes.empty() || layout.passes.size() > 2) throw std::invalid_argument("lut_mma: one or two passes");
  int device = 0;
  TQB_CUDA_CHECK(cudaGetDevice(&device));
  TQB_CUDA_CHECK(cudaDeviceGetAttribute(&I.sms, cudaDevAttrMultiProcessorCount, device));
  TQB_CUDA_CHECK(cudaDeviceGetAttribute(&I.l2_bytes, cudaDevAttrL2CacheSize, device));
  TQB_CUDA_CHECK(cudaDeviceGetAttribute(&I.cc_major, cudaDevAttrComputeCapabilityMajor, device));
  if (const auto env = env_switch("TQB_LUT_MMA_STREAM_ONLY")) I.stream_only = *env;
  if (const auto env = env_switch("TQB_LUT_MMA_PREFETCH")) I.l2_prefetch = *env;
  if (const auto env = env_switch("TQB_LUT_MMA_PREROTATE")) I.pre_rotate.env = *env;
  if (const auto env = env_switch("TQB_LUT_MMA_PDL")) I.pdl = *env;
  I.prefill_min_batch = lut_mma_prefill_min_batch(layout.rows, layout.cols);
  if (const auto env = env_count("TQB_LUT_MMA_DEQUANT_CHUNK_MB", 1, 1 << 16)) I.dequant_chunk_bytes = static_cast<std::size_t>(*env) << 20;
  if (const auto env = env_count("TQB_LUT_MMA_PREFILL_MIN", 17, std::uint64_t{1} << 20)) I.prefill_min_batch = *env;
  I.order = {0};
  if (layout.passes.size() == 2) I.order = layout.passes[1].bits > layout.passes[0].bits ? std::vector<int>{1, 0} : std::vector<int>{0, 1};
  I.shape.rows = layout.rows;
  I.shape.cols = layout.cols;
  I.shape.stripes = layout.stripes;
  I.shape.ktiles = layout.ktiles;
  Args& a = I.base;
  a.rows = static_cast<int>(layout.rows);
  a.cols = static_cast<int>(layout.cols);
  a.stripes = static_cast<int>(layout.stripes);
  a.ktiles = static_cast<int>(layout.ktiles);
  auto upload = [&](const std::vector<std::uint32_t>& v) -> const std::uint32_t* {
    if (v.empty()) return nullptr;
    I.buffers.emplace_back(v.size() * 4);
    I.buffers.back().upload(v.data(), v.size() * 4);
    return I.buffers.back().as<const std::uint32_t>();
  };
  for (std::size_t i = 0; i < I.order.size(); ++i) {
    const LutMmaPass& src = layout.passes[I.order[i]];
    LutMmaPass meta;
    meta.bits = src.bits;
    meta.log2_group = src.log2_group;
    meta.rotated = src.rotated;
    meta.has_offset = src.has_offset;
    I.shape.passes.push_back(meta);
    PassArgs& p = a.pass[i];
    p.codes = upload(src.codes);
    p.scales = upload(src.scales);
    p.offsets = upload(src.offsets);
    p.signs = upload(src.signs);
    p.lut = upload(src.pair_lut);
    p.log2_group = src.log2_group;
    p.groups_alloc = static_cast<int>(layout.groups_alloc(src));
    p.rotated = src.rotated ? 1 : 0;
  }
  // Tables: pass 0's at word 0; pass 1 shares it when the tables are equal (e.g. 4+4 TurboQuant).
  a.lut_words = 32 << (2 * layout.passes[I.order[0]].bits);
  if (I.order.size() == 2) {
    const auto& t0 = layout.passes[I.order[0]].pair_lut;
    const auto& t1 = layout.passes[I.order[1]].pair_lut;
    if (t0 == t1) {
      a.pass[1].lut_offset = 0;
    } else {
      a.pass[1].lut_offset = a.lut_words;
      a.lut_words += 32 << (2 * layout.passes[I.order[1]].bits);
    }
  }
  I.kernels = pick_kernels(I.shape.passes[0].bits, I.order.size() == 2 ? I.shape.passes[1].bits : 0);
  const int row_blocks = (a.stripes + kWarps - 1) / kWarps;
  I.ensure_counters(static_cast<std::size_t>(row_blocks));
  a.counters = I.counters.as<int>();
  // Every kernel may take the device's whole opt-in shared memory; each launch asks for what its plan needs.
  TQB_CUDA_CHECK(cudaDeviceGetAttribute(&I.smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  I.smem_optin -= 1024;  // headroom for the kernels' static shared memory (a few bytes)
  for (const void* k : {reinterpret_cast<const void*>(I.kernels.small[0]), reinterpret_cast<const void*>(I.kernels.small[1]),
                        reinterpret_cast<const void*>(I.kernels.large), reinterpret_cast<const void*>(I.kernels.dequantize)})
    TQB_CUDA_CHECK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, I.smem_optin));
  // Clusters of up to kMaxClusterSplits small-kernel blocks (the split-K reduction through distributed shared memory).
  // The small kernels also ask for the largest shared-memory carveout: their plan counts on the residency the runtime
  // reports for it (3 blocks of 58-75 KB at n <= 4), and an H100 trace at n = 4 on 14336 x 4096 had only 2 blocks per
  // SM at once (72 of 336 blocks starting a block's run late) with the carveout left to the driver; the rotation
  // kernel's carveout, the earlier suspect, made no difference (docs/GPU.md, issue 31).
  for (const KernelFn k : I.kernels.small) {
    TQB_CUDA_CHECK(cudaFuncSetAttribute(reinterpret_cast<const void*>(k), cudaFuncAttributePreferredSharedMemoryCarveout, cudaSharedmemCarveoutMaxShared));
    if (I.cc_major >= 9) TQB_CUDA_CHECK(cudaFuncSetAttribute(reinterpret_cast<const void*>(k), cudaFuncAttributeNonPortableClusterSizeAllowed, 1));
  }
  int cc_minor = 0;
  TQB_CUDA_CHECK(cudaDeviceGetAttribute(&cc_minor, cudaDevAttrComputeCapabilityMinor, device));
  const int wg_widest = wg_max_cols(static_cast<int>(layout.passes.size()));
  I.wgmma_ok = I.cc_major == 9 && cc_minor == 0 && I.wgmma_smem_bytes(wg_widest) <= static_cast<std::size_t>(I.smem_optin);
  if (I.wgmma_ok)
    for (int i = 0; i < 4; ++i)
      if (const KernelFn k = I.kernels.wgmma[i]) {
        TQB_CUDA_CHECK(cudaFuncSetAttribute(reinterpret_cast<const void*>(k), cudaFuncAttributeMaxDynamicSharedMemorySize, I.smem_optin));
        TQB_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&I.wg_resident[i], k, kThreads, I.wgmma_smem_bytes(kWgWidths[i])));
      }
  I.ws_ok = I.wgmma_ok && I.kernels.wgmma_ws[1] != nullptr && I.wgmma_ws_smem_bytes(256) <= static_cast<std::size_t>(I.smem_optin);
  if (I.ws_ok)
    for (int i = 0; i < 2; ++i) {
      const void* k = reinterpret_cast<const void*>(I.kernels.wgmma_ws[i]);
      TQB_CUDA_CHECK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, I.smem_optin));
      TQB_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&I.ws_resident[i], k, kWsThreads, I.wgmma_ws_smem_bytes(128 << i)));
    }
  if (const auto env = env_switch("TQB_LUT_MMA_WGMMA_WS")) I.wgmma_producer.env = *env;
  if (const auto env = env_switch("TQB_LUT_MMA_STREAM_K")) I.wgmma_stream_k.env = *env;
  if (const auto env = env_count("TQB_LUT_MMA_WS_SKIP", 0, 2)) I.ws_skip = static_cast<int>(*env);
  // TQB_LUT_MMA_WGMMA: 1 makes the automatic choice take wgmma for every n > 16, 0 switches the kernel off (a
  // device where it fails); unset, the automatic choice takes it where it was measured to win (lut_mma_default_path).
  if (const auto env = env_switch("TQB_LUT_MMA_WGMMA")) {
    I.wgmma_everywhere = *env;
    if (!*env) I.wgmma_ok = 0, I.ws_ok = 0;
  }
  if (const auto env = env_switch("TQB_LUT_MMA_CLUSTER")) I.cluster_reduce.env = *env;
  for (int n = 1; n <= 16; ++n) I.small[0][n - 1] = I.make_small_plan(n, false);
}

LutMmaMatrix::~LutMmaMatrix() = default;
std::size_t LutMmaMatrix::rows() const { return impl_->shape.rows; }
std::size_t LutMmaMatrix::cols() const { return impl_->shape.cols; }

std::size_t LutMmaMatrix::weight_bytes() const {
  std::size_t b = 0;
  for (const auto& buf : impl_->buffers) b += buf.size();
  return b;
}
void LutMmaMatrix::set_l2_prefetch(bool on) { impl_->l2_prefetch = on ? 1 : 0; }
void LutMmaMatrix::set_small_pre_rotation(int mode) { impl_->pre_rotate.force(mode, "small-kernel rotation", "0 prologue, 1 kernel first"); }
void LutMmaMatrix::set_small_cluster_reduce(int mode) { impl_->cluster_reduce.force(mode, "small-kernel reduction", "0 global, 1 cluster"); }
void LutMmaMatrix::set_wgmma_producer(int mode) { impl_->wgmma_producer.force(mode, "wgmma producer", "0 off, 1 on"); }
bool LutMmaMatrix::wgmma_producer_available() const { return impl_->ws_ok != 0; }
void LutMmaMatrix::set_wgmma_stream_k(int mode) { impl_->wgmma_stream_k.force(mode, "wgmma stream-K", "0 off, 1 on"); }
void LutMmaMatrix::set_trace(bool on) { impl_->tracing = on ? 1 : 0; }
std::vector<std::uint64_t> LutMmaMatrix::last_trace() const {
  std::vector<std::uint64_t> t(impl_->trace_blocks * kTracePoints);
  if (!t.empty()) impl_->trace.download(t.data(), t.size() * sizeof(std::uint64_t));
  return t;
}
bool LutMmaMatrix::wgmma_available() const { return impl_->wgmma_ok != 0; }
void LutMmaMatrix::set_batch_path(BatchPath path) {
  if (path == BatchPath::wgmma && !impl_->wgmma_ok)
    throw std::invalid_argument("lut_mma: the wgmma kernel needs a device of compute capability 9.0 (Hopper, sm_90a) with " +
                                std::to_string(impl_->wgmma_smem_bytes(wg_max_cols(static_cast<int>(impl_->shape.passes.size())))) +
                                " bytes of shared memory per block");
  impl_->batch_path = path;
}
std::size_t LutMmaMatrix::workspace_bytes() const { return impl_->partial.size() + impl_->counters.size() + impl_->xr.size(); }

LutMmaArith LutMmaMatrix::arith(std::size_t n) const {
  return impl_->path_for(n) == Impl::BatchPath::small ? LutMmaArith::group_scale : LutMmaArith::bf16_decode;
}

std::string LutMmaMatrix::variant(std::size_t n) const {
  const Impl::BatchPath path = impl_->path_for(n);
  if (path == Impl::BatchPath::small) {
    if (n > 16) return "none (the small kernel serves n <= 16)";
    const SmallPlan& p = impl_->small_plan(static_cast<int>(n));
    const bool pre_rotates = impl_->small_pre_rotates(n);
    return "small(n8_tiles=" + std::to_string(n <= 8 ? 1 : 2) + ",split_k=" + std::to_string(p.splits) + ",chunk=" + std::to_string(p.tiles_per_split * 64) +
           ",blocks/SM=" + std::to_string(p.blocks_per_sm) + ",rotation=" + (pre_rotates ? "kernel_first" : "prologue") +
           (p.splits > 1 ? (p.cluster ? ",reduce=cluster" : ",reduce=global") : "") +
           (impl_->l2_prefetch && impl_->cc_major >= 9 ? ",l2_prefetch" : "") + ")";
  }
  if (path == Impl::BatchPath::dequantized) return "dequantized(bf16 chunks of stripes, cublasGemmEx)";
  if (path == Impl::BatchPath::wgmma) {
    const int P = static_cast<int>(impl_->shape.passes.size());
    const auto p = impl_->wgmma_plan(n);
    if (p.producer)
      return "wgmma_ws(block=" + std::to_string(kWsRows) + "x" + std::to_string(p.cols) + ",m64n" + std::to_string(p.cols) +
             "k16 ss,producer decodes,x_stages=" + std::to_string(ws_b_stages(p.cols)) + ",a_slots=" + std::to_string(ws_a_slots(p.cols)) +
             ",code_slots=" + std::to_string(kWsLoadDepth) + ",blocks/SM=" + std::to_string(impl_->ws_resident[ws_index(p.cols)]) + ",split_k=" + std::to_string(p.tiled.splits) + ")";
    return "wgmma(block=" + std::to_string(wg_rows(P)) + "x" + std::to_string(p.cols) + ",m64n" + std::to_string(p.cols) +
           "k16,stages=" + std::to_string(wg_stages(P)) + ",blocks/SM=" + std::to_string(impl_->wg_resident[wg_index(p.cols)]) +
           (p.stream_k.blocks > 0 ? ",stream_k=" + std::to_string(p.stream_k.blocks) + "_blocks" : ",split_k=" + std::to_string(p.tiled.splits)) + ")";
  }
  const auto p = impl_->tiled_plan(n, kLargeRows, kLargeCols);
  return "large(block=" + std::to_string(kLargeRows) + "x" + std::to_string(kLargeCols) + ",stages=" + std::to_string(kLargeStages) +
         ",split_k=" + std::to_string(p.splits) + ")";
}

void LutMmaMatrix::multiply(const std::uint16_t* x, std::size_t n, float* y, void* stream_ptr) const {
  multiply(x, n, y, nullptr, false, stream_ptr);
}

void LutMmaMatrix::multiply(const std::uint16_t* x, std::size_t n, float* y, std::uint16_t* y_bf16, bool accumulate, void* stream_ptr) const {
  Impl& I = *impl_;
  if (y_bf16 && accumulate) throw std::invalid_argument("lut_mma: a bf16 output is not accumulated into");
  if (n == 0) return;
  if (n > (1u << 20)) throw std::invalid_argument("lut_mma: batch too large");
  cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
  Args a = I.base;
  a.counters = I.counters.as<int>();  // the buffer may have grown since construction
  a.stream_only = I.stream_only;
  a.n = static_cast<int>(n);
  a.x = reinterpret_cast<const __nv_bfloat16*>(x);
  a.y = y;
  a.y_bf16 = reinterpret_cast<__nv_bfloat16*>(y_bf16);
  a.accumulate = accumulate ? 1 : 0;
  const std::size_t P = I.shape.passes.size();
  const Impl::BatchPath path = I.path_for(n);
  if (path == Impl::BatchPath::small) {
    if (n > 16) throw std::invalid_argument("lut_mma: the small kernel serves batches of at most 16, not " + std::to_string(n));
    const auto x_addr = reinterpret_cast<std::uintptr_t>(x);
    if (x_addr % 4 != 0) throw std::invalid_argument("lut_mma: the activations x must be 4-byte aligned (got an address ending in " + std::to_string(x_addr % 16) + " mod 16)");
    a.x_aligned16 = x_addr % 16 == 0 ? 1 : 0;
    if (I.small_pre_rotates(n)) {
      a.xr_layout = kXrPassMajor;
      a.xr_tile_rows = 0;
      I.rotate_into_xr(a, n, stream);
      a.pre_rotated = 1;
    }
    const int nt = n <= 8 ? 1 : 2;
    const SmallPlan& plan = I.small_plan(static_cast<int>(n));
    a.tiles_per_split = plan.tiles_per_split;
    a.splits = plan.splits;
    if (plan.cluster) a.cluster_splits = plan.splits;
    else if (a.splits > 1) a.partial = I.partials(a.splits, n);
    const dim3 grid((a.stripes + kWarps - 1) / kWarps, a.splits);
    if (I.tracing) {
      I.trace_blocks = std::size_t{grid.x} * grid.y;
      if (I.trace.size() < I.trace_blocks * kTracePoints * 8) I.trace = DeviceBuffer(I.trace_blocks * kTracePoints * 8);
      a.trace = I.trace.as<unsigned long long>();
    }
    if (I.l2_prefetch) {  // the tiles a wave of resident blocks asks into L2 stay within 60% of it
      const std::size_t wave_warps = std::min<std::size_t>(std::size_t{grid.x} * grid.y, std::size_t(I.sms) * plan.blocks_per_sm) * kWarps;
      std::size_t tile_bytes = 0;
      for (std::size_t p = 0; p < P; ++p) tile_bytes += 128 * static_cast<std::size_t>(I.shape.passes[p].bits);
      a.prefetch_tiles = static_cast<int>(std::min<std::size_t>(1 << 20, std::size_t(0.6 * I.l2_bytes) / (wave_warps * tile_bytes)));
    }
    // Launch attributes: after rotate_kernel as its programmatic dependent (sm_90; the blocks' tables and code ring go
    // out while it runs), and the splits of a row block as one cluster.
    cudaLaunchAttribute attr[2];
    unsigned attrs = 0;
    if (a.pre_rotated && I.cc_major >= 9 && I.pdl) {
      attr[attrs].id = cudaLaunchAttributeProgrammaticStreamSerialization;
      attr[attrs++].val.programmaticStreamSerializationAllowed = 1;
    }
    if (plan.cluster) attr[attrs++] = small_cluster_attr(plan.splits);
    if (attrs > 0) {
      cudaLaunchConfig_t cfg{};
      cfg.gridDim = grid;
      cfg.blockDim = dim3(kThreads);
      cfg.dynamicSmemBytes = plan.smem;
      cfg.stream = stream;
      cfg.attrs = attr;
      cfg.numAttrs = attrs;
      TQB_CUDA_CHECK(cudaLaunchKernelEx(&cfg, I.kernels.small[nt - 1], a));
    } else {
      I.kernels.small[nt - 1]<<<grid, kThreads, plan.smem, stream>>>(a);
    }
    TQB_CUDA_CHECK_LAUNCH("lut_mma small_kernel");
    return;
  }
  const bool dequantized = path == Impl::BatchPath::dequantized, wgmma = path == Impl::BatchPath::wgmma;
  a.xr_layout = dequantized ? kXrBatchMajor : wgmma ? kXrWgmmaTiles : kXrPassMajor;
  // The wgmma tiles hold whole blocks of N batch rows (rows past n are read, and their products never stored).
  const Impl::WgmmaPlan wg = wgmma ? I.wgmma_plan(n) : Impl::WgmmaPlan{};
  const int wg_n = wg.cols;
  a.xr_tile_rows = wg_n;
  I.rotate_into_xr(a, n, stream);
  if (dequantized) {
    I.multiply_dequantized(a, n, stream);
    return;
  }
  const auto plan = wgmma ? wg.tiled : I.tiled_plan(n, kLargeRows, kLargeCols);
  a.tiles_per_split = plan.tiles_per_split;
  a.splits = plan.splits;
  a.col_blocks = static_cast<int>(plan.col_blocks);
  a.stream_k = wg.stream_k;
  // Partial sums: one slot per split, or per share of a tile that stream-K splits (at most max_segments blocks a tile).
  const int slots = a.stream_k.blocks > 0 ? a.stream_k.max_segments() : static_cast<int>(plan.splits);
  if (slots > 1) {
    a.partial = I.partials(slots, n);
    I.ensure_counters(static_cast<std::size_t>(plan.col_blocks) * plan.row_blocks);
    a.counters = I.counters.as<int>();
  }
  const dim3 grid = a.stream_k.blocks > 0 ? dim3(static_cast<unsigned>(a.stream_k.blocks)) : dim3(plan.col_blocks, plan.row_blocks, plan.splits);
  if (wgmma && wg.producer) {
    a.ws_skip = I.ws_skip;
    I.kernels.wgmma_ws[ws_index(wg_n)]<<<grid, kWsThreads, I.wgmma_ws_smem_bytes(wg_n), stream>>>(a);
    TQB_CUDA_CHECK_LAUNCH("lut_mma wgmma_ws_kernel");
  } else if (wgmma) {
    I.kernels.wgmma[wg_index(wg_n)]<<<grid, kThreads, I.wgmma_smem_bytes(wg_n), stream>>>(a);
    TQB_CUDA_CHECK_LAUNCH("lut_mma wgmma_kernel");
  } else {
    I.kernels.large<<<grid, kThreads, I.large_smem_bytes(), stream>>>(a);
    TQB_CUDA_CHECK_LAUNCH("lut_mma large_kernel");
  }
}

}  // namespace tqb::gpu
