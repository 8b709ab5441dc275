#pragma once
// The GPU backend of the forward (models/forward_ops.hpp): activations, parameters and the KV cache in device
// memory (activations in fp32), projections by cuBLAS on bf16 weights or by the lut_mma kernels on packed codes, RMSNorm, RoPE,
// causal GQA attention (sliding window), GLU and residual adds as CUDA kernels. Plain C++ here (no CUDA
// headers): built from cuda_forward.cu with nvcc, else from no_cuda_forward.cpp, whose entry points say why.
// Attention on tensor cores (flash_attention.cu); a quantized KV cache coded on the device where the GPU encodes its
// quantizer (models/kv_codec.hpp), else written by the CPU path's quantizer.
#include <memory>
#include <string>

#include "kernels/linear.hpp"
#include "models/forward_ops.hpp"

namespace tqb {

// Empty when the GPU backend can run here, else why not.
std::string cuda_forward_unavailable();
// fp32: the embedding table, KV cache and attention in fp32 (one block per query and head), the agreement mode
// of --device cuda-fp32; otherwise a bf16 table and cache and bf16 tensor-core attention products with an fp32
// softmax where the head_dim allows (flash_attention.hpp; elsewhere the fp32 attention).
std::unique_ptr<ForwardOps> make_cuda_forward_ops(bool fp32 = false);
// W: out × in fp32 on the host, kept as bf16 on the GPU; forward takes device pointers (fp32 in and out, x rounded
// to bf16), cuBLAS bf16 GEMM with fp32 accumulation. fp32: W kept in fp32 and an fp32 GEMM (no TF32), the
// agreement mode for checkpoints stored in fp32.
std::unique_ptr<Linear> make_cuda_dense_linear(const Matrix& w, bool fp32 = false);
// The first n rows (n × kv_heads·head_dim, fp32) of layer l's keys (or values) in a cache this backend made, as its
// attention reads them: a coded layer decoded by the GPU's decoder, a dense one widened from bf16 where it is bf16.
Matrix cuda_cache_rows(const KvCache& cache, int layer, bool keys, std::size_t n);
// One decode step's attention of layer l (the kernels generate's graph runs: flash-decoding's split over a dense cache,
// or the staged split over a coded one) for the query q (1 × n_heads·head_dim, RoPE applied, unscaled) at position pos
// over the rows [0, pos] already in the cache (c.sliding_window applies): 1 × n_heads·head_dim. For tests.
Matrix cuda_decode_attention(const KvCache& cache, const ModelConfig& c, int layer, const Matrix& q, std::size_t pos);
// A quantized matrix the lut_mma kernels read, on device pointers (fp32 in and out, x rounded to bf16).
std::unique_ptr<Linear> make_cuda_lut_mma_device_linear(const Quantizer& quantizer, const QuantizedMatrix& q);

}  // namespace tqb
