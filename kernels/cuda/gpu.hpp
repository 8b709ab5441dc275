#pragma once
// tqbench's CUDA side as plain C++ (no CUDA headers, nothing that nvcc need compile), so that the
// harness, tests and benchmarks build the same way with or without nvcc. With TQB_CUDA on, lut_mma.cu, cublas_bf16.cu and device.cu
// implement it; without, no_cuda.cpp does, and every entry point reports why there is no GPU.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kernels/cuda/lut_mma_layout.hpp"
#include "kernels/cuda/lut_mma_paths.hpp"

namespace tqb::gpu {

// Empty when a CUDA device can run tqbench's kernels, else why not (built without CUDA, no driver, no
// device, compute capability under 8.0).
std::string unavailable_reason();
// "NVIDIA H100 80GB HBM3, cc 9.0, 132 SMs, 50 MiB L2, driver 13.0" (empty without a GPU).
std::string device_description();

// Device memory, freed on destruction. Every allocation of this module goes through it, so that
// peak_bytes() is the allocator's peak for tqbench's own GPU data (weights, workspaces, buffers).
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t bytes);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& o) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* get() const { return ptr_; }
  template <class T>
  T* as() const { return static_cast<T*>(ptr_); }
  std::size_t size() const { return bytes_; }
  void upload(const void* src, std::size_t bytes);          // synchronous
  void upload_at(const void* src, std::size_t offset, std::size_t bytes);  // synchronous, into bytes [offset, offset + bytes)
  void download(void* dst, std::size_t bytes) const;        // synchronous
  void fill_zero();

 private:
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
};
std::size_t allocated_bytes();  // live DeviceBuffer bytes
std::size_t peak_bytes();       // high-water mark since the last reset_peak_bytes()
void reset_peak_bytes();
// Device memory free now (cudaMemGetInfo), 0 without a GPU.
std::size_t free_bytes();

// y = Ŵx for a matrix in the lut_mma layout (lut_mma_layout.hpp), on the current device, by one of four paths
// (set_batch_path; the default's choice by batch and size): the small-batch kernel for n ≤ 16, one launch (rotation
// in its prologue, split-K, deterministic in-kernel reduction); or the standalone rotation kernel, then the mma.sync
// tiled kernel, Hopper's wgmma kernel (the default from n = 9 on large matrices), or the weights decoded to bf16 in
// chunks and multiplied by cuBLAS.
// One object serves one stream at a time: its split-K workspace and counters are per object, and
// multiply() grows them on first use of a larger batch (outside any CUDA graph capture, then).
// Tuning and diagnostics (environment): TQB_LUT_MMA_CHUNK=T forces chunks of T 64-column tiles on the
// small kernel; TQB_LUT_MMA_STREAM_ONLY=1 makes it move the codes without decoding (timing only).
class LutMmaMatrix {
 public:
  explicit LutMmaMatrix(const LutMmaLayout& layout);  // uploads; throws std::runtime_error
  ~LutMmaMatrix();
  std::size_t rows() const;
  std::size_t cols() const;
  // x: n × cols bf16 (bit patterns) on the device; y: n × rows fp32 on the device, overwritten.
  // stream: a cudaStream_t, or nullptr for the default stream. Throws std::runtime_error on a CUDA error.
  void multiply(const std::uint16_t* x, std::size_t n, float* y, void* stream) const;
  // The same product written as a forward needs it: into y_bf16 (n × rows bf16 bits) when given, else into y,
  // overwritten or (accumulate) added to, in the kernel's epilogue (no pass over y of its own).
  void multiply(const std::uint16_t* x, std::size_t n, float* y, std::uint16_t* y_bf16, bool accumulate, void* stream) const;
  std::size_t weight_bytes() const;     // the layout on the device
  std::size_t workspace_bytes() const;  // partials, counters and rotated activations held now
  std::string variant(std::size_t n) const;  // which kernel and launch shape serve a batch of n
  LutMmaArith arith(std::size_t n) const;    // how that kernel applies scales (the emulation's argument)
  // The small kernel's bulk L2 prefetch of each chunk's code tiles (sm_90+; off by default, since on the H100 it
  // gained nothing or lost: docs/GPU.md, issue 31); bench_gpu times both in one run.
  void set_l2_prefetch(bool on);
  // Where the small kernel's activations are rotated: -1 automatic (lut_mma_small_pre_rotates, the default;
  // TQB_LUT_MMA_PREROTATE=0/1 overrides it), 0 in every block's prologue, 1 by the rotation kernel launched first.
  // Both give the same bits; bench_gpu times both.
  void set_small_pre_rotation(int mode);
  // The small kernel's split-K reduction: 1 the splits of a row block launched as one thread-block cluster, summing
  // their partial sums through distributed shared memory (sm_90), 0 through global memory (a partial buffer, a counter
  // per row block, the last block summing), -1 automatic (lut_mma_small_cluster_reduces, the default;
  // TQB_LUT_MMA_CLUSTER=0/1 overrides it). The same bits (one fixed order); bench_gpu times both. Earlier GPUs always
  // take the global reduction.
  void set_small_cluster_reduce(int mode);
  // Diagnostic: while on, every small-kernel call (n ≤ 16) has each block read the global timer (ns) at four points,
  // and last_trace() returns the last such call's readings (synchronous download), [block][kTraceFields] with points
  // start, prologue done (tables, side data, rotated activations in shared memory), warp 0's code stream done, block
  // done (after the split-K reduction), then the id of the SM that ran the block; empty before any traced call.
  // bench_gpu --trace summarizes them.
  static constexpr int kTraceFields = 5;
  void set_trace(bool on);
  std::vector<std::uint64_t> last_trace() const;
  // Which kernel serves a batch. automatic: lut_mma_default_path (kernels/cuda/lut_mma_paths.cpp), a rule fitted to
  // same-run H100 timings (docs/GPU.md): wgmma on Hopper where it won, else the small kernel for n ≤ 16, the large
  // kernel above, and the dequantized path (bf16 weights decoded in chunks, one cuBLAS GEMM per chunk) from the
  // prefill batch on (TQB_LUT_MMA_PREFILL_MIN overrides it). TQB_LUT_MMA_WGMMA=1 makes the choice wgmma for every
  // n > 16 on Hopper, =0 switches wgmma off. The others force one path for every n (bench_gpu times each in one
  // run, the tests check each); small serves n ≤ 16 only (multiply throws std::invalid_argument above). wgmma needs
  // compute capability 9.0 (sm_90a machine code): forcing it elsewhere throws std::invalid_argument, and
  // wgmma_available() says beforehand.
  using BatchPath = LutMmaPath;  // kernels/cuda/lut_mma_paths.hpp
  void set_batch_path(BatchPath path);
  bool wgmma_available() const;
  // Within the wgmma path, one-pass formats at n > 64: 1 the kernel whose producer warpgroup decodes each k-tile into
  // shared memory for two consumer warpgroups issuing wgmma with both operands there (wgmma_ws_kernel, the issue-31
  // sketch), 0 the kernel whose wgmma warps decode their own A fragments in registers, -1 automatic (the default;
  // TQB_LUT_MMA_WGMMA_WS=0/1 overrides it). Elsewhere (stacks, n ≤ 64, no wgmma) it changes nothing; variant() names
  // the kernel. wgmma_producer_available(): the format has it and the device runs it.
  void set_wgmma_producer(int mode);
  bool wgmma_producer_available() const;
  // Within the wgmma path, the kernel with A in registers (every format and n the producer-decoded one does not take):
  // 1 its work as stream-K shares (one block per resident slot, each the same number of k-tiles, a tile shared by two
  // or more blocks summed by the last of them; kernels/cuda/stream_k.hpp), 0 one block per output tile (split-K where
  // the tiles are fewer than the slots), -1 automatic (the default; TQB_LUT_MMA_STREAM_K=0/1 overrides it).
  void set_wgmma_stream_k(int mode);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The dense baseline: W rounded to bf16, Y = X Wᵀ by cublasGemmEx (bf16 in and out, fp32 compute).
class CublasBf16Matrix {
 public:
  CublasBf16Matrix(const float* w, std::size_t rows, std::size_t cols);
  ~CublasBf16Matrix();
  // x: n × cols bf16 on the device; y: n × rows bf16 on the device.
  void multiply(const std::uint16_t* x, std::size_t n, std::uint16_t* y, void* stream) const;
  std::size_t weight_bytes() const;
  std::unique_ptr<CublasBf16Matrix> clone() const;  // a copy of the weights made on the device

 private:
  CublasBf16Matrix();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Microseconds of each of `repetitions` calls of fn(stream), timed with CUDA events after 3 warm-up
// calls; with flush_l2, a 256 MiB buffer is rewritten before each call so that no call finds its
// weights in L2 (the cold-cache latency of a layer in a model's forward pass).
std::vector<double> time_calls(const std::function<void(void* stream)>& fn, int repetitions, bool flush_l2);
// Device-to-device copy bandwidth, bytes read + written per second (the memory roofline).
double copy_bandwidth_bytes_per_s();
// Median time_calls() figure of an empty kernel: what the timing protocol itself adds to every call
// (launch after the flush, events), the floor under any kernel's figure.
double launch_floor_us(int repetitions);
// Median time_calls() figure (L2 flushed) of a plain kernel reading `bytes` from DRAM and nothing else:
// the floor under a kernel that must read that many bytes, the empty-kernel floor included.
double read_floor_us(std::size_t bytes, int repetitions);
// The same bytes read in the small lut_mma kernel's access pattern instead of one grid-wide sweep: each warp of
// blocks of 8 reads its own contiguous piece (a stripe's K-chunk) in 512-byte requests (16 bytes a lane), six in
// flight. Against read_floor_us it says how much of the small kernel's stream rate the pattern alone costs, and
// each field below isolates one more of that kernel's traits.
struct StreamReadPattern {
  std::size_t warp_bytes = 8 << 10;  // each warp's contiguous piece
  bool interleaved = false;          // a block's 8 warps read 8 adjacent 512-byte pieces at each step (4 KB runs)
  bool cp_async_ring = false;        // through a 6-slot cp.async ring in shared memory, a slot refilled as it is read
                                     // (the small kernel's way), instead of six loads into registers
  int blocks_per_sm = 0;             // residency capped by padding each block's shared memory (the small kernel: 3
                                     // blocks of 8 warps); 0: as many as fit
  int ring_slots = 6;                // with cp_async_ring: 512-byte slots per warp (6, 8 or 12; the small kernel has 6),
                                     // whether a deeper ring would lift a warp's stream rate
};
double stream_read_floor_us(std::size_t bytes, const StreamReadPattern& pattern, int repetitions);

}  // namespace tqb::gpu
