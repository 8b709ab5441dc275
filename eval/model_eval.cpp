#include "eval/model_eval.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <filesystem>

#include "common/error.hpp"
#include "common/memory.hpp"
#include "common/read_file.hpp"
#include "common/rng.hpp"
#include "models/kv_quant.hpp"
#include "eval/finite_weights.hpp"
#include "kernels/cuda/gpu.hpp"
#include "kernels/cuda/lut_mma_layout.hpp"
#include "kernels/registry.hpp"
#include "models/cuda/cuda_forward.hpp"
#include "eval/layer_quantization.hpp"

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

// "cuda": bf16 weights and GEMM inputs; "cuda-fp32": fp32 throughout (agreement with fp32 checkpoints).
bool device_is_cuda(const std::string& device) {
  if (device != "cpu" && device != "cuda" && device != "cuda-fp32")
    throw InputError(fmt::format("device '{}': expected cpu, cuda or cuda-fp32", device));
  return device != "cpu";
}

std::unique_ptr<Linear> dense_linear_on(const std::string& device, const Matrix& w) {
  return device_is_cuda(device) ? make_cuda_dense_linear(w, device == "cuda-fp32") : make_dense_linear(w);
}

std::unique_ptr<Linear> quantized_linear_on(const std::string& device, const std::string& kernel, const Quantizer& q,
                                            const QuantizedMatrix& qm) {
  if (!device_is_cuda(device)) return make_linear(kernel, q, qm);
  if (kernel == "cuda_lut_mma") {
    if (const std::string why = lut_mma_supports(q); !why.empty())
      throw InputError(fmt::format("kernel 'cuda_lut_mma' cannot run {}: {}", q.name(), why));
    return make_cuda_lut_mma_device_linear(q, qm);
  }
  if (kernel != "dequantized_dense" && kernel != "auto")
    throw InputError(fmt::format("--device cuda runs quantized layers dequantized to bf16 (dequantized_dense, auto) or as "
                                 "packed codes (cuda_lut_mma), not kernel '{}'", kernel));
  // Dequantized once, then bf16 on the GPU (cuda-fp32: fp32): exactly the quantizer's weights.
  Matrix w_hat(static_cast<Eigen::Index>(qm.rows), static_cast<Eigen::Index>(qm.cols));
  q.dequantize(qm, w_hat.data());
  return make_cuda_dense_linear(w_hat, device == "cuda-fp32");
}

void check_fits_gpu(const Checkpoint& ck, const std::string& device, std::size_t tokens) {
  if (!device_is_cuda(device)) return;
  // No GPU at all is that, not a model too large for 0 bytes.
  if (const std::string why = cuda_forward_unavailable(); !why.empty()) throw InputError(fmt::format("--device {} needs a CUDA GPU: {}", device, why));
  const ModelConfig& c = ck.config;
  const double w = device == "cuda-fp32" ? 4 : 2;  // bytes per weight and per cached key or value
  double weights = 0;
  for (const auto& [name, m] : ck.shapes) weights += static_cast<double>(m.rows * m.cols);
  const double q = static_cast<double>(c.n_heads) * c.head_dim, kv = static_cast<double>(c.n_kv_heads) * c.head_dim;
  const double t = static_cast<double>(tokens);
  const double cache = 2.0 * c.n_layers * t * kv * w;
  const double activations = 4.0 * t * (3.0 * c.dim + 2.0 * q + 2.0 * kv + 2.0 * c.hidden) + 2.0 * t * std::max<double>(c.hidden, c.dim);
  const double logits = 4.0 * t * c.vocab;  // at most every position's
  const double needed = w * weights + cache + activations + logits;
  const double free = static_cast<double>(gpu::free_bytes());
  if (needed > free)
    throw InputError(fmt::format("model '{}' does not fit the GPU's memory for device {}: about {:.2f} GB needed (weights {:.2f} GB, "
                                 "KV cache {:.2f} GB, activations and logits {:.2f} GB for {} positions per forward), {:.2f} GB "
                                 "free; fewer chunks per forward (--batch) or a smaller ctx lower the last two",
                                 ck.path, device, needed / 1e9, w * weights / 1e9, cache / 1e9, (activations + logits) / 1e9, tokens, free / 1e9));
}

std::unique_ptr<ForwardOps> forward_ops_on(const std::string& device) {
  // nullptr: LlamaModel's CPU default. cuda-fp32 is the agreement mode: fp32 weights and fp32 attention.
  return device_is_cuda(device) ? make_cuda_forward_ops(device == "cuda-fp32") : nullptr;
}

std::unique_ptr<LlamaModel> make_model(const Checkpoint& ck, const std::string& device) {
  auto ops = forward_ops_on(device);  // first, so that a missing GPU is the error
  return std::make_unique<LlamaModel>(ck, [&](const std::string&, const Matrix& w) { return dense_linear_on(device, w); },
                                      std::move(ops));
}

std::unique_ptr<LlamaModel> quantize_model(const Checkpoint& ck, const Quantizer& quantizer, std::uint64_t seed,
                                           const ModelQuantization& how, QuantizedModelStats* stats, QuantizedLayers* layers) {
  const std::string& kernel = how.kernel;
  const std::string& device = how.device;
  auto ops = forward_ops_on(device);
  const LayerSelection selection(how.include, how.exclude);
  QuantizedModelStats local;
  QuantizedModelStats& s = stats ? *stats : local;
  s = {};
  QuantizedLayers own;
  QuantizedLayers& cache = layers ? *layers : own;
  std::string json = "{";
  auto model = std::make_unique<LlamaModel>(ck, [&](const std::string& name, const Matrix& w) -> std::unique_ptr<Linear> {
    if (!selection.selected(name)) return dense_linear_on(device, w);
    auto it = cache.by_name.find(name);
    Matrix w_hat;  // the dequantized weights, when this call quantizes the layer
    if (it == cache.by_name.end()) {
      const InputStatistics* inputs = nullptr;
      if (how.calibration)
        if (auto c = how.calibration->find(name); c != how.calibration->end()) inputs = &c->second;
      QuantizedLayers::Layer l;
      const auto done = how.prequantized ? how.prequantized->find(name) : std::map<std::string, QuantizedLayer>::iterator{};
      if (how.prequantized && done != how.prequantized->end())
        l.q = std::move(done->second);
      else
        l.q = quantize_layer(quantizer, name, w, seed, how.group_fallback, inputs);
      // Weight error from the layer's own dequantized copy.
      w_hat.resize(w.rows(), w.cols());
      l.q.quantizer->dequantize(l.q.matrix, w_hat.data());
      const WeightError e = checked_weight_error(w, w_hat, l.q.quantizer->name() + ": layer " + name);
      l.nmse = e.nmse();
      l.mse = e.mse();
      if (how.held_out)
        if (auto h = how.held_out->find(name); h != how.held_out->end()) l.output_error = relative_output_error(w, w_hat, h->second.hessian);
      it = cache.by_name.emplace(name, std::move(l)).first;
    }
    const QuantizedLayers::Layer& l = it->second;
    const auto& q = l.q.quantizer;
    const QuantizedMatrix& qm = l.q.matrix;
    // On a GPU the dequantized copy just made is what goes up as bf16 (dequantizing an 8B model's layers again
    // would cost as much as quantizing them); otherwise the kernel's own path.
    const bool reuse = w_hat.size() > 0 && device_is_cuda(device) && (kernel == "dequantized_dense" || kernel == "auto");
    auto layer = reuse ? dense_linear_on(device, w_hat) : quantized_linear_on(device, kernel, *q, qm);
    s.quantized_bytes += static_cast<double>(qm.storage_bytes());
    s.quantized_weights += static_cast<double>(w.size());
    s.nmse_sum += l.nmse;
    if (l.output_error >= 0) {
      s.output_error_sum += l.output_error;
      ++s.output_error_layers;
    }
    ++s.layers;
    const std::string kernel_name = layer->kernel();
    if (std::find(s.kernels.begin(), s.kernels.end(), kernel_name) == s.kernels.end()) s.kernels.push_back(kernel_name);
    json += fmt::format("{}\"{}\": {{\"quantizer\": \"{}\", \"kernel\": \"{}\", \"mse\": {:.6g}, \"nmse\": {:.6g}, "
                        "\"bits_per_weight\": {:.6g}{}}}",
                        s.layers > 1 ? ", " : "", name, q->name(), kernel_name, l.mse, l.nmse, qm.bits_per_weight(),
                        l.output_error >= 0 ? fmt::format(", \"output_error\": {:.6g}", l.output_error) : "");
    return layer;
  }, std::move(ops));
  s.layer_json = json + "}";
  // Everything not quantized (embeddings, norms, unselected layers) at 16 bits, as bf16 checkpoints
  // store them; a tied embedding counts once.
  std::size_t total = 0;
  for (const auto& [name, m] : ck.shapes) total += m.rows * m.cols;
  s.other_weights = static_cast<double>(total) - s.quantized_weights;
  return model;
}

struct ModelSession::Loaded {
  std::string key;
  Checkpoint ck;
  std::vector<int> tokens;
  PerplexityConfig cfg;
  BaselineLogProbs base;
  PerplexityResult base_result;
  double load_s = 0;
  std::string held_out_key;  // the calibration text held_out's statistics are of
  LayerStatisticsMap held_out;
};

// The quantized layers of one (model, quantizer, seed, selection).
struct ModelSession::Weights {
  std::string key;
  QuantizedLayers layers;
  std::string calibration;  // Calibration::label of a calibrated quantizer's layers
  std::size_t bytes() const {
    std::size_t b = 0;
    for (const auto& [name, l] : layers.by_name) b += l.q.matrix.storage_bytes();
    return b;
  }
};

namespace {
// What the kept quantizations may hold: an eighth of the memory available when the session starts, at most
// 4 GiB (a 135M-parameter model at 4 bits is about 70 MB; an 8B one about 4 GB, kept alone).
std::size_t quantized_cache_budget() {
  const std::size_t available = available_memory_bytes();
  return std::min<std::size_t>(available ? available / 8 : std::size_t{1} << 30, std::size_t{4} << 30);
}
}  // namespace

ModelSession::ModelSession() = default;
ModelSession::~ModelSession() = default;

constexpr int kDecodeRepetitions = 9;

ModelMeasurements ModelSession::measure(const ModelPointSpec& dp, const Quantizer& quantizer, std::uint64_t seed,
                                        const std::string& what, const Progress& progress) {
  // The baseline depends on the model, the corpus and how it is scored; not on kernels or the KV cache.
  // On a GPU the baseline is the GPU's bf16 (or fp32) model: quantized points are compared with what the same
  // device computes unquantized.
  const std::string key = fmt::format("{} | {} | {} | {} | {} | {}", dp.model, dp.corpus, dp.method, dp.ctx, dp.chunks, dp.device);
  bool loaded_now = false;
  if (!loaded_ || loaded_->key != key) {
    loaded_.reset();
    auto l = std::make_unique<Loaded>();
    l->key = key;
    progress("loading " + dp.model);
    const auto t_load = std::chrono::steady_clock::now();
    l->ck = load_checkpoint(dp.model, CheckpointLoad::streamed);  // each model built reads the projections from the file
    if (!l->ck.tokenizer)
      throw InputError(fmt::format("model '{}' has no tokenizer tqbench can read (GGUF files carry one)", dp.model));
    l->tokens = l->ck.tokenizer->encode(read_corpus(dp.corpus));
    l->cfg.method = dp.method;
    l->cfg.ctx = dp.ctx;
    l->cfg.chunks = dp.chunks;
    l->cfg.add_bos = l->ck.tokenizer->add_bos();
    l->cfg.bos = l->ck.tokenizer->bos();
    if (l->cfg.ctx > l->ck.config.context)
      throw InputError(fmt::format("ctx {} exceeds the model's context length {}", l->cfg.ctx, l->ck.config.context));
    l->load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_load).count();
    check_fits_gpu(l->ck, dp.device, perplexity_batch(l->cfg, dp.device != "cpu", l->tokens.size()) * static_cast<std::size_t>(dp.ctx));
    const auto baseline = make_model(l->ck, dp.device);
    l->base_result = evaluate_perplexity(*baseline, l->tokens, l->cfg, &l->base, nullptr,
                                         [&](std::size_t c, std::size_t n, double ppl) {
                                           progress(fmt::format("baseline chunk {}/{}, ppl {:.4f}", c, n, ppl));
                                         });
    loaded_ = std::move(l);
    loaded_now = true;
  }
  Loaded& l = *loaded_;
  gpu::reset_peak_bytes();
  // A point quantizes once per (model, quantizer, seed, selection): kernels, caches and contexts reuse the layers.
  // Every layer's quantizer before any is quantized: a group that does not divide a width fails here, naming the layer.
  const QuantizationPlan plan = plan_quantization(l.ck, quantizer, LayerSelection(dp.include, dp.exclude), dp.group_fallback);
  // A calibrated quantizer's text: by default the end of the evaluated corpus, clear of the chunks it scores.
  // Its forward runs on the point's device.
  CalibrationSpec calibration =
      beside_evaluation(dp.calibration, dp.corpus, static_cast<std::size_t>(dp.chunks) * static_cast<std::size_t>(dp.ctx));
  calibration.device = dp.device;
  const std::string calibration_key = fmt::format("{} | {} | {} | {} | {} | {}", calibration.corpus, calibration.chunks, calibration.ctx,
                                                  calibration.sequential, calibration.held_out, calibration.device);
  if (dp.layer_output_error && l.held_out_key != calibration_key) {
    progress("held-out calibration statistics");
    l.held_out = held_out_statistics(l.ck, dp.include, dp.exclude, calibration);
    l.held_out_key = calibration_key;
  }
  const std::string weights_key = fmt::format("{} | {} | {} | {} | {} | {} | {} | {}", dp.model, quantizer.name(), seed, dp.include,
                                              dp.exclude, static_cast<int>(dp.group_fallback),
                                              quantizer.needs_calibration() ? calibration_key : "", dp.layer_output_error);
  auto found = std::find_if(weights_.begin(), weights_.end(), [&](const auto& w) { return w->key == weights_key; });
  if (found != weights_.end()) {
    weights_.splice(weights_.begin(), weights_, found);  // most recent first
  } else {
    static const std::size_t budget = quantized_cache_budget();
    // Room for the new one, about the size of the last: keep the most recent that fit beside it.
    std::size_t kept = weights_.empty() ? 0 : weights_.front()->bytes();
    for (auto it = weights_.begin(); it != weights_.end();) {
      kept += (*it)->bytes();
      it = kept > budget ? weights_.erase(it) : std::next(it);
    }
    weights_.push_front(std::make_unique<Weights>());
    weights_.front()->key = weights_key;
  }
  Weights& weights = *weights_.front();
  const bool fresh = weights.layers.by_name.empty();
  ModelMeasurements out;
  out.layer_quantizers = plan.summary_json();
  out.load_s = loaded_now ? l.load_s : 0.0;
  Calibration calibrated;
  if (fresh && quantizer.needs_calibration()) {
    progress("calibrating on " + calibration.corpus);
    calibrated = calibrate_model(l.ck, quantizer, seed, dp.include, dp.exclude, dp.group_fallback, calibration);
    weights.calibration = calibrated.label;
    out.calibrate_s = calibrated.seconds;
  }
  out.calibration = weights.calibration;
  const auto t_quantize = std::chrono::steady_clock::now();
  auto model = quantize_model(l.ck, quantizer, seed,
                              {.include = dp.include, .exclude = dp.exclude, .group_fallback = dp.group_fallback, .kernel = dp.kernel,
                               .device = dp.device, .calibration = calibrated.layers.empty() ? nullptr : &calibrated.layers,
                               .held_out = dp.layer_output_error ? &l.held_out : nullptr, .prequantized = &calibrated.quantized},
                              &out.layers, &weights.layers);
  out.quantize_s = fresh ? std::chrono::duration<double>(std::chrono::steady_clock::now() - t_quantize).count() : 0.0;
  if (out.layers.layers == 0) throw InputError(fmt::format("include pattern '{}' matches no linear layer", dp.include));
  // The KV cache, quantized as it is written; its rotations come from the point's seed, so repeats draw new ones.
  const KvQuantSpec& kv = dp.kv;
  std::shared_ptr<KvQuantizer> kvq;
  if (kv.active()) {
    // KIVI's channel axis quantizes whole blocks of tokens; the unfinished one stays fp32. A block no shorter than
    // the context quantizes no key at all while the row would report the quantizer's bits (issue 28).
    if (kv.key_axis == "channel" && kv.key != "none" && kv.block >= dp.ctx)
      throw InputError(fmt::format("data {}: kv_block {} with kv_key_axis channel and ctx {}: no block of keys is ever complete, so "
                                   "no key would be quantized; give kv_block below ctx", what, kv.block, dp.ctx));
    try {
      kvq = std::make_shared<KvQuantizer>(kv, l.ck.config, derive_seed(seed, "kv cache") >> 1);
    } catch (const InputError& e) {
      throw InputError(fmt::format("data {}: {}", what, e.what()));
    }
    model->set_kv_quantizer(kvq);
    model->set_kv_probe(&out.attention_error);
  }
  out.baseline = l.base_result;
  out.result = evaluate_perplexity(*model, l.tokens, l.cfg, nullptr, &l.base,
                                   [&](std::size_t c, std::size_t n, double ppl) {
                                     progress(fmt::format("chunk {}/{}, ppl {:.4f}", c, n, ppl));
                                   });
  // Forward speed of this model as built: one prefill of ctx tokens, then greedy decoding (LlamaModel::generate_greedy:
  // on a GPU its CUDA graph) of the steps at positions ctx − kDecodeRepetitions … ctx − 1 after a prefill of the ones
  // before, one untimed step first (a GPU's eager warm-up; on the CPU the first of its timed steps is dropped).
  const std::size_t ctx = static_cast<std::size_t>(l.cfg.ctx);
  out.ctx = ctx;
  const std::vector<int> window(l.tokens.begin(), l.tokens.begin() + ctx);
  progress("timing prefill and decode");
  {
    KvCache cache = model->new_cache(ctx);
    const auto p0 = std::chrono::steady_clock::now();
    model->forward(window, cache, 1);
    out.prefill_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - p0).count();
  }
  const std::size_t reps = kDecodeRepetitions, prompt = ctx > reps + 2 ? ctx - reps - 1 : 1;
  KvCache cache = model->new_cache(ctx);
  std::vector<double> steps = model->generate_greedy({window.begin(), window.begin() + static_cast<std::ptrdiff_t>(prompt)},
                                                     std::min(reps + 2, ctx - prompt + 1), cache).step_s;
  if (steps.size() > reps) steps.erase(steps.begin(), steps.end() - static_cast<std::ptrdiff_t>(reps));
  out.decode_s = steps;
  std::sort(out.decode_s.begin(), out.decode_s.end());
  out.gpu_peak_bytes = static_cast<double>(gpu::peak_bytes());
  out.weight_bytes_in_memory = static_cast<double>(model->linear_weight_bytes() + model->other_weight_bytes());
  const double hd_total = static_cast<double>(l.ck.config.head_dim) * l.ck.config.n_kv_heads * l.ck.config.n_layers;
  out.kv_key_bits = kvq ? kvq->key_bits() : 32.0;
  out.kv_value_bits = kvq ? kvq->value_bits() : 32.0;
  out.kv_bytes_per_token = kvq ? kvq->bytes_per_token() : 8.0 * hd_total;
  if (kvq)
    out.kv_cache_json = fmt::format("{{\"key\": \"{}\", \"value\": \"{}\", \"key_axis\": \"{}\", \"scores\": \"{}\", "
                                    "\"key_bits\": {:.6g}, \"value_bits\": {:.6g}, \"outlier_channels\": {}, "
                                    "\"written_by\": \"{}\", \"device_bytes_per_token\": {:.6g}}}",
                                    kvq->spec().key, kvq->spec().value, kv.key_axis, kv.scores, kvq->key_bits(), kvq->value_bits(),
                                    kvq->outlier_json(),
                                    // who encoded the cache the decode steps read: the GPU's own codec, or the host's quantizer
                                    cache.coded_on_device ? "device codec (models/kv_codec.hpp)" : "host KvQuantizer",
                                    cache.device_bytes_per_token);
  return out;
}

}  // namespace tqb
