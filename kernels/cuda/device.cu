// Device discovery, tracked allocations, event timing with L2 flushes, and the copy roofline (gpu.hpp).
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <stdexcept>
#include <string>

#include "common/timing_summary.hpp"
#include "kernels/cuda/cuda_check.hpp"
#include "kernels/cuda/gpu.hpp"

namespace tqb::gpu {

namespace {
std::atomic<std::size_t> g_live{0}, g_peak{0};
__global__ void empty_kernel() {}

// Reads `words` 16-byte words with four loads in flight per thread (non-caching in L1), xor-folds them
// and writes a word only if the fold hits a sentinel, so the loads stay live and nothing else is moved.
__global__ void read_kernel(const uint4* __restrict__ src, std::size_t words, unsigned* sink) {
  const std::size_t stride = std::size_t{gridDim.x} * blockDim.x;
  unsigned fold = 0;
  std::size_t i = std::size_t{blockIdx.x} * blockDim.x + threadIdx.x;
  for (; i + 3 * stride < words; i += 4 * stride) {
    uint4 v[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) v[u] = __ldcs(src + i + u * stride);
#pragma unroll
    for (int u = 0; u < 4; ++u) fold ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
  }
  for (; i < words; i += stride) {
    const uint4 v = __ldcs(src + i);
    fold ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (fold == 0x9e3779b9u) *sink = fold;
}
}

std::string unavailable_reason() {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear it
    return std::string("no usable CUDA driver or device (") + cudaGetErrorName(e) + ": " + cudaGetErrorString(e) + ")";
  }
  if (count == 0) return "no CUDA device";
  cudaDeviceProp p{};
  if (cudaGetDeviceProperties(&p, 0) != cudaSuccess) return "cudaGetDeviceProperties failed";
  if (p.major < 8)
    return std::string(p.name) + " has compute capability " + std::to_string(p.major) + "." + std::to_string(p.minor) +
           "; the lut_mma kernels need 8.0 or newer (bf16 mma.sync)";
  return "";
}

std::string device_description() {
  if (!unavailable_reason().empty()) return "";
  cudaDeviceProp p{};
  TQB_CUDA_CHECK(cudaGetDeviceProperties(&p, 0));
  int driver = 0, runtime = 0;
  cudaDriverGetVersion(&driver);
  cudaRuntimeGetVersion(&runtime);
  char buf[512];
  std::snprintf(buf, sizeof buf, "%s, cc %d.%d, %d SMs, %d MiB L2, %.0f GiB, driver CUDA %d.%d, runtime %d.%d", p.name, p.major, p.minor,
                p.multiProcessorCount, p.l2CacheSize >> 20, p.totalGlobalMem / 1073741824.0, driver / 1000, driver % 1000 / 10, runtime / 1000,
                runtime % 1000 / 10);
  return buf;
}

DeviceBuffer::DeviceBuffer(std::size_t bytes) : bytes_(bytes) {
  if (bytes == 0) return;
  TQB_CUDA_CHECK(cudaMalloc(&ptr_, bytes));
  const std::size_t live = g_live += bytes;
  std::size_t peak = g_peak.load();
  while (live > peak && !g_peak.compare_exchange_weak(peak, live)) {
  }
}
DeviceBuffer::~DeviceBuffer() {
  if (ptr_ != nullptr) {
    cudaFree(ptr_);
    g_live -= bytes_;
  }
}
DeviceBuffer::DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_) {
  o.ptr_ = nullptr;
  o.bytes_ = 0;
}
DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    this->~DeviceBuffer();
    ptr_ = o.ptr_;
    bytes_ = o.bytes_;
    o.ptr_ = nullptr;
    o.bytes_ = 0;
  }
  return *this;
}
void DeviceBuffer::upload_at(const void* src, std::size_t offset, std::size_t bytes) {
  if (offset > bytes_ || bytes > bytes_ - offset) throw std::runtime_error("DeviceBuffer::upload_at: past the end of the buffer");
  if (bytes) TQB_CUDA_CHECK(cudaMemcpy(static_cast<char*>(ptr_) + offset, src, bytes, cudaMemcpyHostToDevice));
}

void DeviceBuffer::upload(const void* src, std::size_t bytes) {
  if (bytes > bytes_) throw std::runtime_error("DeviceBuffer::upload: more bytes than the buffer holds");
  if (bytes) TQB_CUDA_CHECK(cudaMemcpy(ptr_, src, bytes, cudaMemcpyHostToDevice));
}
void DeviceBuffer::download(void* dst, std::size_t bytes) const {
  if (bytes > bytes_) throw std::runtime_error("DeviceBuffer::download: more bytes than the buffer holds");
  if (bytes) TQB_CUDA_CHECK(cudaMemcpy(dst, ptr_, bytes, cudaMemcpyDeviceToHost));
}
void DeviceBuffer::fill_zero() {
  if (bytes_) TQB_CUDA_CHECK(cudaMemset(ptr_, 0, bytes_));
}

std::size_t allocated_bytes() { return g_live.load(); }
std::size_t peak_bytes() { return g_peak.load(); }
void reset_peak_bytes() { g_peak.store(g_live.load()); }
std::size_t free_bytes() {
  std::size_t free = 0, total = 0;
  return cudaMemGetInfo(&free, &total) == cudaSuccess ? free : 0;
}

std::vector<double> time_calls(const std::function<void(void* stream)>& fn, int repetitions, bool flush_l2) {
  cudaStream_t stream;
  TQB_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  cudaEvent_t start, stop;
  TQB_CUDA_CHECK(cudaEventCreate(&start));
  TQB_CUDA_CHECK(cudaEventCreate(&stop));
  // The flush buffer is the protocol's, not the kernel's: a raw allocation, outside peak_bytes().
  const std::size_t flush_bytes = std::size_t{256} << 20;
  void* flush = nullptr;
  if (flush_l2) TQB_CUDA_CHECK(cudaMalloc(&flush, flush_bytes));
  std::vector<double> us;
  try {
    for (int i = 0; i < 3; ++i) fn(stream);
    TQB_CUDA_CHECK(cudaStreamSynchronize(stream));
    for (int i = 0; i < repetitions; ++i) {
      if (flush_l2) TQB_CUDA_CHECK(cudaMemsetAsync(flush, i & 0xff, flush_bytes, stream));
      TQB_CUDA_CHECK(cudaEventRecord(start, stream));
      fn(stream);
      TQB_CUDA_CHECK(cudaEventRecord(stop, stream));
      TQB_CUDA_CHECK(cudaEventSynchronize(stop));
      float ms = 0;
      TQB_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
      us.push_back(1000.0 * ms);
    }
  } catch (...) {
    cudaFree(flush);
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    cudaStreamDestroy(stream);
    throw;
  }
  cudaFree(flush);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cudaStreamDestroy(stream);
  return us;
}

double copy_bandwidth_bytes_per_s() {
  const std::size_t bytes = std::size_t{1} << 30;
  DeviceBuffer a(bytes), b(bytes);
  TQB_CUDA_CHECK(cudaMemset(a.get(), 1, bytes));
  auto us = time_calls([&](void* s) { TQB_CUDA_CHECK(cudaMemcpyAsync(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice, static_cast<cudaStream_t>(s))); },
                       20, false);
  return 2.0 * static_cast<double>(bytes) / (summarize_us(us).median * 1e-6);
}

}  // namespace tqb::gpu

namespace tqb::gpu {

double read_floor_us(std::size_t bytes, int repetitions) {
  const std::size_t words = std::max<std::size_t>(1, bytes / 16);
  DeviceBuffer src(words * 16), sink(4);
  TQB_CUDA_CHECK(cudaMemset(src.get(), 0x5a, words * 16));
  int device = 0, sms = 0;
  TQB_CUDA_CHECK(cudaGetDevice(&device));
  TQB_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  auto us = time_calls(
      [&](void* s) {
        read_kernel<<<4 * sms, 512, 0, static_cast<cudaStream_t>(s)>>>(src.as<const uint4>(), words, sink.as<unsigned>());
        TQB_CUDA_CHECK_LAUNCH("read_kernel");
      },
      repetitions, true);
  return summarize_us(us).median;
}

// The 16-byte word of src that lane `lane` of warp `warp` reads at offset i (a multiple of 32) of its chunk of per_warp
// words: the warp's own contiguous chunk, or with `interleaved` a layout where a block's 8 warps at the same step read
// 8 adjacent 512-byte pieces (4 KB contiguous) instead of 8 places a chunk apart.
__device__ __forceinline__ std::size_t stream_word(std::size_t warp, unsigned lane, std::size_t i, std::size_t per_warp, int interleaved) {
  if (!interleaved) return warp * per_warp + i + lane;
  const std::size_t block = warp / 8, w = warp % 8;
  return (block * per_warp + i) * 8 + 32 * w + lane;
}

// Warp w reads words [w · per_warp, (w + 1) · per_warp) of src (stream_word), 32 lanes × 16 bytes a request, kDepth
// requests in flight (issued together, then folded), as the small lut_mma kernel's ring streams a stripe's chunk.
template <int kDepth>
__global__ void stream_read_kernel(const uint4* __restrict__ src, std::size_t per_warp, std::size_t warps, int interleaved, unsigned* sink) {
  const std::size_t warp = (std::size_t{blockIdx.x} * blockDim.x + threadIdx.x) / 32;
  const unsigned lane = threadIdx.x & 31u;
  if (warp >= warps) return;
  auto at = [&](std::size_t i) { return stream_word(warp, lane, i, per_warp, interleaved); };
  unsigned fold = 0;
  for (std::size_t i = 0; i < per_warp; i += 32 * kDepth) {
    uint4 v[kDepth];
#pragma unroll
    for (int u = 0; u < kDepth; ++u) v[u] = i + 32 * u + lane < per_warp ? __ldcs(src + at(i + 32 * u)) : make_uint4(0, 0, 0, 0);
#pragma unroll
    for (int u = 0; u < kDepth; ++u) fold ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
  }
  if (fold == 0x9e3779b9u) *sink = fold;
}

// The same stream through a ring of kSlots 512-byte slots per warp in shared memory, filled by cp.async and each slot
// refilled right after it is read (the small lut_mma kernel's ring, without its decode). Dynamic shared memory: the
// ring ([8 warps][kSlots][32 lanes] of 16 bytes), or more to cap residency.
template <int kSlots>
__global__ void stream_ring_kernel(const uint4* __restrict__ src, std::size_t per_warp, std::size_t warps, int interleaved, unsigned* sink) {
  extern __shared__ uint4 ring[];
  const std::size_t warp = (std::size_t{blockIdx.x} * blockDim.x + threadIdx.x) / 32;
  const unsigned lane = threadIdx.x & 31u;
  if (warp >= warps) return;  // no block-wide barrier below
  auto at = [&](std::size_t i) { return stream_word(warp, lane, i, per_warp, interleaved); };
  uint4* mine = ring + (threadIdx.x / 32) * kSlots * 32 + lane;  // this lane's 16 bytes of slot 0
  const std::size_t steps = per_warp / 32;
  auto issue = [&](std::size_t step, int slot) {
    if (step < steps) {
      const auto dst = static_cast<std::uint32_t>(__cvta_generic_to_shared(mine + 32 * slot));
      asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(src + at(32 * step)));
    }
    asm volatile("cp.async.commit_group;\n" ::);
  };
  for (int r = 0; r < kSlots; ++r) issue(r, r);
  unsigned fold = 0;
  int slot = 0;
  for (std::size_t step = 0; step < steps; ++step) {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(kSlots - 1));
    const uint4 v = mine[32 * slot];  // lane-private: only this lane copied it
    fold ^= v.x ^ v.y ^ v.z ^ v.w;
    issue(step + kSlots, slot);
    slot = slot + 1 == kSlots ? 0 : slot + 1;
  }
  asm volatile("cp.async.wait_group 0;\n" ::);
  if (fold == 0x9e3779b9u) *sink = fold;
}

namespace {
template <int kSlots>
double stream_read_floor_us_at(std::size_t bytes, const StreamReadPattern& pattern, int repetitions) {
  const std::size_t per_warp = std::max<std::size_t>(32, pattern.warp_bytes / 16) / 32 * 32;
  const std::size_t warps = (std::max<std::size_t>(1, (bytes / 16 + per_warp - 1) / per_warp) + 7) / 8 * 8;
  DeviceBuffer src(warps * per_warp * 16), sink(4);
  TQB_CUDA_CHECK(cudaMemset(src.get(), 0x5a, warps * per_warp * 16));
  const unsigned blocks = static_cast<unsigned>((warps + 7) / 8);
  const void* kernel = pattern.cp_async_ring ? reinterpret_cast<const void*>(&stream_ring_kernel<kSlots>)
                                             : reinterpret_cast<const void*>(&stream_read_kernel<kSlots>);
  std::size_t smem = pattern.cp_async_ring ? std::size_t{8} * kSlots * 32 * 16 : 0;
  if (pattern.blocks_per_sm > 0) {  // each block takes its share of the SM's shared memory (less the 1 KB it reserves)
    int device = 0, per_sm = 0, optin = 0;
    TQB_CUDA_CHECK(cudaGetDevice(&device));
    TQB_CUDA_CHECK(cudaDeviceGetAttribute(&per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, device));
    TQB_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    smem = std::max<std::size_t>(smem, std::min<std::size_t>(optin, per_sm / pattern.blocks_per_sm - 1024));
  }
  TQB_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  const int interleaved = pattern.interleaved ? 1 : 0;
  auto us = time_calls(
      [&](void* s) {
        const auto stream = static_cast<cudaStream_t>(s);
        if (pattern.cp_async_ring)
          stream_ring_kernel<kSlots><<<blocks, 256, smem, stream>>>(src.as<const uint4>(), per_warp, warps, interleaved, sink.as<unsigned>());
        else
          stream_read_kernel<kSlots><<<blocks, 256, smem, stream>>>(src.as<const uint4>(), per_warp, warps, interleaved, sink.as<unsigned>());
        TQB_CUDA_CHECK_LAUNCH("stream_read_kernel");
      },
      repetitions, true);
  return summarize_us(us).median;
}
}  // namespace

double stream_read_floor_us(std::size_t bytes, const StreamReadPattern& pattern, int repetitions) {
  if (!pattern.cp_async_ring) return stream_read_floor_us_at<6>(bytes, pattern, repetitions);
  switch (pattern.ring_slots) {
    case 6: return stream_read_floor_us_at<6>(bytes, pattern, repetitions);
    case 8: return stream_read_floor_us_at<8>(bytes, pattern, repetitions);
    case 12: return stream_read_floor_us_at<12>(bytes, pattern, repetitions);
    default: throw std::invalid_argument("stream_read_floor_us: ring_slots " + std::to_string(pattern.ring_slots) + " (valid: 6, 8, 12)");
  }
}

double launch_floor_us(int repetitions) {
  auto us = time_calls(
      [](void* s) {
        empty_kernel<<<1, 32, 0, static_cast<cudaStream_t>(s)>>>();
        TQB_CUDA_CHECK_LAUNCH("empty_kernel");
      },
      repetitions, true);
  return summarize_us(us).median;
}

}  // namespace tqb::gpu
