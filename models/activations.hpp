#pragma once
// The element-wise pieces of a transformer layer that call exp: SwiGLU, GeGLU and the attention softmax. They
// are compiled with -ffast-math (this file's .cpp only) because glibc declares its vector expf (libmvec:
// 4, 8 or 16 lanes, ≤ 4 ulp) only then, and per ISA level (TQB_MULTIVERSION): a SmolLM2 prefill spent
// ~12% of its time in scalar expf. Inputs must be finite (a model's activations are; the perplexity
// checks its result).
#include <cstddef>

namespace tqb {

// g[i] = silu(g[i]) · u[i] = g[i] / (1 + exp(−g[i])) · u[i], for i < n.
void silu_mul(float* g, const float* u, std::size_t n);

// g[i] = gelu_tanh(g[i]) · u[i], GELU's tanh approximation 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
// (Gemma's GeGLU, PyTorch's gelu(approximate='tanh')), for i < n. tanh = 1 − 2/(1 + exp(2y)): one expf.
void gelu_tanh_mul(float* g, const float* u, std::size_t n);

// s[0..visible) = softmax(s[0..visible)), s[visible..total) = 0: one attention row.
void softmax_row(float* s, std::size_t visible, std::size_t total);

}  // namespace tqb
