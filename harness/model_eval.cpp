#include "harness/model_eval.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/error.hpp"
#include "common/read_file.hpp"
#include "common/rng.hpp"
#include "models/kv_quant.hpp"
#include "harness/metrics.hpp"
#include "kernels/registry.hpp"
#include "harness/layer_quantization.hpp"
#include "quantizers/registry.hpp"

namespace tqb {

std::string resolve_corpus_path(const std::string& corpus) {
  if (corpus == "wikitext-2-test")
    return (std::filesystem::path(shared_dir()) / "data" / "wikitext-2-raw" / "wiki.test.raw").string();
  return corpus;
}

std::string read_corpus(const std::string& corpus) {
  // WikiText-103's training text, the largest corpus in common use, is about 540 MB.
  constexpr std::size_t kMaxCorpusBytes = std::size_t{1} << 30;
  return read_regular_file(resolve_corpus_path(corpus), kMaxCorpusBytes, "corpus '" + corpus + "'");
}

std::unique_ptr<LlamaModel> quantize_model(const Checkpoint& ck, const Quantizer& quantizer, std::uint64_t seed,
                                           const std::string& include, const std::string& exclude,
                                           QuantizedModelStats* stats, const std::string& kernel) {
  const LayerSelection selection(include, exclude);
  QuantizedModelStats local;
  QuantizedModelStats& s = stats ? *stats : local;
  s = {};
  std::string json = "{";
  auto model = std::make_unique<LlamaModel>(ck, [&](const std::string& name, const Matrix& w) -> std::unique_ptr<Linear> {
    if (!selection.selected(name)) return make_dense_linear(w);
    QuantizedLayer ql = quantize_layer(quantizer, name, w, seed);
    const auto& q = ql.quantizer;
    const QuantizedMatrix& qm = ql.matrix;
    auto layer = make_linear(kernel, *q, qm);
    // Weight error from the layer's own dequantized copy.
    Matrix w_hat(w.rows(), w.cols());
    q->dequantize(qm, w_hat.data());
    require_finite_weights(w, w_hat, q->name() + ": layer " + name);
    const double err = (w - w_hat).cast<double>().squaredNorm();
    const double nmse = err / std::max(1e-300, w.cast<double>().squaredNorm());
    const double mse = err / static_cast<double>(w.size());
    s.quantized_bytes += static_cast<double>(qm.storage_bytes());
    s.quantized_weights += static_cast<double>(w.size());
    s.nmse_sum += nmse;
    ++s.layers;
    const std::string kernel_name = layer->kernel();
    if (std::find(s.kernels.begin(), s.kernels.end(), kernel_name) == s.kernels.end()) s.kernels.push_back(kernel_name);
    json += fmt::format("{}\"{}\": {{\"quantizer\": \"{}\", \"kernel\": \"{}\", \"mse\": {:.6g}, \"nmse\": {:.6g}, "
                        "\"bits_per_weight\": {:.6g}}}",
                        s.layers > 1 ? ", " : "", name, q->name(), kernel_name, mse, nmse, qm.bits_per_weight());
    return layer;
  });
  s.layer_json = json + "}";
  // Everything not quantized (embeddings, norms, unselected layers) at 16 bits, as bf16 checkpoints
  // store them; a tied embedding counts once.
  std::size_t total = 0;
  for (const auto& [name, m] : ck.tensors) total += static_cast<std::size_t>(m.size());
  s.other_weights = static_cast<double>(total) - s.quantized_weights;
  return model;
}

struct ModelEvaluator::Loaded {
  std::string key;
  Checkpoint ck;
  std::vector<int> tokens;
  PerplexityConfig cfg;
  BaselineLogProbs base;
  PerplexityResult base_result;
};

ModelEvaluator::ModelEvaluator() = default;
ModelEvaluator::~ModelEvaluator() = default;

constexpr int kDecodeRepetitions = 9;

ModelPointResult ModelEvaluator::evaluate(const SweepPoint& p, const Progress& progress) {
  const Params& dp = p.data->params;
  // The baseline depends on the model, the corpus and how it is scored; not on kernels or the KV cache.
  const std::string key = fmt::format("{} | {} | {} | {} | {}", get_str(dp, "model"), get_str(dp, "corpus"), get_str(dp, "method"),
                                      get_int(dp, "ctx"), get_int(dp, "chunks"));
  if (!loaded_ || loaded_->key != key) {
    loaded_.reset();
    auto l = std::make_unique<Loaded>();
    l->key = key;
    progress("loading " + get_str(dp, "model"));
    l->ck = load_checkpoint(get_str(dp, "model"));
    if (!l->ck.tokenizer)
      throw InputError(fmt::format("model '{}' has no tokenizer tqbench can read (GGUF files carry one)", get_str(dp, "model")));
    l->tokens = l->ck.tokenizer->encode(read_corpus(get_str(dp, "corpus")));
    l->cfg.method = get_str(dp, "method");
    l->cfg.ctx = static_cast<int>(get_int(dp, "ctx"));
    l->cfg.chunks = static_cast<int>(get_int(dp, "chunks"));
    l->cfg.add_bos = l->ck.tokenizer->add_bos();
    l->cfg.bos = l->ck.tokenizer->bos();
    if (l->cfg.ctx > l->ck.config.context)
      throw InputError(fmt::format("ctx {} exceeds the model's context length {}", l->cfg.ctx, l->ck.config.context));
    LlamaModel baseline(l->ck);
    l->base_result = evaluate_perplexity(baseline, l->tokens, l->cfg, &l->base, nullptr,
                                         [&](std::size_t c, std::size_t n, double ppl) {
                                           progress(fmt::format("baseline chunk {}/{}, ppl {:.4f}", c, n, ppl));
                                         });
    loaded_ = std::move(l);
  }
  Loaded& l = *loaded_;
  const auto t0 = std::chrono::steady_clock::now();
  QuantizedModelStats st;
  auto model = quantize_model(l.ck, *p.quantizer, p.seed, get_str(dp, "include"), get_str(dp, "exclude"), &st,
                              get_str(dp, "kernel"));
  const double quantize_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (st.layers == 0) throw InputError(fmt::format("include pattern '{}' matches no linear layer", get_str(dp, "include")));
  // The KV cache, quantized as it is written; its rotations come from the point's seed, so repeats draw new ones.
  KvQuantSpec kv;
  kv.key = get_str(dp, "kv_key");
  kv.value = get_str(dp, "kv_value");
  kv.key_axis = get_str(dp, "kv_key_axis");
  kv.block = static_cast<int>(get_int(dp, "kv_block"));
  kv.outliers = static_cast<int>(get_int(dp, "kv_outliers"));
  kv.outlier_key = get_str(dp, "kv_outlier_key");
  kv.outlier_value = get_str(dp, "kv_outlier_value");
  kv.layers = get_str(dp, "kv_layers");
  kv.scores = get_str(dp, "kv_scores");
  std::shared_ptr<KvQuantizer> kvq;
  KvAttentionError attention_error;
  if (kv.active()) {
    try {
      kvq = std::make_shared<KvQuantizer>(kv, l.ck.config, derive_seed(p.seed, "kv cache") >> 1);
    } catch (const InputError& e) {
      throw InputError(fmt::format("data {}: {}", p.data->name, e.what()));
    }
    model->set_kv_quantizer(kvq);
    model->set_kv_probe(&attention_error);
  }
  const PerplexityResult r = evaluate_perplexity(*model, l.tokens, l.cfg, nullptr, &l.base,
                                                 [&](std::size_t c, std::size_t n, double ppl) {
                                                   progress(fmt::format("chunk {}/{}, ppl {:.4f}", c, n, ppl));
                                                 });
  // Forward speed of this model as built: one prefill of ctx tokens, and decoding one token after ctx − 1
  // (the cache filled untimed first; median, min and max of kDecodeRepetitions).
  const std::size_t ctx = static_cast<std::size_t>(l.cfg.ctx);
  const std::vector<int> window(l.tokens.begin(), l.tokens.begin() + ctx);
  progress("timing prefill and decode");
  KvCache cache = model->new_cache(ctx);
  auto p0 = std::chrono::steady_clock::now();
  model->forward(window, cache);
  const double prefill_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - p0).count();
  std::vector<double> decode_s;
  for (int rep = 0; rep < kDecodeRepetitions; ++rep) {
    cache.len = ctx - 1;
    p0 = std::chrono::steady_clock::now();
    model->forward({window.back()}, cache);
    decode_s.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - p0).count());
  }
  std::sort(decode_s.begin(), decode_s.end());
  ModelPointResult out;
  const double model_bytes = st.quantized_bytes + 2.0 * st.other_weights;
  out.metrics = {
      {"perplexity", r.ppl},
      {"ppl_stderr", r.ppl_stderr},
      {"baseline_perplexity", l.base_result.ppl},
      {"delta_ppl", r.ppl - l.base_result.ppl},
      {"kld_mean", r.kld_mean},
      {"kld_median", r.kld_median},
      {"kld_p99", r.kld_p99},
      {"top1_agreement", r.top1_agreement},
      {"model_bytes", model_bytes},
      {"quantized_bits_per_weight", 8.0 * st.quantized_bytes / st.quantized_weights},
      {"model_bits_per_weight", 8.0 * model_bytes / (st.quantized_weights + st.other_weights)},
      {"weight_nmse_mean", st.nmse_sum / st.layers},
      {"eval_tokens", static_cast<double>(r.scored)},
      {"eval_tokens_per_s", r.tokens_per_second},
      {"quantize_s", quantize_s},
      {"prefill_tokens_per_s", static_cast<double>(ctx) / prefill_s},
      {"decode_tokens_per_s", 1.0 / decode_s[decode_s.size() / 2]},
      {"decode_ms", 1e3 * decode_s[decode_s.size() / 2]},
      {"decode_ms_min", 1e3 * decode_s.front()},
      {"decode_ms_max", 1e3 * decode_s.back()},
      {"weight_bytes_in_memory", static_cast<double>(model->linear_weight_bytes() + model->other_weight_bytes())},
  };
  const double hd_total = static_cast<double>(l.ck.config.head_dim) * l.ck.config.n_kv_heads * l.ck.config.n_layers;
  out.metrics["kv_key_bits"] = kvq ? kvq->key_bits() : 32.0;
  out.metrics["kv_value_bits"] = kvq ? kvq->value_bits() : 32.0;
  out.metrics["kv_bits"] = 0.5 * (out.metrics["kv_key_bits"] + out.metrics["kv_value_bits"]);
  out.metrics["kv_bytes_per_token"] = kvq ? kvq->bytes_per_token() : 8.0 * hd_total;
  out.metrics["kv_ip_bias"] = attention_error.ip_bias();
  out.metrics["kv_ip_rmse"] = attention_error.ip_rmse();
  out.metrics["kv_dprod"] = attention_error.dprod();
  out.metrics["kv_attn_tv"] = attention_error.weight_tv();
  out.metrics["kv_attn_out_rel"] = attention_error.out_rel();
  if (kvq)
    out.kv_cache = fmt::format("{{\"key\": \"{}\", \"value\": \"{}\", \"key_axis\": \"{}\", \"scores\": \"{}\", "
                               "\"key_bits\": {:.6g}, \"value_bits\": {:.6g}, \"outlier_channels\": {}}}",
                               kvq->spec().key, kvq->spec().value, kv.key_axis, kv.scores, kvq->key_bits(), kvq->value_bits(), kvq->outlier_json());
  out.layer_stats = st.layer_json;
  out.kernel = fmt::format("{}", fmt::join(st.kernels, ","));
  return out;
}

}  // namespace tqb
