#pragma once
// Launchers of the GPU forward's kernels (forward_kernels.cu), as plain C++ for cuda_forward.cpp. Pointers are
// device pointers; every launch goes to the default stream.
#include <cstddef>
#include <cstdint>

namespace tqb::cuda_forward {

void launch_to_bf16(const float* x, std::uint16_t* y, std::size_t n);
void launch_embed(const int* tokens, std::size_t n, const float* table, std::size_t d, float scale, float* x);  // x[t] = scale · table[tokens[t]]
void launch_embed_bf16(const int* tokens, std::size_t n, const std::uint16_t* table, std::size_t d, float scale, float* x);
// Rows of seqs sequences of n rows each (x: fp32, `row` wide) to positions pos0 … of each sequence's rows in a bf16
// cache of `capacity` positions per sequence.
void launch_kv_write_bf16(const float* x, std::size_t seqs, std::size_t n, std::size_t row, std::uint16_t* cache, std::size_t capacity,
                          std::size_t pos0);
// y_bf16 (may be null): the same values in bf16 as well.
void launch_rms_norm(const float* x, std::size_t vectors, std::size_t d, const float* w, float eps, float* y, std::uint16_t* y_bf16);
void launch_add_rows(float* x, const float* b, std::size_t rows, std::size_t cols);  // x[t] += b
void launch_add(float* x, const float* y, std::size_t n);                            // x += y
void launch_to_double(const float* x, double* y, std::size_t n);
// sums[c] += Σ_r |x[r][c]| (x: rows × cols), in double.
void launch_column_abs_sums(const float* x, std::size_t rows, std::size_t cols, double* sums);
// x: n rows; cs, sn: seq_rows × hd/2 cosines and sines of the positions' angles (row t uses table row t mod seq_rows).
void launch_rope(float* x, std::size_t n, std::size_t seq_rows, int heads, int hd, bool interleaved, const float* cs, const float* sn);
// As launch_flash_attention (flash_attention.hpp), in fp32 with one block per query, head and sequence: the exact
// mode. false when a row of scores does not fit in shared memory (nothing launched).
bool launch_attention(const float* q, const float* K, const float* V, float* out, std::size_t n, std::size_t sequences, std::size_t pos0,
                      std::size_t capacity, int nh, int nkv, int hd, int window, float scale);
void launch_glu(float* g, const float* u, std::size_t n, bool gelu);  // g ← act(g) ⊙ u (silu, or gelu_tanh)
void launch_glu_bf16(std::uint16_t* g, const std::uint16_t* u, std::size_t n, bool gelu);  // the same on bf16 (n even)
// nll[i] = −log softmax(logits[i])[targets[i]] for rows i < rows (logits: rows × vocab, more rows allowed); 0 where
// targets[i] < 0.
void launch_nll(const float* logits, std::size_t rows, std::size_t vocab, const int* targets, double* nll);

}  // namespace tqb::cuda_forward
