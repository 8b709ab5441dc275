#pragma once
// Causal GQA attention on tensor cores (flash_attention.cu): bf16 products, fp32 softmax and accumulation.
// Plain C++ for cuda_forward.cpp; pointers are device pointers, launches go to the default stream.
#include <cstddef>
#include <cstdint>

namespace tqb::cuda_forward {

// Whether this GPU (compute capability 8.0 or later) and head_dim (16, 32, 64, 128 or 256) are covered.
bool flash_attention_supports(int head_dim);
// For each of `sequences` sequences s: out_s (n × nh·hd) = causal softmax(scale · q_s K_sᵀ) V_s for queries at
// positions pos0 …; q, out: sequences·n rows (fp32); K, V: bf16 bits, sequences × capacity rows of nkv·hd, the
// first pos0 + n written. window > 0: a query sees only the last `window` positions. The output goes to `out` (fp32)
// and/or `out_bf16` (bf16 bits, the next GEMM's input); either may be null. false: nothing launched.
bool launch_flash_attention(const float* q, const std::uint16_t* K, const std::uint16_t* V, float* out, std::uint16_t* out_bf16,
                            std::size_t n,
                            std::size_t sequences, std::size_t pos0, std::size_t capacity, int nh, int nkv, int head_dim, int window,
                            float scale);

}  // namespace tqb::cuda_forward
