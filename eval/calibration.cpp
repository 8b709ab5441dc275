#include "eval/calibration.hpp"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <regex>
#include <stdexcept>

#include "common/error.hpp"
#include "eval/model_eval.hpp"
#include "models/llama.hpp"

namespace tqb {
namespace {

// The input several selected layers read (a block's q, k and v read the attention norm's output; gate and up the FFN
// norm's): one accumulator for all of them, since Σ xᵀx and Σ|x| are the same sums, so a block's statistics cost one
// accumulation per input instead of one per layer (4 instead of 7 in a Llama block: q/k/v, o, gate/up, down). A member's forward records
// the batch when it is a new one (another pointer or count, or every member has read this one already) and skips it
// otherwise; finish() checks that every member read exactly the batches recorded, so a model whose layers did not in
// fact share the input would be an error, never mixed statistics.
class SharedInput {
 public:
  SharedInput(ForwardOps& ops, std::size_t d) : ops_(ops), d_(d) {}
  void join() { ++members_; }
  // Starts a stage's recording; the group's other members calling it too in the same stage changes nothing.
  void record() {
    if (acc_) return;
    acc_ = ops_.input_statistics(d_);
    recorded_ = 0;
    last_x_ = nullptr;
    readers_ = 0;
    result_.reset();
  }
  void observe(const float* x, std::size_t n, std::size_t& member_reads) {
    ++member_reads;
    if (!acc_) return;
    if (x == last_x_ && n == last_n_ && readers_ < members_) {
      ++readers_;
      return;
    }
    acc_->add(x, n);
    ++recorded_;
    last_x_ = x;
    last_n_ = n;
    readers_ = 1;
  }
  // The statistics since record(), the same object for every member; recording stops.
  const LayerStatistics& finish(const std::string& member, std::size_t member_reads) {
    if (member_reads != recorded_)
      throw std::logic_error(fmt::format("calibration: {} read {} input batches where the layers sharing its input recorded {}", member,
                                         member_reads, recorded_));
    if (acc_) {  // the group's first member to finish closes the sums
      result_ = std::make_shared<LayerStatistics>(acc_->finish());
      acc_.reset();
    }
    return *result_;
  }

 private:
  ForwardOps& ops_;
  std::size_t d_, members_ = 0, recorded_ = 0, last_n_ = 0, readers_ = 0;
  const float* last_x_ = nullptr;
  std::unique_ptr<InputStatisticsAccumulator> acc_;
  std::shared_ptr<LayerStatistics> result_;
};

// The input a block projection reads, by its GGUF name: q/k/v one, gate/up one, every other layer its own.
std::string input_of(const std::string& name) {
  static const std::regex shared(R"(^(blk\.\d+\.)(attn_q|attn_k|attn_v|ffn_gate|ffn_up)\.weight$)");
  std::smatch m;
  if (!std::regex_match(name, m, shared)) return name;
  return m[1].str() + (m[2].str().rfind("attn", 0) == 0 ? "attn_in" : "ffn_in");
}

// A selected layer of the calibration's model: a projection on the calibration's device, recording its inputs'
// statistics there as it computes (ForwardOps::input_statistics, through the SharedInput of the layers reading the
// same input), or replaced by its quantized weights; the calibration switches it between stages. Its inputs are the
// fp32 activations (a bf16 GPU forward rounds them to bf16 inside the projection), so a backend's statistics differ
// from the CPU's only by its forward's rounding.
class CalibrationLinear final : public Linear {
 public:
  // device: the evaluation's name ("cpu", "cuda", "cuda-fp32"), not the backend's (ForwardOps::device() says "cuda"
  // for both GPU modes, and a bf16 projection in a cuda-fp32 calibration would round its statistics to bf16's).
  CalibrationLinear(std::string name, const Matrix& w, std::string device, std::shared_ptr<SharedInput> input)
      : name_(std::move(name)), w_(w), device_(std::move(device)), inner_(dense_linear_on(device_, w)), input_(std::move(input)) {
    input_->join();
  }
  std::size_t in() const override { return inner_->in(); }
  std::size_t out() const override { return inner_->out(); }
  void forward(const float* x, std::size_t n, float* y) const override {
    if (recording_) input_->observe(x, n, reads_);
    inner_->forward(x, n, y);
  }
  std::size_t weight_bytes() const override { return inner_->weight_bytes(); }
  std::string kernel() const override { return inner_->kernel(); }

  const Matrix& weights() const { return w_; }
  void record() {
    input_->record();
    recording_ = true;
    reads_ = 0;
  }
  // The statistics recorded since record(); recording stops.
  LayerStatistics finish() {
    recording_ = false;
    return input_->finish(name_, reads_);
  }
  void replace(const Matrix& w_hat) { inner_ = dense_linear_on(device_, w_hat); }

 private:
  std::string name_;
  Matrix w_;
  std::string device_;
  std::unique_ptr<Linear> inner_;
  std::shared_ptr<SharedInput> input_;
  bool recording_ = false;
  mutable std::size_t reads_ = 0;
};

// The block a tensor belongs to ("blk.N." names), or -1 (the output head and anything outside the blocks).
int block_of(const std::string& name) {
  int b = -1;
  return std::sscanf(name.c_str(), "blk.%d.", &b) == 1 ? b : -1;
}

}  // namespace

LayerStatisticsMap collect_layer_statistics(const Checkpoint& ck, const std::vector<int>& tokens, std::size_t ctx,
                                            const LayerSelection& selection, const QuantizedWeightsFn& quantized, const std::string& device,
                                            const std::function<std::uint64_t(const std::string&)>& shared_input_seed) {
  if (ctx == 0 || tokens.empty() || tokens.size() % ctx != 0)
    throw InputError(fmt::format("calibration: {} tokens do not make whole chunks of {}", tokens.size(), ctx));
  std::unique_ptr<ForwardOps> backend = forward_ops_on(device);
  if (!backend) backend = make_cpu_forward_ops();
  ForwardOps& ops = *backend;  // the model owns it from here on
  std::map<std::string, CalibrationLinear*> layers;
  std::map<std::string, std::shared_ptr<SharedInput>> inputs;
  const LlamaModel model(
      ck,
      [&](const std::string& name, const Matrix& w) -> std::unique_ptr<Linear> {
        if (!selection.selected(name)) return dense_linear_on(device, w);
        auto& input = inputs[input_of(name)];
        if (!input) input = std::make_shared<SharedInput>(ops, w.cols());
        auto l = std::make_unique<CalibrationLinear>(name, w, device, input);
        layers[name] = l.get();
        return l;
      },
      std::move(backend));
  if (layers.empty()) throw InputError("calibration: the layer selection (include/exclude) selects no linear layer");
  LayerStatisticsMap stats;
  const auto in_block = [&](int b) {
    std::vector<std::string> names;
    for (const auto& [name, l] : layers)
      if (block_of(name) == b) names.push_back(name);
    return names;
  };
  const auto finish = [&](const std::vector<std::string>& names) {
    for (const auto& name : names) stats[name] = layers.at(name)->finish();
    if (!shared_input_seed) return;
    std::map<std::string, std::vector<SharedInputLayer>> by_input;  // names are in order, so each list is too
    for (const auto& name : names)
      by_input[input_of(name)].push_back({name, std::make_shared<const Matrix>(layers.at(name)->weights()), shared_input_seed(name)});
    for (const auto& name : names)
      if (const auto& members = by_input.at(input_of(name)); members.size() > 1) stats[name].shared_input = members;
  };
  // The chunks' residual streams, carried through the blocks together (one GEMM per projection for all of them).
  const std::size_t chunks = tokens.size() / ctx;
  const Acts x = model.embed_tokens(tokens);
  for (int b = 0; b < ck.config.n_layers; ++b) {
    const std::vector<std::string> names = in_block(b);
    for (const auto& name : names) layers.at(name)->record();
    if (!quantized || names.empty()) {
      model.run_blocks(x, chunks, b, b + 1);  // the statistics, and the input of the next block
      finish(names);
      continue;
    }
    // Sequential: the block's statistics from its unquantized layers, then its layers quantized with them, then the
    // block again to give the next block the quantized block's output (the reference implementation's loop).
    const Acts scratch = ops.alloc(x.rows, x.cols);
    ops.copy(x, scratch);
    model.run_blocks(scratch, chunks, b, b + 1);
    finish(names);
    for (const auto& name : names) layers.at(name)->replace(quantized(name, layers.at(name)->weights(), stats.at(name)));
    for (const auto& name : names) stats.at(name).shared_input.clear();  // the block is quantized: its copies of the weights go
    if (b + 1 < ck.config.n_layers) model.run_blocks(x, chunks, b, b + 1);
  }
  // Selected layers outside the blocks (an output head): one forward per chunk, every block as it now is, every
  // position's logits.
  std::vector<std::string> rest = in_block(-1);
  if (!rest.empty()) {
    for (const auto& name : rest) layers.at(name)->record();
    for (std::size_t c = 0; c < tokens.size(); c += ctx) {
      KvCache cache = model.new_cache(ctx);
      model.forward({tokens.begin() + static_cast<std::ptrdiff_t>(c), tokens.begin() + static_cast<std::ptrdiff_t>(c + ctx)}, cache, 0);
    }
    finish(rest);
  }
  return stats;
}

namespace {

// `chunks` chunks of spec.ctx tokens of the spec's text, ending `skip` chunks before its end. InputError when the text
// (minus what an evaluation of it reads) is too short.
std::vector<int> calibration_text(const Checkpoint& ck, const CalibrationSpec& spec, int skip, int chunks) {
  if (spec.corpus.empty()) throw InputError("calibration: no calibration text (calibration_corpus, --calibration-corpus)");
  if (spec.chunks < 1 || spec.ctx < 8 || spec.held_out < 0)
    throw InputError(fmt::format("calibration: {} chunks of {} tokens, {} held out (at least 1 chunk of 8 tokens; held out ≥ 0)", spec.chunks,
                                 spec.ctx, spec.held_out));
  if (!ck.tokenizer) throw InputError(fmt::format("model '{}' has no tokenizer for its calibration text", ck.path));
  const std::vector<int> text = ck.tokenizer->encode(read_corpus(spec.corpus));
  // Chunks from the end of the text: an evaluation of the same text scores its beginning.
  const std::size_t ctx = static_cast<std::size_t>(spec.ctx), want = static_cast<std::size_t>(skip + chunks) * ctx;
  const std::size_t evaluated = spec.evaluated_tokens == 0 ? text.size() : std::min(text.size(), spec.evaluated_tokens);
  const std::size_t free = spec.evaluated_tokens == CalibrationSpec::kNotEvaluated ? text.size() : text.size() - evaluated;
  if (free < want)
    throw InputError(fmt::format("calibration: {} chunks of {} tokens need {} tokens of {} that the evaluation does not read; it has {} "
                                 "(give fewer calibration chunks, fewer evaluated chunks, or another calibration corpus)",
                                 skip + chunks, ctx, want, spec.corpus, free));
  const auto end = text.end() - static_cast<std::ptrdiff_t>(static_cast<std::size_t>(skip) * ctx);
  return {end - static_cast<std::ptrdiff_t>(static_cast<std::size_t>(chunks) * ctx), end};
}

}  // namespace

CalibrationSpec beside_evaluation(CalibrationSpec spec, const std::string& corpus, std::size_t evaluated_tokens) {
  if (spec.corpus.empty()) spec.corpus = corpus;
  if (resolve_corpus_path(spec.corpus) == resolve_corpus_path(corpus)) spec.evaluated_tokens = evaluated_tokens;
  return spec;
}

Calibration calibrate_model(const Checkpoint& ck, const Quantizer& quantizer, std::uint64_t seed, const std::string& include,
                            const std::string& exclude, GroupFallback fallback, const CalibrationSpec& spec) {
  if (spec.corpus.empty()) throw InputError(fmt::format("{} needs calibration text (calibration_corpus, --calibration-corpus)", quantizer.name()));
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<int> tokens = calibration_text(ck, spec, 0, spec.chunks);
  const LayerSelection selection(include, exclude);
  Calibration out;
  QuantizedWeightsFn quantized;
  if (spec.sequential)
    quantized = [&](const std::string& name, const Matrix& w, const LayerStatistics& s) {
      QuantizedLayer l = quantize_layer(quantizer, name, w, seed, fallback, &s);
      Matrix w_hat(w.rows(), w.cols());
      l.quantizer->dequantize(l.matrix, w_hat.data());
      out.quantized.emplace(name, std::move(l));
      return w_hat;
    };
  std::function<std::uint64_t(const std::string&)> shared_input_seed;
  if (quantizer.needs_shared_inputs()) shared_input_seed = [seed](const std::string& name) { return layer_seed(seed, name); };
  out.layers = collect_layer_statistics(ck, tokens, static_cast<std::size_t>(spec.ctx), selection, quantized, spec.device, shared_input_seed);
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  out.label = fmt::format("the last {} chunks of {} tokens of {}, {}{}", spec.chunks, spec.ctx, spec.corpus,
                          spec.sequential ? "sequential" : "independent", spec.device == "cpu" ? "" : ", forward on " + spec.device);
  return out;
}

LayerStatisticsMap held_out_statistics(const Checkpoint& ck, const std::string& include, const std::string& exclude,
                                       const CalibrationSpec& spec) {
  if (spec.held_out < 1) throw InputError("layer_output_error needs held-out calibration chunks (calibration_held_out ≥ 1)");
  return collect_layer_statistics(ck, calibration_text(ck, spec, spec.chunks, spec.held_out), static_cast<std::size_t>(spec.ctx),
                                  LayerSelection(include, exclude), {}, spec.device);
}

double relative_output_error(const Matrix& w, const Matrix& w_hat, const Eigen::MatrixXd& hessian) {
  const Eigen::MatrixXd W = w.cast<double>(), E = W - w_hat.cast<double>();
  const double num = (E * hessian).cwiseProduct(E).sum(), den = (W * hessian).cwiseProduct(W).sum();
  return den > 0 ? num / den : 0.0;
}

}  // namespace tqb
