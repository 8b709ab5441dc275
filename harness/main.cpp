// tqbench: the command-line front end. Exit codes: 0 success, 1 a run failed, 2 bad usage or bad input.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <fmt/format.h>

#include <unistd.h>

#include <chrono>
#include <iostream>
#include <optional>

#include "common/atomic_file.hpp"
#include "common/error.hpp"
#include "common/memory.hpp"
#include "common/input_files.hpp"
#include "common/printable.hpp"
#include "common/suggest.hpp"
#include "common/rng.hpp"
#include "common/version.hpp"
#include "harness/cli_model.hpp"
#include "harness/data_source.hpp"
#include "models/export.hpp"
#include "harness/metrics.hpp"
#include "eval/chunk_losses.hpp"
#include "eval/llamacpp_kld.hpp"
#include "harness/merge.hpp"
#include "eval/model_eval.hpp"
#include "eval/passkey.hpp"
#include "eval/paired.hpp"
#include "eval/perplexity.hpp"
#include "harness/compare.hpp"
#include "models/quantized_safetensors.hpp"
#include "models/checkpoint.hpp"
#include "models/llama.hpp"
#include "harness/runner.hpp"
#include "harness/slurm.hpp"
#include "harness/spec.hpp"
#include "harness/store.hpp"
#include "harness/sweep.hpp"
#include "harness/plot_command.hpp"
#include "harness/row_query.hpp"
#include "harness/table.hpp"
#include "kernels/registry.hpp"
#include "kernels/cpu/dense_blas.hpp"
#include "kernels/cpu/simd_level.hpp"
#include "kernels/cuda/gpu.hpp"
#include "quantizers/registry.hpp"

namespace {

using namespace tqb;

void print_schema(const ParamSchema& schema) {
  for (const auto& s : schema.specs())
    std::cout << fmt::format("    {:<8} default {:<6} {}; {}\n", s.name, s.format(s.default_value), s.description,
                             s.valid_text());
}

int list(const std::string& what) {
  if (what == "quantizers") {
    for (const auto& f : quantizer_families()) {
      std::cout << fmt::format("{}: {}\n", f.name, f.description);
      print_schema(f.schema);
      std::cout << fmt::format("    name:    {}\n", make_quantizer(f.name, {})->name());
    }
  } else if (what == "metrics") {
    std::size_t w = 0;
    for (const auto& m : metrics()) w = std::max(w, m.name.size());
    for (const auto& m : metrics())
      std::cout << fmt::format("{:<{}}  {:<6}  {}\n", m.name, w, to_string(m.direction), m.description);
  } else if (what == "kernels") {
    std::cout << "auto: the first kernel below that reads the format (they are listed fastest first)\n";
    for (const auto& k : linear_kernels())
      std::cout << fmt::format("{}: {}{}\n", k.name, k.needs_gpu ? "[needs a CUDA GPU] " : k.approximate ? "[approximate: auto never takes it] " : "", k.description);
    const std::string gpu = gpu::unavailable_reason();
    std::cout << (gpu.empty() ? fmt::format("GPU: {}\n", gpu::device_description()) : fmt::format("GPU: none ({})\n", gpu));
    std::cout << fmt::format("SIMD level in use: {} (detected: {}; TQB_SIMD=scalar|avx2|avx512 forces one)\n",
                             to_string(simd_level()), to_string(detected_simd_level()));
    std::cout << fmt::format("dense fp32 path: {}\n", dense_blas_description());
  } else {
    for (const auto& s : data_sources()) {
      std::cout << fmt::format("{}: {}\n", s.name, s.description);
      print_schema(s.schema);
    }
  }
  return 0;
}

struct ShowOptions {
  bool csv = false, markdown = false, all = false;
  std::vector<std::string> columns, where;
  std::string sort;
  int digits = 6;
};

int show(const std::string& file, const ShowOptions& o) {
  const bool csv = o.csv, markdown = o.markdown, all = o.all;
  const std::vector<std::string>& columns = o.columns;
  const ResultTable whole = read_result_file(file);
  // Rows chosen and ordered on the stored values (full names, numbers), before anything is formatted.
  ResultTable raw = tqb::where_rows(whole, o.where);
  if (!o.sort.empty()) raw = tqb::sort_rows(raw, o.sort);
  // A repeated sweep shows its summary rows with intervals; --all and --csv show every repeat's row.
  const ResultTable t = csv || all ? raw : tqb::short_name_view(tqb::summary_view(raw, o.digits), whole);
  std::vector<std::string> cols = columns;
  if (cols.empty() && (csv || all))
    for (const auto& c : t.columns) cols.push_back(c.name);
  if (cols.empty()) cols = default_show_columns(t);
  for (const auto& c : cols)
    if (t.column_index(c) < 0) {
      std::vector<std::string> names;
      for (const auto& col : t.columns) names.push_back(col.name);
      throw InputError(fmt::format("--columns: '{}' is not a column of {}; columns: {}", c, file, fmt::join(names, ", ")));
    }
  if (csv) {
    print_csv(t, cols, std::cout);
  } else if (markdown) {
    print_markdown(t, cols, std::cout, o.digits);
  } else {
    const Cell* exp = t.attribute("experiment");
    const Cell* commit = t.attribute("git_commit");
    // Points are the rows that are not summaries, as `run` counts them, whatever is displayed.
    const int status = whole.column_index("status");
    std::size_t points = 0, failed = 0, summary_rows = 0;
    for (const auto& r : whole.rows) {
      const std::string s = status >= 0 ? cell_text(r[status], true) : "ok";
      summary_rows += s == "summary";
      points += s != "summary";
      failed += s == "failed";
    }
    const bool summaries = !all && summary_rows > 0;
    const bool intervals = std::any_of(raw.columns.begin(), raw.columns.end(), [](const auto& c) { return c.role == "interval"; });
    std::cout << fmt::format("{}: experiment {}, {} points ({} failed), tqbench {}{}{}\n", file, exp ? printable(cell_text(*exp)) : "?",
                             points, failed, commit ? printable(cell_text(*commit)) : "?",
                             summaries   ? "; summaries over the repeats, mean ± 95% interval (model metrics: over chunks and seeds; "
                                           "--all: every repeat)"
                             : intervals ? "; ± 95% interval over the scored chunks"
                                         : "",
                             raw.rows.size() != whole.rows.size() ? fmt::format("; {} of {} rows match --where", raw.rows.size(), whole.rows.size()) : "");
    print_table(t, cols, std::cout, o.digits);
  }
  return 0;
}

// The KV-cache options of passkey and perplexity, as a spec's kv_* keys (models/kv_quant.hpp).
void add_kv_options(CLI::App* cmd, tqb::KvQuantSpec& kv) {
  kv.outlier_value = "key";  // the CLI names one outlier quantizer, for keys and values
  cmd->add_option("--kv-key", kv.key, "quantizer of the cached keys (none: fp32)")->capture_default_str();
  cmd->add_option("--kv-value", kv.value, "quantizer of the cached values (none: fp32; key: as --kv-key)")->capture_default_str();
  cmd->add_option("--kv-key-axis", kv.key_axis, "token, or channel (KIVI)")->check(CLI::IsMember({"token", "channel"}))->capture_default_str();
  cmd->add_option("--kv-block", kv.block, "channel axis: tokens per block")->check(CLI::Range(2, 4096))->capture_default_str();
  cmd->add_option("--kv-outliers", kv.outliers, "outlier channels per head")->check(CLI::Range(0, 4096))->capture_default_str();
  cmd->add_option("--kv-outlier-key", kv.outlier_key, "quantizer of the outlier channels (none: fp32)")->capture_default_str();
  cmd->add_option("--kv-layers", kv.layers, "regular expression over blk.N: the layers whose cache is quantized")->capture_default_str();
}

const std::string kGroupFallbackHelp =
    "a layer whose width the quantizer's group does not divide: none (an error naming it) or halve (the largest "
    "power-of-two group below that divides it)";

// Where a calibrated quantizer (gptq, awq) takes its text from (eval/calibration.hpp).
void add_calibration_options(CLI::App* cmd, tqb::CalibrationSpec& c) {
  cmd->add_option("--calibration-corpus", c.corpus,
                  "a calibrated quantizer's (gptq, awq) text: its last --calibration-chunks chunks (perplexity: default the evaluated "
                  "corpus, whose beginning it scores)");
  cmd->add_option("--calibration-chunks", c.chunks, "calibration chunks")->check(CLI::Range(1, 1 << 16))->capture_default_str();
  cmd->add_option("--calibration-ctx", c.ctx, "tokens per calibration chunk")->check(CLI::Range(8, 1 << 16))->capture_default_str();
  cmd->add_option_function<std::string>(
         "--calibration-order", [&c](const std::string& v) { c.sequential = v == "sequential"; },
         "sequential: each block's statistics after the blocks before it are quantized (GPTQ's order); independent: all from the "
         "unquantized model")
      ->check(CLI::IsMember({"sequential", "independent"}))
      ->default_str("sequential");
}

// The options of the model commands (perplexity, generate, passkey): which model they build (harness/cli_model.hpp).
void add_model_options(CLI::App* cmd, tqb::ModelChoice& m) {
  cmd->add_option("--quantizer", m.quantizer, "quantize every linear layer in the blocks with this (one-line name)");
  cmd->add_option("--quantized", m.quantized_file,
                  "the quantized layers of a `tqbench export ... -o FILE.safetensors` of this model (instead of --quantizer)");
  cmd->add_option("--seed", m.seed, "seed of the quantizer's (and the KV cache quantizer's) randomness")->capture_default_str();
  cmd->add_option("--kernel", m.kernel, fmt::format("kernel of the quantized layers: {}", fmt::join(linear_kernel_names(), ", ")))
      ->check(CLI::IsMember(linear_kernel_names()))->capture_default_str();
  cmd->add_option("--device", m.device,
                  "cpu (fp32, the reference), cuda (the whole forward on the GPU: bf16 weights, GEMM and attention inputs, "
                  "fp32 activations, softmax and sums; quantized layers dequantized to bf16, or packed with --kernel "
                  "cuda_lut_mma) or cuda-fp32 (fp32 weights, GEMMs and attention: agreement with fp32 checkpoints)")
      ->check(CLI::IsMember({"cpu", "cuda", "cuda-fp32"}))->capture_default_str();
  cmd->add_option("--group-fallback", m.group_fallback, kGroupFallbackHelp)->check(CLI::IsMember({"none", "halve"}))->capture_default_str();
  cmd->add_option("--include", m.include, "with --quantizer: tensors to quantize (a regular expression over GGUF names)")
      ->capture_default_str();
  cmd->add_option("--exclude", m.exclude, "with --quantizer: tensors to keep in full precision")->capture_default_str();
  add_kv_options(cmd, m.kv);
  add_calibration_options(cmd, m.calibration);
}

int perplexity(const std::string& model_name, const std::string& corpus, const tqb::ModelChoice& choice, const std::string& method,
               int ctx, int chunks, const std::string& kld_base, bool kld, int batch, const std::string& chunk_nll_file) {
  const auto t_load = std::chrono::steady_clock::now();
  // The projections stay in the file until the model is built, each read, converted and dropped in turn: host
  // memory holds one fp32 weight at a time, not the whole model twice (63 GB for an 8B model before).
  const Checkpoint ck = tqb::load_model_checkpoint(model_name, choice);
  if (kld && kld_base.empty()) throw InputError("--kl-divergence needs --kl-divergence-base FILE (a llama.cpp or tqbench base file)");
  if (!kld_base.empty() && method != "llamacpp") throw InputError("--kl-divergence-base: llama.cpp's base files use the llamacpp method");
  const std::string& device = choice.device;
  PerplexityConfig cfg;
  cfg.method = method;
  cfg.ctx = ctx;
  cfg.chunks = chunks;
  cfg.batch = batch;
  cfg.add_bos = ck.tokenizer->add_bos();
  cfg.bos = ck.tokenizer->bos();
  std::vector<int> tokens;
  tqb::LlamacppKldBase base_file;
  if (kld) {  // the base's tokens, chunking and log-probabilities (llama-perplexity --kl-divergence)
    base_file = tqb::read_llamacpp_kld_base(kld_base, static_cast<std::size_t>(ck.config.vocab));
    tokens = base_file.tokens;
    cfg.ctx = static_cast<int>(base_file.ctx);
    cfg.chunks = static_cast<int>(base_file.chunks);
    cfg.stream_ready = true;
  } else {
    tokens = ck.tokenizer->encode(read_corpus(corpus));
  }
  ctx = cfg.ctx;
  if (ctx > ck.config.context) throw InputError(fmt::format("--ctx {} exceeds the model's context length {}", ctx, ck.config.context));
  // Before anything goes to the GPU: does the model with this many positions per forward fit?
  tqb::check_fits_gpu(ck, device, perplexity_batch(cfg, device != "cpu", tokens.size()) * static_cast<std::size_t>(ctx));
  tqb::ModelChoice calibrated = choice;
  if (!kld)  // by default the evaluated text's end; the evaluation reads its beginning
    calibrated.calibration =
        tqb::beside_evaluation(choice.calibration, corpus, static_cast<std::size_t>(cfg.chunks) * static_cast<std::size_t>(ctx));
  const tqb::BuiltModel built = tqb::build_model(ck, model_name, calibrated);
  const std::unique_ptr<LlamaModel>& model = built.model;
  const std::string& label = built.label;
  const std::string& quantized_file = choice.quantized_file;
  const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_load).count();
  std::cerr << fmt::format("{}: {} tokens, {} method, ctx {}, model {} (loaded in {:.1f} s)\n", resolve_corpus_path(corpus), tokens.size(),
                           method, ctx, label, load_s);
  const bool tty = isatty(fileno(stderr));
  BaselineLogProbs saved;
  const bool write_base = !kld_base.empty() && !kld;
  if (write_base || !chunk_nll_file.empty()) {  // never over the model, the corpus or the quantized layers this command reads
    tqb::InputFiles inputs;
    inputs.add(ck.path, "the model " + model_name);
    inputs.add(tqb::resolve_corpus_path(corpus), "the corpus " + corpus);
    if (!quantized_file.empty()) inputs.add(quantized_file, "the quantized layers");
    if (kld) inputs.add(kld_base, "--kl-divergence-base");
    if (write_base) inputs.refuse_as_output(kld_base, "--kl-divergence-base");
    if (!chunk_nll_file.empty()) inputs.refuse_as_output(chunk_nll_file, "--chunk-nll");
  }
  // Opened before the evaluation, so that a path that cannot be written fails now, not after the run.
  std::optional<tqb::AtomicFile> chunk_nll_out, base_out;
  if (!chunk_nll_file.empty()) chunk_nll_out.emplace(chunk_nll_file);
  if (write_base) base_out.emplace(kld_base);
  const PerplexityResult r = evaluate_perplexity(*model, tokens, cfg, write_base ? &saved : nullptr, kld ? &base_file.log_probs : nullptr,
                                                 [&](std::size_t c, std::size_t n, double ppl) {
    if (tty) std::cerr << fmt::format("\r\033[K[{}/{}] ppl {:.4f}", c, n, ppl) << std::flush;
    else std::cerr << fmt::format("[{}/{}] ppl {:.4f}\n", c, n, ppl);
  });
  if (tty) std::cerr << "\r\033[K";
  std::cout << fmt::format("perplexity: {:.4f} +/- {:.4f} over {} scored tokens ({} chunks of {}, {} method); {:.1f} tokens/s "
                           "({} chunk{} per forward)\n",
                           r.ppl, r.ppl_stderr, r.scored, r.chunks, ctx, method, r.tokens_per_second, r.batch, r.batch == 1 ? "" : "s");
  if (r.chunk_nll.size() >= 2) {  // the chunk is the unit (tokens of a chunk share their context): docs/STATISTICS.md
    const tqb::MeanInterval i = tqb::crossed_mean_interval({r.chunk_nll});
    std::cout << fmt::format("95% interval over the {} chunks: [{:.4f}, {:.4f}] (the +/- above is llama.cpp's, over tokens as if "
                             "independent)\n", r.chunk_nll.size(), std::exp(i.mean - i.ci95), std::exp(i.mean + i.ci95));
  }
  if (device != "cpu")
    std::cout << fmt::format("GPU memory: peak {:.3f} GB of tqbench's own allocations\n", static_cast<double>(gpu::peak_bytes()) / 1e9);
  if (write_base) {
    tqb::write_llamacpp_kld_base(*base_out, tqb::llamacpp_token_stream(tokens, cfg), static_cast<std::uint32_t>(ctx), r.chunks, saved);
    std::cout << fmt::format("KL-divergence base written to {} (llama-perplexity's format: {} chunks of {})\n", kld_base, r.chunks, ctx);
  }
  if (r.has_kld)
    std::cout << fmt::format("KL-divergence against {}: mean {:.6f}, median {:.6f}, p99 {:.6f}; same top token {:.4f}\n", kld_base,
                             r.kld_mean, r.kld_median, r.kld_p99, r.top1_agreement);
  if (chunk_nll_out) {  // each chunk's mean NLL, for pairing two models' runs on the same chunks (docs/STATISTICS.md)
    // The chunk losses as a result file's chunk_losses column holds them (eval/chunk_losses.hpp), with what ran.
    const nlohmann::json j{{"model", model_name},
                           {"label", label},
                           {"commit", tqb::git_commit()},
                           {"chunk_losses", nlohmann::json::parse(tqb::to_json(tqb::chunk_losses_of(r, {}, corpus, method, ctx)))}};
    const std::string json = j.dump() + "\n";
    chunk_nll_out->write(json.data(), json.size());
    chunk_nll_out->commit();
  }
  return 0;
}

// Greedy continuation of a prompt, printed once decoded (up to the end-of-text token), then the speed on stderr:
// prefill tokens/s and the decode steps' median milliseconds.
int generate(const std::string& model_name, const tqb::ModelChoice& choice, const std::string& prompt, int n_tokens) {
  const Checkpoint ck = tqb::load_model_checkpoint(model_name, choice);
  std::vector<int> tokens = ck.tokenizer->encode(prompt);
  if (ck.tokenizer->add_bos() || tokens.empty()) tokens.insert(tokens.begin(), ck.tokenizer->bos());
  if (tokens.size() >= static_cast<std::size_t>(ck.config.context))
    throw InputError(fmt::format("the prompt ({} tokens) fills the context ({})", tokens.size(), ck.config.context));
  const std::size_t n_new = std::min<std::size_t>(static_cast<std::size_t>(n_tokens), ck.config.context - tokens.size());
  tqb::check_fits_gpu(ck, choice.device, tokens.size() + n_new);
  const tqb::BuiltModel built = tqb::build_model(ck, model_name, choice);
  KvCache cache = built.model->new_cache(tokens.size() + n_new - 1);
  const LlamaModel::Greedy g = built.model->generate_greedy(tokens, n_new, cache, ck.tokenizer->eos());
  std::vector<int> out = g.tokens;
  if (!out.empty() && out.back() == ck.tokenizer->eos()) out.pop_back();
  std::cout << tqb::printable(prompt, true) << tqb::printable(ck.tokenizer->decode(out), true) << "\n";
  std::vector<double> steps = g.step_s;
  std::sort(steps.begin(), steps.end());
  std::cerr << fmt::format("{}: prompt {} tokens, prefill {:.1f} ms ({:.1f} tokens/s); {} new tokens{}\n", built.label, tokens.size(),
                           1e3 * g.prefill_s, static_cast<double>(tokens.size()) / g.prefill_s, g.tokens.size(),
                           steps.empty() ? std::string()
                                         : fmt::format(", decode step median {:.3f} ms over {} timed steps{}", 1e3 * steps[steps.size() / 2],
                                                       steps.size(),
                                                       choice.device == "cpu" ? ""
                                                       : built.kv && !cache.coded_on_device
                                                           ? " (host loop: the KV quantizer writes on the host)"
                                                           : " (CUDA graph replays)"));
  if (choice.device != "cpu") {
    std::cerr << fmt::format("GPU memory: peak {:.3f} GB of tqbench's own allocations; linear layers' weights {:.3f} GB\n",
                             static_cast<double>(gpu::peak_bytes()) / 1e9, static_cast<double>(built.model->linear_weight_bytes()) / 1e9);
    std::cerr << fmt::format("KV cache on the GPU: {:.0f} bytes per token ({})\n", cache.device_bytes_per_token,
                             cache.coded_on_device ? "coded on the device: kv_codec" : built.kv ? "dense rows written by the host's quantizer" : "dense");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  tqb::reuse_freed_memory();
  CLI::App app{"tqbench: a research harness for LLM weight quantization (TurboQuant, QJL, RTN, residual stacks)",
               "tqbench"};
  app.set_version_flag("--version", fmt::format("tqbench {} (git {})", tqb::version(), tqb::git_commit()));
  app.require_subcommand(1);
  app.footer("Exit codes: 0 success, 1 a run failed, 2 bad usage or bad input.");

  std::string command_line;
  for (int i = 0; i < argc; ++i) command_line += (i ? " " : "") + std::string(argv[i]);

  auto* run = app.add_subcommand("run", "Run the sweep an experiment spec (YAML) describes and write an HDF5 result file");
  std::string spec_path, output;
  bool resume = false, force = false, dry_run = false;
  run->add_option("spec", spec_path, "experiment spec (YAML); see experiments/README.md")->required();
  run->add_option("-o,--output", output, "result file (default: results/<experiment>.h5)");
  auto* resume_flag = run->add_flag("--resume", resume,
                                    "continue the result file (the default when it exists); error if there is none");
  run->add_flag("--force", force, "overwrite the result file and rerun every point")->excludes(resume_flag);
  auto* dry_run_flag = run->add_flag("--dry-run", dry_run, "print the expanded sweep, each point's bits and the memory it needs; write nothing");
  bool calibrate = false;
  run->add_flag("--calibrate", calibrate, "with --dry-run: run the first two points (discarded) to estimate the sweep's time")
      ->needs(dry_run_flag);
  std::string shard_text;
  run->add_option("--shard", shard_text, "run only shard I of N (points whose index is I mod N) into its own file "
                                         "(default results/<experiment>.shard-I-of-N.h5); `merge` joins them");
  std::uint64_t max_points = tqb::kDefaultMaxSweepPoints;
  run->add_option("--max-points", max_points, "refuse a sweep of more points than this (checked before any point is made)")
      ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{1} << 40));

  auto* list_cmd = app.add_subcommand("list", "List registered quantizers, metrics, data sources or kernels");
  std::string what;
  list_cmd->add_option("what", what, "quantizers | metrics | data | kernels")
      ->required()
      ->check(CLI::IsMember({"quantizers", "metrics", "data", "kernels"}));

  auto* show_cmd = app.add_subcommand("show", "Print the results of an HDF5 result file as a table");
  std::string file;
  bool csv = false, markdown = false, all = false;
  show_cmd->add_option("file", file, "result file (.h5)")->required();
  auto* csv_flag = show_cmd->add_flag("--csv", csv, "CSV with every column (or --columns) instead of a table");
  show_cmd->add_flag("--markdown", markdown, "a Markdown table (default columns, or --columns) for docs")->excludes(csv_flag);
  show_cmd->add_flag("--all", all, "every column and every row (a repeated sweep shows its summary rows otherwise)");
  ShowOptions show_options;
  show_cmd->add_option("--columns", show_options.columns, "columns to print, in order")->delimiter(',');
  show_cmd->add_option("--where", show_options.where,
                       "keep rows where COLUMN OP VALUE, OP one of = != < <= > >= ~ (contains); repeatable, all must hold");
  show_cmd->add_option("--sort", show_options.sort, "order rows by a column (-COLUMN: descending)");
  show_cmd->add_option("--digits", show_options.digits, "significant digits of reals")->check(CLI::Range(1, 17))->capture_default_str();

  auto* plot_cmd = app.add_subcommand("plot", "Draw figures from result files with the plot scripts (plots/), run by the Python the "
                                              "set-up prepared; every argument after the options goes to the script (--help: the script's)");
  std::string plot_script = "plot";
  plot_cmd->add_option("--script", plot_script, "plots/NAME.py to run: plot, distortion or kv_cache")->capture_default_str();
  plot_cmd->prefix_command();
  plot_cmd->set_help_flag();  // --help belongs to the script

  auto* compare_cmd = app.add_subcommand("compare", "Paired difference of two model rows (or points' repeats) over the chunks and seeds "
                                                     "they share (log-perplexity, perplexity ratio, KLD; 95% intervals; bits per weight)");
  std::vector<std::string> compare_args;
  compare_cmd->add_option("args", compare_args,
                          "FILE A B: two rows of one file, A and B a point number (one row), a quantizer (all its repeats) or "
                          "baseline; or FILE1.h5 FILE2.h5 ...: one table across result files of the same sweep; or A.json B.json: two "
                          "`perplexity --chunk-nll` files")
      ->required()->expected(2, 64);
  std::string compare_metric;
  compare_cmd->add_option("--metric", compare_metric, "across files: the metric compared (default delta_ppl, perplexity or weight_nmse)");
  tqb::CompareOptions compare_options;
  compare_cmd->add_option("--bits-tolerance", compare_options.bits_tolerance,
                          "bits per weight A and B may differ by before the comparison is flagged as not at matched bits")
      ->check(CLI::NonNegativeNumber)->capture_default_str();

  auto* ppl_cmd = app.add_subcommand("perplexity", "Perplexity of a model on a text, optionally with quantized linear layers");
  std::string model_name = "stories260k", corpus = "wikitext-2-test", method = "llamacpp";
  int ctx = 512, chunks = 0;
  ppl_cmd->add_option("--model", model_name, "GGUF file, Hugging Face folder, stories260k or smollm2-135m")->capture_default_str();
  ppl_cmd->add_option("--corpus", corpus, "text file, or wikitext-2-test")->capture_default_str();
  ppl_cmd->add_option("--method", method, "llamacpp (second half of each chunk scored) or windowed (all)")
      ->check(CLI::IsMember({"llamacpp", "windowed"}))->capture_default_str();
  ppl_cmd->add_option("--ctx", ctx, "tokens per chunk")->check(CLI::Range(8, 1 << 16))->capture_default_str();
  ppl_cmd->add_option("--chunks", chunks, "chunks to score (0 = all)")->check(CLI::Range(0, 1 << 20))->capture_default_str();
  std::string kld_base;
  bool kld_flag = false;
  ppl_cmd->add_option("--kl-divergence-base", kld_base,
                      "llama-perplexity's KL-divergence base file: written from this run, or read with --kl-divergence");
  ppl_cmd->add_flag("--kl-divergence", kld_flag, "score against --kl-divergence-base (its tokens and chunks; llama.cpp's or tqbench's)");
  tqb::ModelChoice ppl_model;
  add_model_options(ppl_cmd, ppl_model);
  std::string chunk_nll_file;
  ppl_cmd->add_option("--chunk-nll", chunk_nll_file,
                      "write each scored chunk's mean NLL to this JSON file (`tqbench compare A.json B.json` pairs two runs over them)");
  int batch = 0;
  std::string group_fallback = "none";
  ppl_cmd->add_option("--batch", batch,
                      "chunks per forward (0: about 8192 tokens per forward on a GPU, one chunk at a time on the CPU)")
      ->check(CLI::Range(0, 1 << 16))->capture_default_str();

  auto* gen_cmd = app.add_subcommand("generate", "Greedy text generation from a model");
  std::string prompt;
  int n_tokens = 64;
  gen_cmd->add_option("--model", model_name, "GGUF file, Hugging Face folder, stories260k or smollm2-135m")->capture_default_str();
  auto* prompt_opt = gen_cmd->add_option("--prompt", prompt, "text to continue (default: nothing, start from BOS)");
  std::string prompt_file;
  gen_cmd->add_option("--prompt-file", prompt_file, "a text file to continue (a long prompt)")->excludes(prompt_opt);
  gen_cmd->add_option("--tokens", n_tokens, "tokens to generate")->check(CLI::Range(1, 1 << 16))->capture_default_str();
  tqb::ModelChoice gen_model;
  add_model_options(gen_cmd, gen_model);

  auto* merge_cmd = app.add_subcommand("merge", "Join the shard files of a sweep (run --shard I/N) into one result file");
  std::string merge_output;
  std::vector<std::string> merge_inputs;
  tqb::MergeOptions merge_options;
  merge_cmd->add_option("output", merge_output, "merged result file (.h5)")->required();
  merge_cmd->add_option("shards", merge_inputs, "the shard files")->required();
  merge_cmd->add_flag("--allow-mixed-versions", merge_options.allow_mixed_versions,
                      "merge shards computed by different tqbench commits (each row keeps its own)");

  auto* submit_cmd = app.add_subcommand("submit", "Run a sweep on a cluster: a Slurm job array of shards and a merge job (docs/CLUSTER.md)");
  std::string submit_spec;
  bool submit_slurm_flag = false;
  tqb::SlurmOptions slurm;
  submit_cmd->add_option("spec", submit_spec, "experiment spec (YAML)")->required();
  submit_cmd->add_flag("--slurm", submit_slurm_flag, "submit to Slurm with sbatch (the only scheduler supported)")->required();
  submit_cmd->add_option("--tasks", slurm.tasks, "array tasks (shards)")->check(CLI::Range(1, 100000))->capture_default_str();
  submit_cmd->add_option("--partition", slurm.partition, "Slurm partition (default: the cluster's)");
  submit_cmd->add_option("--time", slurm.time, "time limit per task")->capture_default_str();
  submit_cmd->add_option("--cpus-per-task", slurm.cpus_per_task, "CPUs per task (OMP_NUM_THREADS)")->check(CLI::Range(1, 4096))->capture_default_str();
  submit_cmd->add_option("--gpus", slurm.gpus, "GPUs per task (--gres=gpu:G)")->check(CLI::Range(0, 64))->capture_default_str();
  submit_cmd->add_option("-o,--output", slurm.output, "merged result file (default results/<experiment>.h5)");
  submit_cmd->add_flag("--dry-run", slurm.dry_run, "print the two job scripts, submit nothing");

  auto* passkey_cmd = app.add_subcommand(
      "passkey", "Passkey retrieval: a number hidden in filler text, asked for at the end; accuracy over trials, "
                 "optionally with a quantized KV cache");
  std::size_t passkey_ctx = 2048;
  int passkey_trials = 10;
  passkey_cmd->add_option("--model", model_name, "GGUF file, Hugging Face folder, stories260k or smollm2-135m")->capture_default_str();
  passkey_cmd->add_option("--ctx", passkey_ctx, "prompt length in tokens")->check(CLI::Range(64, 1 << 17))->capture_default_str();
  passkey_cmd->add_option("--trials", passkey_trials, "random keys and depths")->check(CLI::Range(1, 100000))->capture_default_str();
  tqb::ModelChoice passkey_model;
  add_model_options(passkey_cmd, passkey_model);  // its --seed also draws the keys and depths
  bool passkey_verbose = false;
  passkey_cmd->add_flag("-v,--verbose", passkey_verbose, "print each trial's answer");

  auto* export_cmd = app.add_subcommand(
      "export", "Write a model with quantized linear layers: OUT.gguf (llama.cpp's formats, runs in llama.cpp) or "
                "OUT.safetensors (any quantizer, tqbench's layout; docs/EXPORT.md)");
  tqb::ExportRequest export_request;
  export_cmd->add_option("--model", export_request.model, "GGUF file, Hugging Face folder, stories260k or smollm2-135m")->required();
  export_cmd->add_option("--quantizer", export_request.quantizer, "one-line quantizer name, e.g. q4_K or turboquant(bits=4,group=64)")
      ->required();
  export_cmd->add_option("-o,--output", export_request.output, "output file: .gguf or .safetensors")->required();
  export_cmd->add_option("--include", export_request.include, "tensors to quantize (a regular expression over GGUF names)")
      ->capture_default_str();
  export_cmd->add_option("--exclude", export_request.exclude, "tensors to leave as they are")->capture_default_str();
  export_cmd->add_flag("--force", export_request.force, "replace an existing output file (never the model it reads)");
  export_cmd->add_option("--group-fallback", group_fallback, kGroupFallbackHelp)
      ->check(CLI::IsMember({"none", "halve"}))->capture_default_str();
  export_cmd->add_option("--seed", export_request.seed, "seed of the quantizer's randomness (as a sweep point's)")->capture_default_str();
  add_calibration_options(export_cmd, export_request.calibration);

  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // A misspelled flag or subcommand gets a suggestion, as misspelled spec keys do.
    std::string hint;
    auto suggest = [&](const CLI::App& where, const std::vector<std::string>& extras) {
      std::vector<std::string> names;
      for (const CLI::Option* o : where.get_options())
        for (const auto& n : o->get_lnames()) names.push_back("--" + n);
      for (const CLI::App* s : where.get_subcommands({})) names.push_back(s->get_name());
      for (const auto& x : extras)
        if (const std::string m = tqb::closest_match(x.substr(0, x.find('=')), names); !m.empty())
          hint += fmt::format("{}: '{}' is not an option or argument here (did you mean '{}'?)\n",
                              &where == &app ? std::string("tqbench") : "tqbench " + where.get_name(), x, m);
    };
    const auto chosen = app.get_subcommands();
    if (!chosen.empty()) suggest(*chosen.front(), chosen.front()->remaining());
    else suggest(app, app.remaining());
    app.exit(e);
    if (!hint.empty()) std::cerr << hint;
    return 2;
  }

  try {
    if (*run) {
      const tqb::ExperimentSpec spec = tqb::load_spec(spec_path);
      const auto points = tqb::expand_sweep(spec, max_points);
      if (dry_run) {
        tqb::print_dry_run(spec, points, std::cout, calibrate);
        return 0;
      }
      tqb::RunOptions opts;
      opts.output = output;
      opts.existing = force ? tqb::ExistingFile::overwrite
                            : (resume ? tqb::ExistingFile::require_resume : tqb::ExistingFile::resume);
      opts.command_line = command_line;
      if (!shard_text.empty()) opts.shard = tqb::parse_shard(shard_text);
      return tqb::run_sweep(spec, points, opts, std::cout);
    }
    if (*list_cmd) return list(what);
    if (*plot_cmd) return tqb::run_plot_script(plot_script, plot_cmd->remaining());
    if (*show_cmd) {
      show_options.csv = csv;
      show_options.markdown = markdown;
      show_options.all = all;
      return show(file, show_options);
    }
    if (*compare_cmd) {
      // Every argument a result file (the second one too): a table across files; two --chunk-nll files: their paired
      // difference; else FILE A B.
      const bool across = std::all_of(compare_args.begin(), compare_args.end(), [](const std::string& a) { return a.ends_with(".h5"); });
      const bool chunk_files = compare_args.size() == 2 && std::all_of(compare_args.begin(), compare_args.end(), [](const std::string& a) {
        return a.ends_with(".json");
      });
      if (chunk_files) tqb::compare_chunk_files(compare_args[0], compare_args[1], compare_options, std::cout);
      else if (across) tqb::compare_files(compare_args, compare_metric, std::cout);
      else if (compare_args.size() == 3) tqb::compare_rows(compare_args[0], compare_args[1], compare_args[2], compare_options, std::cout);
      else
        throw InputError(fmt::format("compare: give FILE A B (two rows of one result file), two or more result files (.h5) or two "
                                     "`perplexity --chunk-nll` files (.json); got {} arguments", compare_args.size()));
      return 0;
    }
    if (*ppl_cmd) return perplexity(model_name, corpus, ppl_model, method, ctx, chunks, kld_base, kld_flag, batch, chunk_nll_file);
    if (*gen_cmd) return generate(model_name, gen_model, prompt_file.empty() ? prompt : read_corpus(prompt_file), n_tokens);
    if (*merge_cmd) {
      merge_options.command_line = command_line;
      return tqb::merge_results(merge_output, merge_inputs, merge_options, std::cout);
    }
    if (*submit_cmd) {
      const tqb::ExperimentSpec spec = tqb::load_spec(submit_spec);
      const auto points = tqb::expand_sweep(spec, max_points);
      if (const char* sbatch = std::getenv("TQB_SBATCH"); sbatch && *sbatch) slurm.sbatch = sbatch;
      return tqb::submit_slurm(spec, points.size(), slurm, std::cout);
    }
    if (*passkey_cmd) {
      const tqb::Checkpoint ck = tqb::load_model_checkpoint(model_name, passkey_model);
      tqb::check_fits_gpu(ck, passkey_model.device, passkey_ctx);
      const tqb::BuiltModel built = tqb::build_model(ck, model_name, passkey_model);
      const auto r = tqb::run_passkey(*built.model, *ck.tokenizer, passkey_ctx, passkey_trials, passkey_model.seed,
                                      passkey_verbose ? &std::cout : nullptr);
      const auto& kvq = built.kv;
      std::cout << fmt::format("passkey: {}/{} correct ({:.0f}%) at {} prompt tokens; model {}; KV cache: keys {} ({:.4g} bits), values {} ({:.4g} bits)\n",
                               r.correct, r.trials, 100 * r.accuracy(), r.prompt_tokens, built.label, kvq ? kvq->spec().key : "none",
                               kvq ? kvq->key_bits() : 32.0, kvq ? kvq->spec().value : "none", kvq ? kvq->value_bits() : 32.0);
      return 0;
    }
    if (*export_cmd) {
      export_request.command_line = command_line;
      export_request.group_fallback = tqb::parse_group_fallback(group_fallback);
      tqb::export_model(export_request, std::cout);
      return 0;
    }
  } catch (const tqb::InputError& e) {
    std::cerr << tqb::printable(e.what(), true) << '\n';
    return 2;
  } catch (const tqb::RunError& e) {
    std::cerr << "error: " << tqb::printable(e.what(), true) << '\n';
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "internal error: " << tqb::printable(e.what(), true) << '\n';
    return 1;
  }
  return 2;
}
