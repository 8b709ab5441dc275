// The quantized KV cache coded on the GPU (models/kv_codec.hpp, models/cuda/kv_codec_kernels.cu): the codec's
// description reproduces the CPU path's quantizer (on the host: no GPU needed), the GPU writes the CPU path's rows for
// the same keys and values, its prefill attention is causal softmax attention over those rows, and greedy decoding with
// the coded cache (a CUDA graph per step, the fused attention reading the codes) writes the CPU path's tokens.
#include <doctest/doctest.h>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "common/error.hpp"
#include "common/float_format.hpp"
#include "common/rng.hpp"
#include "eval/model_eval.hpp"
#include "models/cuda/cuda_forward.hpp"
#include "models/kv_codec.hpp"
#include "test_util.hpp"

using namespace tqb;
namespace fs = std::filesystem;

namespace {

ModelConfig small_config(int head_dim) {
  ModelConfig c;
  c.architecture = "llama";
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = head_dim;
  c.dim = c.n_heads * head_dim;
  return c;
}

KvQuantSpec kv_spec(const std::string& key, const std::string& value = "key") {
  KvQuantSpec s;
  s.key = key;
  s.value = value;
  return s;
}

Matrix random_rows(std::size_t n, std::size_t cols, std::uint64_t seed) {
  Matrix m(static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(cols));
  Rng rng(seed);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<float>(rng.normal()) * (1.0f + static_cast<float>(i % 7));
  return m;
}

// The codec's description of one head vector, followed literally (an implementation independent of turboquant.cpp's
// and of the GPU's): rotate (signs, Walsh–Hadamard, 1/√d), norm, count the boundaries below |y|/‖y‖, decode.
std::vector<float> codec_round_trip(const KvStreamCodec& s, const float* x, std::size_t hd, const float* signs) {
  std::vector<float> y(x, x + hd);
  auto fwht = [&] {
    for (std::size_t h = 1; h < hd; h *= 2)
      for (std::size_t i = 0; i < hd; i += 2 * h)
        for (std::size_t j = i; j < i + h; ++j) {
          const float a = y[j], b = y[j + h];
          y[j] = a + b;
          y[j + h] = a - b;
        }
  };
  if (s.rotated) {
    for (std::size_t i = 0; i < hd; ++i) y[i] *= signs[i];
    fwht();
    for (auto& v : y) v *= s.scale;
  }
  double acc[8] = {};
  for (std::size_t i = 0; i < hd; ++i) acc[i % 8] += static_cast<double>(y[i]) * y[i];
  const float norm = static_cast<float>(std::sqrt(((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))));
  const int half = static_cast<int>(s.boundaries.size());
  const float stored = round_to(s.norm, norm);
  for (auto& v : y) {
    int m = 0;
    for (float b : s.boundaries) m += std::fabs(v) > b * norm;
    v = s.lut[static_cast<std::size_t>(v > 0 ? half + 1 + m : half - m)] * stored;
  }
  if (s.rotated) {
    fwht();
    for (std::size_t i = 0; i < hd; ++i) y[i] = y[i] * s.scale * signs[i];
  }
  return y;
}

// The CPU path's cache rows after writing k and v (n × kv_heads·hd each) at positions 0 … in pieces of `split`.
std::pair<Matrix, Matrix> cpu_rows(KvQuantizer& kv, int layer, const Matrix& k, const Matrix& v, std::size_t split) {
  const ModelConfig& c = kv.config();
  KvCache cache;
  const Eigen::Index row = c.n_kv_heads * c.head_dim;
  cache.k.assign(static_cast<std::size_t>(c.n_layers), Matrix::Zero(k.rows(), row));
  cache.v = cache.k;
  for (Eigen::Index p = 0; p < k.rows(); p += static_cast<Eigen::Index>(split)) {
    const Eigen::Index n = std::min<Eigen::Index>(static_cast<Eigen::Index>(split), k.rows() - p);
    kv.write(layer, static_cast<std::size_t>(p), k.middleRows(p, n), v.middleRows(p, n), cache);
  }
  return {cache.k[static_cast<std::size_t>(layer)], cache.v[static_cast<std::size_t>(layer)]};
}

// Softmax attention in double for one query head (q: its hd floats, unscaled) over rows [first, last] of the KV head's
// columns g·hd … of keys and values: hd outputs.
std::vector<double> reference_attention(const float* q, const Matrix& keys, const Matrix& values, int g, int hd, std::size_t first,
                                        std::size_t last) {
  std::vector<double> s(last + 1 - first), o(static_cast<std::size_t>(hd), 0.0);
  double mx = -INFINITY, z = 0;
  for (std::size_t j = first; j <= last; ++j) {
    double d = 0;
    for (int i = 0; i < hd; ++i) d += static_cast<double>(q[i]) * keys(static_cast<Eigen::Index>(j), g * hd + i);
    s[j - first] = d / std::sqrt(static_cast<double>(hd));
    mx = std::max(mx, s[j - first]);
  }
  for (auto& e : s) z += (e = std::exp(e - mx));
  for (std::size_t j = first; j <= last; ++j)
    for (int i = 0; i < hd; ++i) o[static_cast<std::size_t>(i)] += s[j - first] / z * values(static_cast<Eigen::Index>(j), g * hd + i);
  return o;
}

// Rows first … first + count - 1 of m on the device, through the embedding op (a table read: exact in cuda-fp32). The
// op uploads a table once and keys it by its host address, as it does a model's weights, so m must outlive ops and
// never be a temporary: a later temporary at the same address would read the first one's rows.
Acts upload_rows(ForwardOps& ops, const Matrix& m, std::size_t first, std::size_t count) {
  const Acts a = ops.alloc(count, static_cast<std::size_t>(m.cols()));
  std::vector<int> ids(count);
  for (std::size_t i = 0; i < count; ++i) ids[i] = static_cast<int>(first + i);
  ops.embed(ids, m, 1.0f, a);
  return a;
}

}  // namespace

TEST_CASE("the GPU's KV codec: which quantizers it codes, and its description reproduces the CPU path's rows") {
  const ModelConfig c = small_config(64);
  auto why = [&](const KvQuantSpec& s, const ModelConfig& cfg) { return kv_codec_unsupported(KvQuantizer(s, cfg, 5)); };
  CHECK(why(kv_spec("turboquant(bits=4,rotation=hadamard)"), c).empty());
  CHECK(why(kv_spec("turboquant(bits=2,rotation=none,norm=fp16)", "turboquant(bits=3,group=64,norm=bf16,rotation=hadamard)"), c).empty());
  CHECK(why(kv_spec("rtn(bits=4,group=32)"), c).find("turboquant only") != std::string::npos);
  CHECK(why(kv_spec("turboquant(bits=4,rotation=hadamard)", "none"), c).find("kv_value is none") != std::string::npos);
  CHECK(why(kv_spec("turboquant(bits=4,rotation=haar)"), c).find("Hadamard rotation or none") != std::string::npos);
  CHECK(why(kv_spec("turboquant(bits=4,group=32,rotation=hadamard)"), c).find("whole head vectors") != std::string::npos);
  CHECK(why(kv_spec("turboquant(bits=5,rotation=hadamard)"), c).find("2 to 4 bits") != std::string::npos);
  CHECK(why(kv_spec("turboquant(bits=4,rotation=hadamard)"), small_config(32)).find("head_dim") != std::string::npos);
  KvQuantSpec outliers = kv_spec("turboquant(bits=2,rotation=hadamard)");
  outliers.outliers = 4;
  outliers.outlier_key = "turboquant(bits=4,rotation=hadamard)";
  CHECK(why(outliers, c).find("kv_outliers") != std::string::npos);
  KvQuantSpec kivi = kv_spec("turboquant(bits=4,rotation=hadamard)");
  kivi.key_axis = "channel";
  CHECK_FALSE(why(kivi, c).empty());
  CHECK_THROWS_AS(make_kv_codec(KvQuantizer(kv_spec("rtn(bits=4,group=32)"), c, 5)), RunError);

  for (const auto& [key, value] : {std::pair{"turboquant(bits=4,rotation=hadamard)", "turboquant(bits=2,norm=fp16,rotation=hadamard)"},
                                   std::pair{"turboquant(bits=3,rotation=none,norm=bf16)", "turboquant(bits=4,codebook=gaussian,rotation=hadamard)"}}) {
    for (int hd : {64, 128}) {
      const std::string key_text = key;  // CAPTURE prints a const char* as an address
      CAPTURE(key_text);
      CAPTURE(hd);
      const ModelConfig cfg = small_config(hd);
      KvQuantizer kv(kv_spec(key, value), cfg, 17);
      const KvCodec codec = make_kv_codec(kv);
      const std::size_t row = static_cast<std::size_t>(cfg.n_kv_heads * hd);
      CHECK(codec.coded_bytes_per_token() == static_cast<std::size_t>(cfg.n_kv_heads) * (hd * (codec.key.bits + codec.value.bits) / 8 + 8));
      const Matrix k = random_rows(9, row, 1), v = random_rows(9, row, 2);
      for (int layer = 0; layer < cfg.n_layers; ++layer) {
        const auto [kc, vc] = cpu_rows(kv, layer, k, v, 4);
        float worst = 0;
        for (int t = 0; t < 9; ++t)
          for (int h = 0; h < cfg.n_kv_heads; ++h)
            for (bool is_key : {true, false}) {
              const KvStreamCodec& s = is_key ? codec.key : codec.value;
              const float* signs = s.signs.data() + (static_cast<std::size_t>(layer) * cfg.n_kv_heads + h) * hd;
              const std::vector<float> back = codec_round_trip(s, (is_key ? k : v).row(t).data() + h * hd, static_cast<std::size_t>(hd), signs);
              for (int i = 0; i < hd; ++i) worst = std::max(worst, std::fabs(back[i] - (is_key ? kc : vc)(t, h * hd + i)));
            }
        CHECK(worst == 0.0f);
      }
    }
  }
}

TEST_CASE("the GPU writes the CPU path's KV rows, and its prefill attention attends them") {
  if (const std::string why = cuda_forward_unavailable(); !why.empty()) {
    MESSAGE("SKIPPED: the GPU's coded KV cache needs a GPU: " << why);
    return;
  }
  for (const auto& [key, value] : {std::pair{"turboquant(bits=4,rotation=hadamard)", "turboquant(bits=4,rotation=hadamard)"}, std::pair{"turboquant(bits=3,norm=fp16,rotation=hadamard)", "turboquant(bits=2,rotation=hadamard)"},
                                   std::pair{"turboquant(bits=2,rotation=none)", "turboquant(bits=3,norm=bf16,rotation=hadamard)"}}) {
    for (int hd : {64, 128, 256}) {
      const std::string key_text = key;  // CAPTURE prints a const char* as an address
      CAPTURE(key_text);
      const std::string value_text = value;  // CAPTURE prints a const char* as an address
      CAPTURE(value_text);
      CAPTURE(hd);
      const ModelConfig c = small_config(hd);
      KvQuantizer kv(kv_spec(key, value), c, 23);
      const std::size_t row = static_cast<std::size_t>(c.n_kv_heads * hd), qrow = static_cast<std::size_t>(c.n_heads * hd), n = 45;
      const Matrix k = random_rows(n, row, 3), v = random_rows(n, row, 4), q = random_rows(n, qrow, 5) * 0.05f;
      auto ops = make_cuda_forward_ops(true);
      KvCache cache = ops->new_cache(c, 64, 1, &kv);
      REQUIRE(cache.coded_on_device);
      CHECK(cache.device_bytes_per_token == static_cast<double>(c.n_layers * make_kv_codec(kv).coded_bytes_per_token()));
      auto upload = [&](const Matrix& m, std::size_t first, std::size_t count) { return upload_rows(*ops, m, first, count); };
      const std::size_t split = 37;
      Matrix out(static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(qrow));
      for (int layer = 0; layer < c.n_layers; ++layer)
        for (std::size_t p = 0; p < n; p += split) {
          const std::size_t m = std::min(split, n - p);
          const Acts o = ops->alloc(m, qrow);
          ops->attention(c, layer, upload(q, p, m), upload(k, p, m), upload(v, p, m), cache, p, o, AttentionExtras{&kv, nullptr});
          out.middleRows(static_cast<Eigen::Index>(p), static_cast<Eigen::Index>(m)) = ops->to_host(o);
        }
      for (int layer = 0; layer < c.n_layers; ++layer) {
        const auto [kc, vc] = cpu_rows(kv, layer, k, v, split);
        CHECK((cuda_cache_rows(cache, layer, true, n) - kc).cwiseAbs().maxCoeff() == 0.0f);
        CHECK((cuda_cache_rows(cache, layer, false, n) - vc).cwiseAbs().maxCoeff() == 0.0f);
        if (layer != c.n_layers - 1) continue;
        // The last layer's attention output against causal softmax attention over the CPU's rows, in double.
        double worst = 0;
        for (std::size_t t = 0; t < n; ++t)
          for (int h = 0; h < c.n_heads; ++h) {
            const Matrix qt = q.block(static_cast<Eigen::Index>(t), h * hd, 1, hd);
            const std::vector<double> o = reference_attention(qt.data(), kc, vc, h / (c.n_heads / c.n_kv_heads), hd, 0, t);
            for (int i = 0; i < hd; ++i)
              worst = std::max(worst, std::fabs(o[static_cast<std::size_t>(i)] - out(static_cast<Eigen::Index>(t), h * hd + i)) /
                                          (1.0 + std::fabs(o[static_cast<std::size_t>(i)])));
          }
        CHECK(worst < 1e-4);
      }
    }
  }
}

TEST_CASE("a decode step's attention over long coded and dense caches is softmax attention over the cache's rows") {
  if (const std::string why = cuda_forward_unavailable(); !why.empty()) {
    MESSAGE("SKIPPED: the GPU's decode attention needs a GPU: " << why);
    return;
  }
  // Shapes that reach each path of the split kernels: several tiles a block (long caches), a sliding window, GQA groups
  // of 1 (warps that only stage), 3 and 4, and 8 (two blocks of heads a KV head); Llama-3-8B's heads first.
  struct Shape {
    int hd, heads, kv_heads, window;
    std::size_t n;
  };
  for (const Shape& sh : {Shape{128, 32, 8, 0, 9000}, Shape{64, 6, 2, 0, 5000}, Shape{256, 8, 1, 1500, 6000}, Shape{128, 4, 4, 0, 2000},
                          Shape{64, 8, 2, 100, 700}}) {
    for (const char* spec : {"", "turboquant(bits=4,rotation=hadamard)", "turboquant(bits=3,rotation=none)/turboquant(bits=2,rotation=hadamard)"}) {
      CAPTURE(sh.hd);
      CAPTURE(sh.heads);
      CAPTURE(sh.kv_heads);
      CAPTURE(sh.window);
      const std::string spec_text = spec;  // CAPTURE prints a const char* as an address
      CAPTURE(spec_text);
      ModelConfig c = small_config(sh.hd);
      c.n_layers = 1;
      c.n_heads = sh.heads;
      c.n_kv_heads = sh.kv_heads;
      c.dim = sh.heads * sh.hd;
      c.sliding_window = sh.window;
      const std::string text = spec;
      const std::size_t slash = text.find('/');
      std::unique_ptr<KvQuantizer> kv;
      if (!text.empty())
        kv = std::make_unique<KvQuantizer>(kv_spec(text.substr(0, slash), slash == std::string::npos ? "key" : text.substr(slash + 1)), c, 31);
      auto ops = make_cuda_forward_ops(false);
      KvCache cache = ops->new_cache(c, sh.n, 1, kv.get());
      REQUIRE(cache.coded_on_device == !text.empty());
      const std::size_t row = static_cast<std::size_t>(c.n_kv_heads * sh.hd), qrow = static_cast<std::size_t>(c.n_heads * sh.hd);
      const Matrix q_all = random_rows(sh.n, qrow, 40) * 0.01f, k_all = random_rows(sh.n, row, 41), v_all = random_rows(sh.n, row, 42);
      constexpr std::size_t kPiece = 1000;  // rows written by the prefill path, a piece at a time
      for (std::size_t p = 0; p < sh.n; p += kPiece) {
        const std::size_t m = std::min(kPiece, sh.n - p);
        const Acts o = ops->alloc(m, qrow);
        ops->attention(c, 0, upload_rows(*ops, q_all, p, m), upload_rows(*ops, k_all, p, m), upload_rows(*ops, v_all, p, m), cache, p, o,
                       AttentionExtras{kv.get(), nullptr});
      }
      const Matrix keys = cuda_cache_rows(cache, 0, true, sh.n), values = cuda_cache_rows(cache, 0, false, sh.n);
      double worst = 0;
      for (const std::size_t pos : {sh.n - 1, sh.n / 2 + 17, std::size_t{40}}) {
        const Matrix q = random_rows(1, qrow, 77 + pos) * 0.05f;
        const Matrix got = cuda_decode_attention(cache, c, 0, q, pos);
        const std::size_t first = sh.window > 0 && pos + 1 > static_cast<std::size_t>(sh.window) ? pos + 1 - sh.window : 0;
        for (int h = 0; h < c.n_heads; ++h) {
          const std::vector<double> o = reference_attention(q.data() + h * sh.hd, keys, values, h / (c.n_heads / c.n_kv_heads), sh.hd, first, pos);
          for (int i = 0; i < sh.hd; ++i)
            worst = std::max(worst, std::fabs(o[static_cast<std::size_t>(i)] - got(0, h * sh.hd + i)) / (1.0 + std::fabs(o[static_cast<std::size_t>(i)])));
        }
      }
      CHECK(worst < 1e-4);
    }
  }
}

TEST_CASE("greedy decoding with a TurboQuant KV cache coded on the GPU (a CUDA graph per step) writes the CPU path's tokens") {
  if (const std::string why = cuda_forward_unavailable(); !why.empty()) {
    MESSAGE("SKIPPED: the GPU's coded KV cache needs a GPU: " << why);
    return;
  }
  const fs::path shared = shared_dir(), books = shared / "models/books-14m", text = shared / "data/books-heldout/heldout.txt";
  if (!fs::exists(books) || !fs::exists(text)) {
    MESSAGE("SKIPPED: needs books-14m (head_dim 64) and its held-out text under " << shared.string());
    return;
  }
  const Checkpoint ck = load_checkpoint(books.string());
  std::vector<int> prompt = ck.tokenizer->encode(read_corpus(text.string()).substr(0, 400));
  prompt.insert(prompt.begin(), ck.tokenizer->bos());
  constexpr std::size_t kNew = 64;
  for (const char* key : {"turboquant(bits=4,rotation=hadamard)", "turboquant(bits=3,rotation=none)"}) {
    const std::string key_text = key;  // CAPTURE prints a const char* as an address
    CAPTURE(key_text);
    const auto kv = std::make_shared<KvQuantizer>(kv_spec(key), ck.config, 29);
    const auto cpu = make_model(ck, "cpu");
    cpu->set_kv_quantizer(kv);
    KvCache cc = cpu->new_cache(prompt.size() + kNew - 1);
    const std::vector<int> want = cpu->generate_greedy(prompt, kNew, cc).tokens;
    // The CPU's logits at each generated position (teacher-forced through the same quantized cache).
    std::vector<int> all = prompt;
    all.insert(all.end(), want.begin(), want.end() - 1);
    KvCache fc = cpu->new_cache(all.size());
    const Matrix forced = cpu->forward(all, fc, kNew);
    for (const std::string device : {"cuda-fp32", "cuda"}) {
      CAPTURE(device);
      const auto gpu = make_model(ck, device);
      gpu->set_kv_quantizer(kv);
      KvCache gc = gpu->new_cache(prompt.size() + kNew - 1);
      REQUIRE(gc.coded_on_device);
      const LlamaModel::Greedy g = gpu->generate_greedy(prompt, kNew, gc);
      REQUIRE(g.tokens.size() == kNew);
      CHECK(g.step_s.size() == kNew - 2);  // graph replays (the host loop would time kNew − 1 steps)
      std::size_t same = 0;
      while (same < kNew && g.tokens[same] == want[same]) ++same;
      float margin = 0;
      if (same < kNew) {
        std::vector<float> r(forced.row(static_cast<Eigen::Index>(same)).data(),
                             forced.row(static_cast<Eigen::Index>(same)).data() + forced.cols());
        std::partial_sort(r.begin(), r.begin() + 2, r.end(), std::greater<>());
        margin = r[0] - r[1];
      }
      MESSAGE(fmt::format("{} KV {}: {} of {} tokens as the CPU's{}", device, key, same, kNew,
                          same < kNew ? fmt::format(" (then a CPU margin of {:.4f})", margin) : ""));
      // Where they part, the CPU's choice was a near-tie: the fused attention sums in another order (fp32), bf16
      // activations move logits by a few hundredths and can move a key across a code boundary.
      const float tie = std::string(device) == "cuda-fp32" ? 2e-3f : 0.25f;
      CHECK((same == kNew || margin <= tie));
      if (std::string(device) == "cuda-fp32") CHECK(same >= kNew / 2);
    }
  }
}
