#pragma once
// Hopper's bulk asynchronous copies (cp.async.bulk, sm_90) and the shared-memory barriers (mbarrier) that
// count their bytes, as the lut_mma wgmma kernel uses them: one thread asks for a whole contiguous piece
// (a 16 KB activation tile, a stripe's 512-byte code tile) with one instruction and no address arithmetic
// per 16 bytes, and the consumers wait on the stage's barrier phase instead of a cp.async group.
// PTX ISA 8.x, "Data Movement and Conversion Instructions: cp.async.bulk" and "Parallel Synchronization
// and Communication Instructions: mbarrier". Where the target is older than sm_90 every wrapper traps (the
// compute_80 PTX), and the host launches its callers only on compute capability 9.0.
#include <cstdint>

namespace tqb::lut_mma {

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define TQB_BULK_COPY 1
#else
#define TQB_BULK_COPY 0
#endif

// A barrier at shared address `bar` (8-byte aligned) whose phase completes after `arrivals` arrivals and
// every byte they announced has landed. Call from one thread, then fence_barrier_init and a __syncthreads.
__device__ __forceinline__ void mbarrier_init(std::uint32_t bar, int arrivals) {
#if TQB_BULK_COPY
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(arrivals) : "memory");
#else
  (void)bar, (void)arrivals;
  __trap();
#endif
}
// Makes the initialized barriers visible to the asynchronous proxy (the bulk copies complete on them).
__device__ __forceinline__ void fence_barrier_init() {
#if TQB_BULK_COPY
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
#endif
}
// One arrival that announces `bytes` more to land in the current phase (before the copies are issued).
__device__ __forceinline__ void mbarrier_arrive_expect_tx(std::uint32_t bar, std::uint32_t bytes) {
#if TQB_BULK_COPY
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
#else
  (void)bar, (void)bytes;
#endif
}
// One arrival without bytes (a thread announcing that its own part of the phase's work is done).
__device__ __forceinline__ void mbarrier_arrive(std::uint32_t bar) {
#if TQB_BULK_COPY
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
#else
  (void)bar;
#endif
}
// Waits until the phase of parity `parity` (0, 1, 0, … for the barrier's uses in order) has completed; the
// bytes copied in that phase are then visible to this thread.
__device__ __forceinline__ void mbarrier_wait(std::uint32_t bar, std::uint32_t parity) {
#if TQB_BULK_COPY
  asm volatile(
      "{\n"
      ".reg .pred done;\n"
      "wait_%=:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra wait_%=;\n"
      "}\n" ::"r"(bar),
      "r"(parity)
      : "memory");
#else
  (void)bar, (void)parity;
#endif
}
// `bytes` (a multiple of 16) from global `src` to shared `dst` (both 16-byte aligned), counted on `bar`.
__device__ __forceinline__ void bulk_copy_g2s(std::uint32_t dst, const void* src, std::uint32_t bytes, std::uint32_t bar) {
#if TQB_BULK_COPY
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(dst), "l"(src), "r"(bytes),
               "r"(bar)
               : "memory");
#else
  (void)dst, (void)src, (void)bytes, (void)bar;
#endif
}

}  // namespace tqb::lut_mma
