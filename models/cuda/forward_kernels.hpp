#pragma once
// Launchers of the GPU forward's kernels (forward_kernels.cu), as plain C++ for cuda_forward.cpp. Pointers are
// device pointers; every launch goes to the default stream.
#include <cstddef>
#include <cstdint>

namespace tqb::cuda_forward {

void launch_to_bf16(const float* x, std::uint16_t* y, std::size_t n);
void launch_embed(const int* tokens, std::size_t n, const float* table, std::size_t d, float scale, float* x);  // x[t] = scale · table[tokens[t]]
void launch_rms_norm(const float* x, std::size_t vectors, std::size_t d, const float* w, float eps, float* y);
void launch_add_rows(float* x, const float* b, std::size_t rows, std::size_t cols);  // x[t] += b
void launch_add(float* x, const float* y, std::size_t n);                            // x += y
// cs, sn: n × hd/2 cosines and sines of the positions' angles.
void launch_rope(float* x, std::size_t n, int heads, int hd, bool interleaved, const float* cs, const float* sn);
// out (n × nh·hd) = causal softmax(scale · q Kᵀ) V for queries at positions pos0 …, K and V: (pos0 + n) × nkv·hd.
// false when a row of scores does not fit in shared memory (nothing launched).
bool launch_attention(const float* q, const float* K, const float* V, float* out, std::size_t n, std::size_t pos0, int nh, int nkv,
                      int hd, int window, float scale);
void launch_glu(float* g, const float* u, std::size_t n, bool gelu);  // g ← act(g) ⊙ u (silu, or gelu_tanh)
// nll[i] = −log softmax(logits[i])[targets[i]] for rows i < rows (logits: rows × vocab, more rows allowed).
void launch_nll(const float* logits, std::size_t rows, std::size_t vocab, const int* targets, double* nll);

}  // namespace tqb::cuda_forward
