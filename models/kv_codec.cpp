#include "models/kv_codec.hpp"

#include <fmt/format.h>

#include <cmath>

#include "common/error.hpp"
#include "quantizers/decode.hpp"
#include "quantizers/params.hpp"
#include "quantizers/turboquant.hpp"

namespace tqb {
namespace {

// Why one stream's quantizer is not one the GPU encodes ("" when it is).
std::string stream_unsupported(const Quantizer* q, const char* key, int head_dim) {
  if (!q) return fmt::format("{} is none (an fp32 stream beside a coded one is not a GPU layout)", key);
  if (q->family() != "turboquant") return fmt::format("{} '{}': the GPU encodes turboquant only", key, q->name());
  const Params& p = q->params();
  const std::int64_t bits = get_int(p, "bits"), group = get_int(p, "group");
  const std::string& rotation = get_str(p, "rotation");
  if (bits < 2 || bits > 4) return fmt::format("{} '{}': the GPU's kernels take 2 to 4 bits", key, q->name());
  if (rotation != "hadamard" && rotation != "none")
    return fmt::format("{} '{}': the GPU applies the Hadamard rotation or none, not {} (turboquant's default: name rotation=hadamard)", key,
                       q->name(), rotation);
  if (group != 0 && group != head_dim)
    return fmt::format("{} '{}': the GPU codes whole head vectors (group=row or {})", key, q->name(), head_dim);
  return "";
}

KvStreamCodec stream_codec(const KvQuantizer& kv, bool is_key) {
  const ModelConfig& c = kv.config();
  const Quantizer& q = *(is_key ? kv.key_quantizer() : kv.value_quantizer());
  const std::size_t hd = static_cast<std::size_t>(c.head_dim);
  KvStreamCodec s;
  s.bits = static_cast<int>(get_int(q.params(), "bits"));
  s.norm = *parse_float_format(get_str(q.params(), "norm"));
  s.rotated = get_str(q.params(), "rotation") == "hadamard";
  s.scale = 1.0f / std::sqrt(static_cast<float>(hd));  // hadamard.hpp's factor for a block of head_dim
  const std::vector<float> all = turboquant_boundaries(get_str(q.params(), "codebook"), hd, s.bits);
  s.boundaries.assign(all.begin() + static_cast<std::ptrdiff_t>(all.size() / 2 + 1), all.end());
  s.signs.assign(static_cast<std::size_t>(c.n_layers) * c.n_kv_heads * hd, 1.0f);
  // The lut and the rotations from the quantizer's own decode description of one (zero) head vector, quantized with
  // the seed the CPU path gives that layer and head.
  const std::vector<float> zero(hd, 0.0f);
  for (int l = 0; l < c.n_layers; ++l)
    for (int h = 0; h < c.n_kv_heads; ++h) {
      if (!kv.quantizes(l) || (!s.rotated && !s.lut.empty())) continue;
      const QuantizedMatrix qm = q.quantize(zero.data(), 1, hd, kv.head_seed(l, is_key, h, "main"));
      std::vector<DecodePass> passes;
      q.describe_decode(qm, passes);
      if (passes.size() != 1 || passes[0].lut.size() != (std::size_t{1} << s.bits) || passes[0].g != hd)
        throw RunError(fmt::format("{}: an unexpected decode description for the GPU's KV codec", q.name()));
      s.lut = passes[0].lut;
      if (!s.rotated) continue;
      const HadamardPlan* plan = passes[0].rotations.empty() ? nullptr : passes[0].rotations[0]->hadamard_plan();
      if (!plan || plan->blocks.size() != 1 || plan->signs.size() != hd)
        throw RunError(fmt::format("{}: the GPU's KV codec expects one Hadamard block of {}", q.name(), hd));
      std::copy(plan->signs.begin(), plan->signs.end(), s.signs.begin() + (static_cast<std::ptrdiff_t>(l) * c.n_kv_heads + h) * hd);
    }
  return s;
}

}  // namespace

std::string kv_codec_unsupported(const KvQuantizer& kv) {
  const KvQuantSpec& spec = kv.spec();
  const int hd = kv.config().head_dim;
  if (hd != 64 && hd != 128 && hd != 256) return fmt::format("the GPU's coded KV cache takes head_dim 64, 128 or 256, not {}", hd);
  if (spec.key_axis != "token") return "kv_key_axis channel (KIVI) is quantized on the host";
  if (spec.outliers > 0) return "kv_outliers are quantized on the host";
  if (spec.scores != "dequantized") return "kv_scores estimator runs on the host";
  if (std::string why = stream_unsupported(kv.key_quantizer(), "kv_key", hd); !why.empty()) return why;
  return stream_unsupported(kv.value_quantizer(), "kv_value", hd);
}

KvCodec make_kv_codec(const KvQuantizer& kv) {
  if (const std::string why = kv_codec_unsupported(kv); !why.empty()) throw RunError("make_kv_codec: " + why);
  const ModelConfig& c = kv.config();
  KvCodec codec;
  codec.layers = c.n_layers;
  codec.kv_heads = c.n_kv_heads;
  codec.head_dim = c.head_dim;
  for (int l = 0; l < c.n_layers; ++l) codec.coded.push_back(kv.quantizes(l));
  codec.key = stream_codec(kv, true);
  codec.value = stream_codec(kv, false);
  return codec;
}

}  // namespace tqb
