#pragma once
// The quantized KV cache as a GPU writes and reads it itself (issue 25): keys and values encoded on the device as
// they are written and attention reading the codes, so that a decode step stays one CUDA graph. This is the plain
// description the GPU kernels take (models/cuda/kv_codes.cuh), made from a KvQuantizer (models/kv_quant.hpp) through
// its quantizers' decode description (quantizers/decode.hpp: lut, transform, bits) and, for the encoder, TurboQuant's
// boundaries: the codes are those the CPU path's quantizer writes for the same rows (tests/test_gpu_kv_cache.cpp).
//
// Covered: TurboQuant_mse (Zandieh et al. 2025, Algorithm 1; the paper's §4 KV-cache application) on each head
// vector (group = row = head_dim, a power of two of 64 to 256), with the randomized Hadamard rotation or none, 2 to
// 4 bits, any norm format, per token, no outlier channels, scores from the dequantized keys (turboquant's default
// rotation is Haar, a dense d × d product the GPU would not round as the CPU's GEMM does: name rotation=hadamard). Anything else (QJL,
// TurboQuant_prod, KIVI's channel axis, outlier channels, Haar rotations, the estimator) keeps the CPU path's
// quantizer on the host (cuda_forward.cpp's write_quantized_kv), whose decode steps cannot be captured.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/float_format.hpp"
#include "models/kv_quant.hpp"

namespace tqb {

// One stream's codes (keys or values): per head vector x of head_dim floats, y = Π x (Π = H D / √head_dim or the
// identity), the norm ‖y‖ (stored after rounding through `norm`), and code_i = #{boundaries below y_i / ‖y‖} (the
// symmetric rule of turboquant.cpp). Decoded: x̂ = Πᵀ (‖y‖ · lut[code]).
struct KvStreamCodec {
  int bits = 4;
  FloatFormat norm = FloatFormat::fp32;
  bool rotated = true;             // the randomized Hadamard transform (signs per layer and head below)
  float scale = 1;                 // 1/√head_dim, as the CPU's transform computes it in float
  std::vector<float> lut;          // 2^bits centroids of a unit vector's coordinate, ascending
  std::vector<float> boundaries;   // the 2^(bits−1) − 1 positive ones of the 2^bits − 1 decision boundaries, ascending
  std::vector<float> signs;        // [layer][kv head][head_dim]: D's ±1 (1 where not rotated)
  // Bytes of one head vector's codes (head_dim · bits / 8).
  std::size_t code_bytes(int head_dim) const { return static_cast<std::size_t>(head_dim) * static_cast<std::size_t>(bits) / 8; }
};

struct KvCodec {
  int layers = 0, kv_heads = 0, head_dim = 0;
  std::vector<bool> coded;  // per layer: the quantizer covers it (kv_layers); others keep the dense cache
  KvStreamCodec key, value;
  // Device bytes per token of a coded layer: codes plus an fp32 norm per head vector, keys and values.
  std::size_t coded_bytes_per_token() const {
    return static_cast<std::size_t>(kv_heads) * (key.code_bytes(head_dim) + value.code_bytes(head_dim) + 2 * sizeof(float));
  }
};

// Empty when the GPU can write what `kv` writes itself; else why not, in words (the host path then runs it).
std::string kv_codec_unsupported(const KvQuantizer& kv);
// The description of `kv`'s codes (kv_codec_unsupported(kv) must be empty): codebooks, boundaries and each layer's
// and head's rotation signs, drawn from the same seeds as the CPU path's.
KvCodec make_kv_codec(const KvQuantizer& kv);

}  // namespace tqb
