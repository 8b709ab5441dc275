#include "harness/metrics.hpp"

#include "common/named_table.hpp"
#include "eval/chunk_losses.hpp"
#include "eval/model_eval.hpp"
#include "eval/paired.hpp"

#include <cmath>
#include <stdexcept>

#include <fmt/format.h>

#include "common/error.hpp"
#include "quantizers/codebook.hpp"

namespace tqb {

std::string to_string(Direction d) {
  switch (d) {
    case Direction::lower: return "lower";
    case Direction::higher: return "higher";
    case Direction::zero: return "zero";
    case Direction::one: return "one";
  }
  return "?";
}

const InnerProductErrors& EvalContext::inner_product_errors() {
  if (!ip_) {
    const Eigen::MatrixXd y = make_queries_().cast<double>();
    // In double: rows x n_queries exact and estimated inner products and their errors, one row at a time
    // (a GEMV per row sums in a fixed order; Eigen's GEMM blocks by thread count, and a sweep's shards run
    // with other thread counts than a single process: the numbers must not depend on it).
    Eigen::MatrixXd a(w.rows(), y.rows()), e(w.rows(), y.rows());
#pragma omp parallel for schedule(static)
    for (Eigen::Index i = 0; i < w.rows(); ++i) {
      const Eigen::VectorXd wi = w.row(i).cast<double>().transpose();
      const Eigen::VectorXd di = (w_hat.row(i) - w.row(i)).cast<double>().transpose();
      a.row(i).noalias() = (y * wi).transpose();
      e.row(i).noalias() = (y * di).transpose();
    }
    const Eigen::VectorXd row_norm2 = w.cast<double>().rowwise().squaredNorm();
    InnerProductErrors s;
    const double n = static_cast<double>(e.size());
    s.pairs = static_cast<std::size_t>(e.size());
    s.mean = e.mean();
    s.rmse = std::sqrt(e.array().square().mean());
    s.variance = s.pairs > 1 ? (e.array() - s.mean).square().sum() / (n - 1) : 0.0;
    s.mean_ci95 = 1.96 * std::sqrt(s.variance / n);
    double normalized = 0;
    for (Eigen::Index i = 0; i < e.rows(); ++i)
      if (row_norm2(i) > 0) normalized += e.row(i).squaredNorm() / row_norm2(i);
    s.normalized = normalized / n;
    // â = a + e; slope = Σ a·â / Σ a², residuals r = â − slope·a.
    const double saa = a.squaredNorm();
    if (saa > 0 && s.pairs > 1) {
      const Eigen::MatrixXd est = a + e;
      s.slope = (a.array() * est.array()).sum() / saa;
      const double resid = (est - s.slope * a).squaredNorm() / (n - 1);
      s.slope_ci95 = 1.96 * std::sqrt(resid / saa);
    } else {
      s.slope = NAN;
      s.slope_ci95 = NAN;
    }
    ip_ = s;
  }
  return *ip_;
}

const KernelTiming& EvalContext::kernel_timing() {
  if (!timing_) timing_ = time_kernel_();
  return *timing_;
}

// Mean over rows of ||w_i - ŵ_i||² / ||w_i||² (rows of zero norm count their absolute error).
static double relative_row_mse(EvalContext& c) {
  double sum = 0;
  for (Eigen::Index i = 0; i < c.w.rows(); ++i) {
    const double n = c.w.row(i).cast<double>().squaredNorm();
    const double e = (c.w.row(i).cast<double>() - c.w_hat.row(i).cast<double>()).squaredNorm();
    sum += n > 0 ? e / n : e;
  }
  return c.w.rows() > 0 ? sum / static_cast<double>(c.w.rows()) : 0.0;
}

// Each repeat's NLL minus the baseline's on the same chunks: log(ppl / baseline ppl) per chunk.
static LossMatrix nll_over_baseline(const std::vector<ChunkLosses>& repeats) {
  LossMatrix x = loss_matrix(repeats, &ChunkLosses::nll), base = loss_matrix(repeats, &ChunkLosses::baseline_nll);
  if (x.empty() || base.empty()) return {};
  for (std::size_t r = 0; r < x.size(); ++r)
    for (std::size_t j = 0; j < x[r].size(); ++j) x[r][j] -= base[r][j];
  return x;
}

// The half-width of the interval of exp(scale + mean) from that of the mean, (e^{m+h} − e^{m−h})/2 · e^scale:
// a perplexity's interval from its log's (asymmetric; the column holds its half-width, the table prints it).
static double exp_half_width(double scale, const MeanInterval& i) {
  return std::exp(scale) * (std::exp(i.mean + i.ci95) - std::exp(i.mean - i.ci95)) / 2;
}

// The half-width of the 95% interval of the mean of x over chunks and seeds; of exp(scale + that mean) with
// `perplexity`. NaN when x cannot give one (no such field, fewer than two chunks).
static double half_width(const LossMatrix& x, bool perplexity = false, double scale = 0) {
  if (x.empty() || x.front().size() < 2) return std::nan("");
  const MeanInterval i = crossed_mean_interval(x);
  return perplexity ? exp_half_width(scale, i) : i.ci95;
}

static double median(const std::vector<double>& sorted) { return sorted[sorted.size() / 2]; }

// Quantized layers as stored, everything else (embeddings, norms, unselected layers) at 16 bits.
static double model_bytes(const ModelMeasurements& m) { return m.layers.quantized_bytes + 2.0 * m.layers.other_weights; }

static double squared_error(const Matrix& a, const Matrix& b) {
  return (a.cast<double>() - b.cast<double>()).squaredNorm();
}

const std::vector<Metric>& metrics() {
  // To add a metric: one entry here (shared intermediates go into EvalContext).
  static const std::vector<Metric> all{
      {"weight_mse", "mean squared error of the weights, ||W - Ŵ||² / (rows·cols)", Direction::lower,
       [](EvalContext& c) { return squared_error(c.w, c.w_hat) / static_cast<double>(c.w.size()); }},
      {"weight_nmse", "normalized squared error ||W - Ŵ||² / ||W||²", Direction::lower,
       [](EvalContext& c) {
         const double n = c.w.cast<double>().squaredNorm();
         return n > 0 ? squared_error(c.w, c.w_hat) / n : 0.0;
       }},
      {"worst_row_rel_err", "largest relative row error max_i ||w_i - ŵ_i|| / ||w_i||", Direction::lower,
       [](EvalContext& c) {
         double worst = 0;
         for (Eigen::Index i = 0; i < c.w.rows(); ++i) {
           const double n = c.w.row(i).cast<double>().norm();
           const double e = (c.w.row(i).cast<double>() - c.w_hat.row(i).cast<double>()).norm();
           worst = std::max(worst, n > 0 ? e / n : (e > 0 ? INFINITY : 0.0));
         }
         return worst;
       }},
      {"ip_bias", "mean of <y,ŵ> - <y,w> over random unit queries y and rows w (bias)", Direction::zero,
       [](EvalContext& c) { return c.inner_product_errors().mean; }, false, true},
      {"ip_var", "variance of <y,ŵ> - <y,w> over random unit queries and rows", Direction::lower,
       [](EvalContext& c) { return c.inner_product_errors().variance; }, false, true},
      {"ip_rmse", "root mean square of <y,ŵ> - <y,w> over random unit queries and rows", Direction::lower,
       [](EvalContext& c) { return c.inner_product_errors().rmse; }, false, true},
      {"ip_bias_ci95", "half-width of the 95% confidence interval of ip_bias", Direction::lower,
       [](EvalContext& c) { return c.inner_product_errors().mean_ci95; }, false, true},
      {"ip_slope", "slope of <y,ŵ> against <y,w> (least squares through 0): 1 = unbiased, < 1 shrinks", Direction::one,
       [](EvalContext& c) { return c.inner_product_errors().slope; }, false, true},
      {"ip_slope_ci95", "half-width of the 95% confidence interval of ip_slope", Direction::lower,
       [](EvalContext& c) { return c.inner_product_errors().slope_ci95; }, false, true},
      {"d_mse", "D_mse: mean over rows of ||w - ŵ||² / ||w||² (TurboQuant's E||x - x̃||² for unit x)",
       Direction::lower, [](EvalContext& c) { return relative_row_mse(c); }},
      {"d_prod", "D_prod: mean of (<y,w> - <y,ŵ>)² / ||w||² over unit queries y and rows w", Direction::lower,
       [](EvalContext& c) { return c.inner_product_errors().normalized; }, false, true},
      {"d_mse_lloyd_max", "d · Lloyd-Max distortion of the beta codebook for d = cols at the quantizer's bits "
                          "(what turboquant's d_mse should reach)", Direction::lower,
       [](EvalContext& c) {
         const double b = c.quantizer.nominal_bits(static_cast<std::size_t>(c.w.cols()));
         if (b != std::floor(b) || b < 1 || b > 8 || c.w.cols() < 2) return std::nan("");
         const auto& cb = lloyd_max_codebook(CodebookDistribution::beta, static_cast<int>(c.w.cols()), static_cast<int>(b));
         return cb.distortion * static_cast<double>(c.w.cols());
       }},
      {"d_mse_upper", "TurboQuant's upper bound on D_mse, (sqrt(3)·pi/2)·4^-b, b = the quantizer's code bits",
       Direction::lower, [](EvalContext& c) { return std::sqrt(3.0) * M_PI / 2 * std::pow(4.0, -c.quantizer.nominal_bits(static_cast<std::size_t>(c.w.cols()))); }},
      {"d_mse_lower", "lower bound on D_mse of any b-bit quantizer, 4^-b", Direction::lower,
       [](EvalContext& c) { return std::pow(4.0, -c.quantizer.nominal_bits(static_cast<std::size_t>(c.w.cols()))); }},
      {"d_prod_upper", "TurboQuant's upper bound on D_prod for unit queries, (sqrt(3)·pi²/d)·4^-b, d = cols",
       Direction::lower, [](EvalContext& c) {
         return std::sqrt(3.0) * M_PI * M_PI / static_cast<double>(c.w.cols()) * std::pow(4.0, -c.quantizer.nominal_bits(static_cast<std::size_t>(c.w.cols())));
       }},
      {"d_prod_lower", "lower bound on D_prod of any b-bit quantizer for unit queries, 4^-b / d", Direction::lower,
       [](EvalContext& c) { return std::pow(4.0, -c.quantizer.nominal_bits(static_cast<std::size_t>(c.w.cols()))) / static_cast<double>(c.w.cols()); }},
      {"bits_per_weight", "stored bits per weight: codes, scales, zero points, norms and codebooks",
       Direction::lower, [](EvalContext& c) { return c.q.bits_per_weight(); }},
      {"storage_bytes", "bytes stored for the quantized matrix", Direction::lower,
       [](EvalContext& c) { return static_cast<double>(c.q.storage_bytes()); }},
      // Latency of y = Ŵx (harness/kernel_timing.hpp; the spec's `timing:` block picks kernel, batch and
      // repetitions). Listed explicitly in a spec, never part of the default set.
      {"kernel_us", "median latency of one Y = X Ŵᵀ call with the timing kernel, microseconds", Direction::lower,
       [](EvalContext& c) { return c.kernel_timing().median_us; }, true},
      {"kernel_us_min", "fastest of the timed kernel calls, microseconds", Direction::lower,
       [](EvalContext& c) { return c.kernel_timing().min_us; }, true},
      {"kernel_us_max", "slowest of the timed kernel calls, microseconds", Direction::lower,
       [](EvalContext& c) { return c.kernel_timing().max_us; }, true},
      {"dense_us", "median latency of the dense product with the original matrix (fp32; timing.device cuda: cuBLAS bf16), same batch, same run",
       Direction::lower, [](EvalContext& c) { return c.kernel_timing().dense_median_us; }, true},
      {"kernel_speedup", "dense_us / kernel_us: how many times faster than the dense product", Direction::higher,
       [](EvalContext& c) { return c.kernel_timing().dense_median_us / c.kernel_timing().median_us; }, true},
      {"kernel_weight_bytes", "bytes the timing kernel holds for the weights while it runs (timing.device cuda: the GPU layout)", Direction::lower,
       [](EvalContext& c) { return c.kernel_timing().weight_bytes; }, true},
      {"gpu_peak_bytes", "peak of tqbench's own GPU allocations over the point: matrix data with timing.device cuda (packed weights, "
       "workspaces, activations, the bf16 baseline); a model with device cuda (weights, KV cache, activations, logits; 0 on the CPU)",
       Direction::lower, [](EvalContext& c) { return c.kernel_timing().device_peak_bytes; }, true, false,
       [](const ModelMeasurements& m) { return m.gpu_peak_bytes; }},
      // Model metrics (data source `model`): from what eval/model_eval measured for the point.
      {"perplexity", "perplexity exp(mean NLL) of the scored tokens", Direction::lower, {}, false, false,
       [](const ModelMeasurements& m) { return m.result.ppl; },
       [](const std::vector<ChunkLosses>& r) { return half_width(loss_matrix(r, &ChunkLosses::nll), true); }},
      {"ppl_stderr", "standard error of the perplexity, PPL·sqrt(var(NLL)/(N-1))", Direction::lower, {}, false, false,
       [](const ModelMeasurements& m) { return m.result.ppl_stderr; }},
      {"baseline_perplexity", "perplexity of the unquantized model on the same tokens", Direction::lower, {}, false, false,
       [](const ModelMeasurements& m) { return m.baseline.ppl; },
       [](const std::vector<ChunkLosses>& r) { return half_width(loss_matrix(r, &ChunkLosses::baseline_nll), true); }},
      // Paired with the baseline over the same chunks: the interval of the difference, not of either perplexity.
      {"delta_ppl", "perplexity minus the unquantized model's on the same tokens (interval paired over the chunks)", Direction::lower,
       {}, false, false, [](const ModelMeasurements& m) { return m.result.ppl - m.baseline.ppl; },
       [](const std::vector<ChunkLosses>& r) {
         const LossMatrix base = loss_matrix(r, &ChunkLosses::baseline_nll);
         if (base.empty()) return std::nan("");
         double mean_base = 0;
         for (double v : base.front()) mean_base += v;
         mean_base /= static_cast<double>(base.front().size());
         // ppl − base = base·(e^{Δ} − 1): the interval of Δ = mean NLL difference, scaled by the baseline's perplexity.
         return half_width(nll_over_baseline(r), true, mean_base);
       }},
      {"delta_log_ppl", "log(perplexity / the unquantized model's perplexity): the mean NLL difference per token (interval paired over the chunks)",
       Direction::lower, {}, false, false,
       [](const ModelMeasurements& m) { return std::log(m.result.ppl) - std::log(m.baseline.ppl); },
       [](const std::vector<ChunkLosses>& r) { return half_width(nll_over_baseline(r)); }},
      {"kld_mean", "mean KL(P_base || P_quantized) over scored tokens", Direction::lower, {}, false, false,
       [](const ModelMeasurements& m) { return m.result.kld_mean; },
       [](const std::vector<ChunkLosses>& r) { return half_width(loss_matrix(r, &ChunkLosses::kld)); }},
      {"kld_median", "median KL-divergence over scored tokens", Direction::lower, {}, false, false,
       [](const ModelMeasurements& m) { return m.result.kld_median; }},
      {"kld_p99", "99th percentile of the KL-divergence over scored tokens", Direction::lower, {}, false, false,
       [](const ModelMeasurements& m) { return m.result.kld_p99; }},
      {"top1_agreement", "fraction of scored tokens whose most likely next token matches the unquantized model's",
       Direction::higher, {}, false, false,
       [](const ModelMeasurements& m) { return m.result.top1_agreement; },
       [](const std::vector<ChunkLosses>& r) { return half_width(loss_matrix(r, &ChunkLosses::top1)); }},
      {"model_bytes", "bytes of the model: quantized layers as stored, everything else at 16 bits", Direction::lower, {}, false, false,
       [](const ModelMeasurements& m) { return model_bytes(m); }},
      {"quantized_bits_per_weight", "bits per weight of the quantized layers (codes, scales, norms)", Direction::lower,
       {}, false, false,
       [](const ModelMeasurements& m) { return 8.0 * m.layers.quantized_bytes / m.layers.quantized_weights; }},
      {"model_bits_per_weight", "bits per weight of the whole model (unquantized tensors at 16 bits)", Direction::lower,
       {}, false, false,
       [](const ModelMeasurements& m) { return 8.0 * model_bytes(m) / (m.layers.quantized_weights + m.layers.other_weights); }},
      {"weight_nmse_mean", "mean over quantized layers of ||W - Ŵ||² / ||W||²", Direction::lower, {}, false, false,
       [](const ModelMeasurements& m) { return m.layers.nmse_sum / m.layers.layers; }},
      {"eval_tokens", "tokens scored", Direction::higher, {}, false, false,
       [](const ModelMeasurements& m) { return static_cast<double>(m.result.scored); }},
      {"eval_tokens_per_s", "forward-pass throughput over the evaluated chunks, tokens per second", Direction::higher,
       {}, false, false,
       [](const ModelMeasurements& m) { return m.result.tokens_per_second; }},
      {"quantize_s", "seconds to quantize the model's layers (0: the point reused the layers of an earlier point with the same model, quantizer, seed and layers)", Direction::lower, {}, false, false,
       [](const ModelMeasurements& m) { return m.quantize_s; }},
      {"calibrate_s", "seconds to collect a calibrated quantizer's layer statistics (the sequential order's quantization of the "
       "earlier blocks included; 0: not calibrated, or the layers were reused)", Direction::lower, {}, false, false,
       [](const ModelMeasurements& m) { return m.calibrate_s; }},
      {"layer_output_error", "mean over quantized layers of ||(W - Ŵ)Xᵀ||² / ||W Xᵀ||², X the unquantized model's inputs of the layer "
       "on calibration_held_out chunks before the calibration chunks (what GPTQ minimizes, on unseen text)", Direction::lower, {}, false,
       false, [](const ModelMeasurements& m) {
         // Every quantized layer's: a mean over some layers would not compare with another row's.
         if (m.layers.output_error_layers != m.layers.layers)
           throw std::logic_error(fmt::format("layer_output_error: measured on {} of {} quantized layers", m.layers.output_error_layers,
                                              m.layers.layers));
         return m.layers.output_error_sum / m.layers.layers;
       }},
      {"load_s", "seconds to read the checkpoint and the corpus (0: the point reused an earlier point's)", Direction::lower, {},
       false, false, [](const ModelMeasurements& m) { return m.load_s; }},
      {"prefill_tokens_per_s", "tokens per second of one prefill of ctx tokens with the layers' kernels (the last position's logits)",
       Direction::higher, {}, false, false,
       [](const ModelMeasurements& m) { return static_cast<double>(m.ctx) / m.prefill_s; }},
      {"decode_tokens_per_s", "tokens per second of greedy decoding at positions ctx - 9 ... ctx - 1 (median of the 9 steps; a GPU's are CUDA graph replays)", Direction::higher,
       {}, false, false,
       [](const ModelMeasurements& m) { return 1.0 / median(m.decode_s); }},
      {"decode_ms", "latency of one greedy decode step with a cache of about ctx tokens (median of 9 at positions ctx - 9 ... ctx - 1), milliseconds", Direction::lower, {}, false, false,
       [](const ModelMeasurements& m) { return 1e3 * median(m.decode_s); }},
      {"decode_ms_min", "fastest of the 9 timed decode steps, milliseconds", Direction::lower, {}, false, false,
       [](const ModelMeasurements& m) { return 1e3 * m.decode_s.front(); }},
      {"decode_ms_max", "slowest of the 9 timed decode steps, milliseconds", Direction::lower, {}, false, false,
       [](const ModelMeasurements& m) { return 1e3 * m.decode_s.back(); }},
      {"weight_bytes_in_memory", "bytes the running model holds for its weights (kernels' own formats)",
       Direction::lower, {}, false, false,
       [](const ModelMeasurements& m) { return m.weight_bytes_in_memory; }},
      // KV-cache quantization (the model source's kv_* parameters; models/kv_quant.hpp).
      {"kv_key_bits", "bits per coordinate of the stored keys: codes, norms, scales, outlier channels (32: fp32)",
       Direction::lower, {}, false, false,
       [](const ModelMeasurements& m) { return m.kv_key_bits; }},
      {"kv_value_bits", "bits per coordinate of the stored values (32: fp32)", Direction::lower, {}, false, false,
       [](const ModelMeasurements& m) { return m.kv_value_bits; }},
      {"kv_bits", "mean of kv_key_bits and kv_value_bits: the cache's bits per coordinate", Direction::lower, {}, false, false,
       [](const ModelMeasurements& m) { return 0.5 * (m.kv_key_bits + m.kv_value_bits); }},
      {"kv_bytes_per_token", "KV-cache bytes per token over all layers (unquantized layers at fp32)", Direction::lower, {}, false, false,
       [](const ModelMeasurements& m) { return m.kv_bytes_per_token; }},
      {"kv_ip_bias", "mean of <q,k~> - <q,k> in attention logits (scaled by 1/sqrt(head_dim)), first chunk, every head and causal pair",
       Direction::zero, {}, false, false,
       [](const ModelMeasurements& m) { return m.attention_error.ip_bias(); }},
      {"kv_ip_rmse", "root mean square of <q,k~> - <q,k> in attention logits, first chunk", Direction::lower, {}, false, false,
       [](const ModelMeasurements& m) { return m.attention_error.ip_rmse(); }},
      {"kv_dprod", "D_prod on real attention inputs: mean of (<q,k~> - <q,k>)² / (||q||² ||k||²), first chunk",
       Direction::lower, {}, false, false,
       [](const ModelMeasurements& m) { return m.attention_error.dprod(); }},
      {"kv_attn_tv", "total-variation distance between quantized and exact softmax attention weights, mean over rows",
       Direction::lower, {}, false, false,
       [](const ModelMeasurements& m) { return m.attention_error.weight_tv(); }},
      {"kv_attn_out_rel", "relative L2 error of each head's attention output (quantized keys and values), mean over rows",
       Direction::lower, {}, false, false,
       [](const ModelMeasurements& m) { return m.attention_error.out_rel(); }},
  };
  return all;
}

const Metric* find_metric(const std::string& name) { return find_named(metrics(), name); }

std::vector<std::string> metric_names() { return names_of(metrics()); }


}  // namespace tqb
