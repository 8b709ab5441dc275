#pragma once
// The kernels of one decode step whose token and position live in device memory (decode_kernels.cu), so that the
// step can be captured once as a CUDA graph and replayed (cuda_forward.cpp's greedy_decode): the host never
// supplies a per-step value. Plain C++ for cuda_forward.cpp; pointers are device pointers; launches go to the
// (per-thread) default stream.
#include <cstddef>
#include <cstdint>

namespace tqb::cuda_forward {

// What a decode step reads and advances on the device: the token being fed, its position, the step's index.
struct DecodeState {
  int token = 0, pos = 0, step = 0, pad = 0;
};

// cs, sn: half cosines and sines of the angles state->pos · inv_freq[i] (in double, then float: the CPU's values).
void launch_rope_tables_at(const DecodeState* state, const float* inv_freq, int half, float* cs, float* sn);

// RoPE on one token's q (nh heads) and k (nkv heads) in place with the step's angles (cs, sn: hd/2 each, from
// launch_rope_tables_at), and k's rotated row and v's row written to position state->pos of the caches (bf16 bits, or
// fp32), in one launch: a decode step's RoPE and cache write. K and V null: RoPE only.
void launch_rope_kv_write_at(float* q, float* k, const float* v, int nh, int nkv, int hd, bool interleaved, const float* cs,
                             const float* sn, void* K, void* V, bool bf16, const DecodeState* state);

// Floats of scratch launch_decode_attention needs for nh heads of hd at a capacity.
std::size_t decode_attention_scratch_floats(int nh, int hd, std::size_t capacity);
// out (nh·hd fp32) and out_bf16 (may be null) = softmax(scale · q Kᵀ) V for the one query at state->pos, over the keys
// 0 … pos of a cache of `capacity` rows of nkv·hd (bf16 bits, or fp32), GQA, a sliding window when window > 0.
// Split over the keys (flash-decoding: each block a key range of one KV head and up to four of the query heads that
// read it, one head a warp; then one combine), with a split count fixed by the capacity, so that one launch serves
// every position. false: head_dim above 256 (nothing launched).
bool launch_decode_attention(const float* q, const void* K, const void* V, bool bf16, float* out, std::uint16_t* out_bf16,
                             const DecodeState* state, std::size_t capacity, int nh, int nkv, int hd, int window, float scale,
                             float* scratch);

// Greedy sampling: the first index of logits' largest value (vocab floats, the CPU's rule) becomes state->token and
// tokens[state->step]; then the step and the position advance.
void launch_greedy_advance(const float* logits, std::size_t vocab, DecodeState* state, int* tokens);

}  // namespace tqb::cuda_forward
