#include "harness/runner.hpp"

#include <fmt/format.h>

#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <ostream>
#include <set>

#include "common/error.hpp"
#include "common/memory.hpp"
#include "common/printable.hpp"
#include "common/rng.hpp"
#include "harness/data_source.hpp"
#include "harness/memory_estimate.hpp"
#include "harness/metrics.hpp"
#include "harness/model_eval.hpp"
#include "harness/output_lock.hpp"
#include "harness/progress.hpp"
#include "harness/provenance.hpp"
#include "harness/repeat_summary.hpp"
#include "harness/result_journal.hpp"
#include "kernels/cuda/gpu.hpp"
#include "quantizers/registry.hpp"

namespace tqb {
namespace {

ColumnType column_type(ParamSpec::Kind k) {
  switch (k) {
    case ParamSpec::Kind::integer: return ColumnType::integer;
    case ParamSpec::Kind::real: return ColumnType::real;
    default: return ColumnType::text;
  }
}

Cell param_cell(const ParamValue& v, ColumnType t) {
  if (t == ColumnType::text) {
    if (const auto* s = std::get_if<std::string>(&v)) return *s;
    if (const auto* i = std::get_if<std::int64_t>(&v)) return fmt::format("{}", *i);
    return fmt::format("{}", std::get<double>(v));
  }
  if (const auto* i = std::get_if<std::int64_t>(&v)) return t == ColumnType::real ? Cell{static_cast<double>(*i)} : Cell{*i};
  if (const auto* d = std::get_if<double>(&v)) return *d;
  return missing_cell(t);
}

// Adds a parameter column, widening to text when two families declare it with different kinds.
void add_param_column(std::vector<Column>& cols, std::map<std::string, std::size_t>& index, const std::string& name,
                      const ParamSpec& spec, const std::string& role) {
  const ColumnType t = column_type(spec.kind);
  std::string desc = spec.description;
  if (!spec.aliases.empty()) {
    desc += " (";
    for (std::size_t i = 0; i < spec.aliases.size(); ++i)
      desc += fmt::format("{}{} = {}", i ? ", " : "", spec.aliases[i].second, spec.aliases[i].first);
    desc += ")";
  }
  auto it = index.find(name);
  if (it == index.end()) {
    index[name] = cols.size();
    cols.push_back({name, t, role, desc, ""});
  } else if (cols[it->second].type != t) {
    cols[it->second].type = ColumnType::text;
  }
}

}  // namespace

std::vector<Column> result_columns(const ExperimentSpec& spec, const std::vector<SweepPoint>& points) {
  std::vector<Column> cols{
      {"point", ColumnType::integer, "point", "index of the point in the expanded sweep", ""},
      {"key", ColumnType::text, "point", "canonical identity of the point: data | quantizer", ""},
      {"status", ColumnType::text, "point", "ok or failed", ""},
      {"error", ColumnType::text, "point", "why the point failed (empty when ok)", ""},
      {"data", ColumnType::text, "data", "canonical name of the data", ""},
      {"quantizer", ColumnType::text, "quantizer", "canonical one-line name of the quantizer", ""},
      {"family", ColumnType::text, "quantizer", "quantizer family", ""},
  };
  std::map<std::string, std::size_t> index;
  std::set<std::string> seen_sources, seen_families;
  for (const auto& p : points) {
    if (seen_sources.insert(p.data->source).second)
      for (const auto& s : find_data_source(p.data->source)->schema.specs())
        add_param_column(cols, index, "data." + s.name, s, "data");
  }
  for (const auto& p : points) {
    if (seen_families.insert(p.quantizer->family()).second)
      for (const auto& s : find_quantizer_family(p.quantizer->family())->schema.specs())
        add_param_column(cols, index, "q." + s.name, s, "quantizer");
  }
  for (const auto& m : spec.metrics) {
    const Metric* metric = find_metric(m);
    cols.push_back({m, ColumnType::real, "metric", metric->description, to_string(metric->direction)});
  }
  if (spec.repeats > 1)
    for (auto& c : repeat_columns(spec.metrics)) cols.push_back(std::move(c));
  bool on_model = false;
  for (const auto& p : points) on_model |= p.data->source == "model";
  if (on_model) {
    cols.push_back({"layer_stats", ColumnType::text, "point",
                    "JSON per quantized tensor: quantizer used, kernel, mse, nmse, bits per weight", ""});
    cols.push_back({"kv_cache", ColumnType::text, "point",
                    "JSON: KV-cache quantizers, exact bits per coordinate and the outlier channels chosen per layer and head", ""});
  }
  bool timed = on_model;
  for (const auto& m : spec.metrics) timed |= find_metric(m)->timing;
  if (timed)
    cols.push_back({"kernel", ColumnType::text, "point",
                    on_model ? "kernels the quantized layers ran (kernels/registry.hpp names with SIMD level)"
                             : "kernel the latency metrics timed (kernels/registry.hpp name with SIMD level)", ""});
  const std::vector<Column> tail{
      {"seed", ColumnType::integer, "point", "seed of the quantizer's randomness, derived from the spec seed and key", ""},
      {"data_seed", ColumnType::integer, "point", "seed of the data, derived from the spec seed and data name", ""},
      {"elapsed_s", ColumnType::real, "point", "wall time of the point (quantize, dequantize, metrics), seconds", ""},
      {"peak_rss_bytes", ColumnType::integer, "point",
       "resident-memory high-water mark during the point (reset per point through /proc/self/clear_refs; "
       "includes what the process keeps across points: data, a loaded model, baseline log-probabilities)", ""},
      {"finished_utc", ColumnType::text, "point", "when the point finished", ""},
      {"git_commit", ColumnType::text, "point", "tqbench commit that computed the point", ""},
      {"host", ColumnType::text, "point", "machine that computed the point", ""},
  };
  cols.insert(cols.end(), tail.begin(), tail.end());
  return cols;
}

std::string Shard::text() const { return fmt::format("{}/{}", index, count); }

Shard parse_shard(const std::string& text) {
  Shard s;
  const auto slash = text.find('/');
  auto number = [&](const std::string& part, std::size_t& out) {
    if (part.empty() || part.size() > 6 || part.find_first_not_of("0123456789") != std::string::npos) return false;
    out = std::stoul(part);
    return true;
  };
  if (slash == std::string::npos || !number(text.substr(0, slash), s.index) || !number(text.substr(slash + 1), s.count) ||
      s.count == 0 || s.count > 100000 || s.index >= s.count)
    throw InputError(fmt::format("--shard '{}': expected I/N with 0 <= I < N <= 100000 (e.g. 0/4 ... 3/4; Slurm's "
                                 "SLURM_ARRAY_TASK_ID with --array=0-(N-1))", printable(text)));
  return s;
}

std::string shard_file_name(const std::string& experiment, const std::string& index, std::size_t count) {
  return fmt::format("{}.shard-{}-of-{}.h5", experiment, index, count);
}

std::string default_output_path(const ExperimentSpec& spec, const Shard& shard) {
  if (shard.active()) return "results/" + shard_file_name(spec.experiment, std::to_string(shard.index), shard.count);
  return "results/" + spec.experiment + ".h5";
}

void print_dry_run(const ExperimentSpec& spec, const std::vector<SweepPoint>& points, std::ostream& out) {
  out << fmt::format("experiment {}: {} points (seed {})\n", spec.experiment, points.size(), spec.seed);
  for (const auto& p : points) out << fmt::format("{:>5}  {}\n", p.index, printable(p.key));
  out << fmt::format("metrics: {}\n", fmt::join(spec.metrics, ", "));
  const SweepPoint* largest = nullptr;
  std::uint64_t most = 0;
  for (const auto& p : points)
    if (const auto b = estimate_point_bytes(spec, p); b && *b > most) {
      most = *b;
      largest = &p;
    }
  const std::size_t available = available_memory_bytes();
  if (largest) {
    out << fmt::format("largest point: {} needs about {} ({} available now){}\n", largest->index,
                       format_bytes(static_cast<double>(most)), available ? format_bytes(static_cast<double>(available)) : "unknown",
                       available && most > available ? "; points that do not fit will be refused" : "");
  }
  if (std::any_of(points.begin(), points.end(), [](const SweepPoint& p) { return p.data->source == "model"; }))
    out << "model points: memory is known once the model is loaded\n";
}

namespace {

struct PointResult {
  bool ok = true;
  std::string error;
  std::map<std::string, double> metrics;
  std::string kernel;  // the kernel that ran (timed matrix points, model points)
};

PointResult evaluate(const ExperimentSpec& spec, const SweepPoint& p, const Matrix& w) {
  PointResult r;
  try {
    const QuantizedMatrix q = p.quantizer->quantize(w.data(), w.rows(), w.cols(), p.seed);
    Matrix w_hat(w.rows(), w.cols());
    p.quantizer->dequantize(q, w_hat.data());
    require_finite_weights(w, w_hat, p.quantizer->name());
    const std::uint64_t query_seed = derive_seed(spec.seed, fmt::format("queries {} {}", p.data->name, spec.queries));
    const std::uint64_t timing_seed = derive_seed(spec.seed, "timing activations " + p.data->name);
    EvalContext ctx(w, w_hat, q, *p.quantizer, [&] { return random_unit_rows(spec.queries, w.cols(), query_seed); },
                    [&] { return time_kernel(spec.timing, w, *p.quantizer, q, timing_seed); });
    for (const auto& m : spec.metrics) r.metrics[m] = find_metric(m)->compute(ctx);
    if (ctx.timed()) r.kernel = ctx.kernel_timing().kernel;
  } catch (const std::exception& e) {
    r.ok = false;
    r.error = e.what();
  }
  return r;
}

// Removes temporary files that a killed writer of `path` left behind (their process is gone).
void remove_stale_temporaries(const std::string& path) {
  const std::filesystem::path p(path);
  const std::filesystem::path dir = p.parent_path().empty() ? std::filesystem::path(".") : p.parent_path();
  const std::string prefix = p.filename().string() + ".tmp.";
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    const std::string pid = name.substr(prefix.size());
    if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) continue;
    if (::kill(static_cast<pid_t>(std::stol(pid)), 0) != 0 && errno == ESRCH) std::filesystem::remove(e.path(), ec);
  }
}

// Rows in sweep order, whatever order resumed and new points finished in.
void sort_by_point(ResultTable& t) {
  const int j = t.column_index("point");
  std::stable_sort(t.rows.begin(), t.rows.end(), [j](const auto& a, const auto& b) {
    return std::get<std::int64_t>(a[j]) < std::get<std::int64_t>(b[j]);
  });
}

}  // namespace

int run_sweep(const ExperimentSpec& spec, const std::vector<SweepPoint>& points, const RunOptions& options,
              std::ostream& out) {
  const std::string path = options.output.empty() ? default_output_path(spec, options.shard) : options.output;
  const Shard& shard = options.shard;
  // Summary rows need every repeat of a point, which a shard does not have: `merge` writes them.
  const bool summaries = spec.repeats > 1 && !shard.active();
  const std::vector<Column> columns = result_columns(spec, points);
  check_output_path(path, spec.path);  // never a device, a folder or the spec, --force or not

  ResultTable table;
  table.columns = columns;
  std::set<std::string> done;
  std::error_code ec;
  {
    const auto parent = std::filesystem::path(path).parent_path();
    if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  }
  const OutputLock lock(path);  // one writer per result file; released however this run ends
  const bool exists = std::filesystem::exists(path, ec);
  if (!exists && options.existing == ExistingFile::require_resume)
    throw InputError(fmt::format("{}: error: --resume given but there is no result file to resume", path));

  if (exists && options.existing != ExistingFile::overwrite) {
    ResultTable old = read_result_file(path);
    const Cell* old_spec = old.attribute("spec_text");
    if (!old_spec || std::get_if<std::string>(old_spec) == nullptr || std::get<std::string>(*old_spec) != spec.text)
      throw InputError(fmt::format(
          "{}: error: this result file was written from a different spec than {}; pass --force to overwrite it "
          "or -o FILE to write elsewhere", path, spec.path));
    const Cell* old_shard = old.attribute("shard");
    const std::string was = old_shard ? cell_text(*old_shard, true) : std::string();
    if (was != (shard.active() ? shard.text() : std::string()))
      throw InputError(fmt::format("{}: error: this result file holds {}, not {}; pass --force to overwrite it or -o FILE "
                                   "to write elsewhere", path, was.empty() ? "a whole sweep" : "shard " + was,
                                   shard.active() ? "shard " + shard.text() : "the whole sweep"));
    table.attributes = old.attributes;
    std::erase_if(table.attributes, [](const auto& kv) { return kv.first == "last_resumed_utc"; });
    table.attributes.emplace_back("last_resumed_utc", utc_now());
    // Keep the finished rows of points still in the sweep, mapped onto the current columns.
    std::set<std::string> keys;
    for (const auto& p : points) keys.insert(p.key);
    const int key_col = old.column_index("key"), status_col = old.column_index("status");
    if (key_col < 0 || status_col < 0) throw InputError(fmt::format("{}: error: result file has no key/status columns", path));
    // A column this run writes must hold the same type in the old file (an edited file whose `point`
    // column became text would otherwise break the merge).
    for (const auto& c : columns) {
      const int j = old.column_index(c.name);
      if (j >= 0 && old.columns[j].type != c.type)
        throw InputError(fmt::format("{}: error: column '{}' holds {} values, but this run writes {}; the file was "
                                     "changed outside tqbench (pass --force to overwrite it)", path, c.name,
                                     column_type_name(old.columns[j].type), column_type_name(c.type)));
    }
    for (const auto& row : old.rows) {
      const std::string key = cell_text(row[key_col], true);
      if (cell_text(row[status_col], true) != "ok" || !keys.count(key) || done.count(key)) continue;
      std::vector<Cell> mapped;
      for (const auto& c : columns) {
        const int j = old.column_index(c.name);
        mapped.push_back(j >= 0 ? row[j] : missing_cell(c.type));
      }
      table.rows.push_back(std::move(mapped));
      done.insert(key);
    }
  } else {
    const Provenance& prov = provenance();
    table.attributes = {
        {"experiment", spec.experiment},
        {"description", spec.description},
        {"spec_path", spec.path},
        {"spec_text", spec.text},
        {"seed", static_cast<std::int64_t>(spec.seed)},
        {"repeats", spec.repeats},
        {"queries", spec.queries},
        {"timing_device", spec.timing.device},
        {"timing_kernel", spec.timing.kernel},
        {"timing_batch", spec.timing.batch},
        {"timing_repetitions", spec.timing.repetitions},
        {"points_total", static_cast<std::int64_t>(points.size())},
        {"shard", shard.active() ? shard.text() : std::string()},
        {"tqbench_version", prov.tqbench_version},
        {"git_commit", prov.git_commit},
        {"compiler", prov.compiler},
        {"build_type", prov.build_type},
        {"cpu_model", prov.cpu_model},
        {"dense_blas", prov.dense_blas},
        {"host", prov.host},
        {"os", prov.os},
        // The GPU that timing.device cuda ran on (asked only then: initialising CUDA costs time).
        {"gpu", spec.timing.device == "cuda" ? gpu::device_description() : std::string()},
        {"start_utc", utc_now()},
        {"command", options.command_line},
    };
  }

  remove_stale_temporaries(path);
  if (summaries) {  // a resumed file's summaries (not kept: their status is not ok) from its finished repeats
    update_repeat_summaries(table, spec.metrics, static_cast<std::int64_t>(points.size()));
    sort_by_point(table);
  }
  write_result_file(path, table);  // the file exists (possibly empty) from the start; an old journal is folded
  // Finished rows go to the journal, one record each, and are folded into the file every kFoldSeconds and at
  // the end: a point's bookkeeping does not grow with the number of points before it (issue 17).
  ResultJournal journal(path, columns);
  auto last_fold = std::chrono::steady_clock::now();
  // TQB_FOLD_SECONDS overrides the interval (the durability tests fold after every point, to kill during folds).
  double fold_seconds = kFoldSeconds;
  if (const char* env = std::getenv("TQB_FOLD_SECONDS"); env && *env) fold_seconds = std::max(0.0, std::atof(env));
  auto fold = [&] {
    if (summaries) update_repeat_summaries(table, spec.metrics, static_cast<std::int64_t>(points.size()));
    sort_by_point(table);
    write_result_file(path, table);
    journal.clear();
    last_fold = std::chrono::steady_clock::now();
  };

  std::size_t mine = 0;
  for (const auto& p : points) mine += shard.owns(p.index);
  Progress progress(mine, done.size());
  ModelEvaluator model_eval;
  Matrix current;
  std::string current_data;
  std::size_t failed = 0;
  for (const auto& p : points) {
    if (done.count(p.key) || !shard.owns(p.index)) continue;
    progress.start_point(p.key);
    const bool peak_reset = reset_peak_rss();
    const auto t0 = std::chrono::steady_clock::now();
    PointResult r;
    std::string layer_stats, kv_cache;
    try {
      if (p.data->source == "model") {
        ModelPointResult m = model_eval.evaluate(p, [&](const std::string& msg) { progress.start_point(p.key + " | " + msg); });
        r.metrics = std::move(m.metrics);
        r.kernel = std::move(m.kernel);
        layer_stats = std::move(m.layer_stats);
        kv_cache = std::move(m.kv_cache);
      } else if (const std::string refusal = memory_refusal(spec, p, available_memory_bytes()); !refusal.empty()) {
        r.ok = false;
        r.error = refusal;
      } else {
        // Repeats share the data's name but not its seed.
        const std::string data_id = fmt::format("{} seed {}", p.data->name, p.data->seed);
        if (current_data != data_id) {
          current = Matrix();  // release the previous matrix before making the next
          current = find_data_source(p.data->source)->make(p.data->params, p.data->seed);
          current_data = data_id;
        }
        r = evaluate(spec, p, current);
      }
    } catch (const InputError&) {
      // Bad model file or corpus: the whole run is bad input. A file this run created and that holds no
      // row is removed, so that the corrected spec is not refused as "a different spec".
      if (!exists && table.rows.empty()) {
        std::filesystem::remove(path, ec);
        journal.remove();
      }
      throw;
    } catch (const std::exception& e) {
      r.ok = false;
      r.error = e.what();
      current_data.clear();
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::vector<Cell> row;
    for (const auto& c : columns) {
      Cell v = missing_cell(c.type);
      if (c.name == "point") v = static_cast<std::int64_t>(p.index);
      else if (c.name == "key") v = p.key;
      else if (c.name == "status") v = std::string(r.ok ? "ok" : "failed");
      else if (c.name == "error") v = r.error;
      else if (c.name == "data") v = p.data->name;
      else if (c.name == "quantizer") v = p.quantizer->name();
      else if (c.name == "family") v = p.quantizer->family();
      else if (c.name == "seed") v = static_cast<std::int64_t>(p.seed);
      else if (c.name == "data_seed") v = static_cast<std::int64_t>(p.data->seed);
      else if (c.name == "elapsed_s") v = seconds;
      else if (c.name == "peak_rss_bytes") v = peak_reset ? static_cast<std::int64_t>(peak_rss_bytes()) : std::int64_t{-1};
      else if (c.name == "finished_utc") v = utc_now();
      else if (c.name == "git_commit") v = provenance().git_commit;
      else if (c.name == "host") v = provenance().host;
      else if (c.name == "layer_stats") v = layer_stats;
      else if (c.name == "kv_cache") v = kv_cache;
      else if (c.name == "kernel") v = r.kernel;
      else if (c.name == "repeat") v = static_cast<std::int64_t>(p.repeat);
      else if (c.name == "n_repeats") v = static_cast<std::int64_t>(p.repeats);
      else if (c.role == "data") {
        auto it = p.data->params.find(c.name.substr(5));
        if (it != p.data->params.end()) v = param_cell(it->second, c.type);
      } else if (c.role == "quantizer") {
        auto it = p.quantizer->params().find(c.name.substr(2));
        if (it != p.quantizer->params().end()) v = param_cell(it->second, c.type);
      } else if (c.role == "metric") {
        auto it = r.metrics.find(c.name);
        if (it != r.metrics.end()) v = it->second;
      }
      row.push_back(std::move(v));
    }
    journal.append(row);
    table.rows.push_back(std::move(row));
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - last_fold).count() >= fold_seconds) fold();
    if (!r.ok) ++failed;
    std::string summary = r.ok ? "" : r.error;
    if (r.ok && r.metrics.count("bits_per_weight") && r.metrics.count("weight_nmse"))
      summary = fmt::format("{:.4g} bits/weight, nmse {:.4g}", r.metrics["bits_per_weight"], r.metrics["weight_nmse"]);
    progress.finish_point(p.key, r.ok, seconds, summary);
  }
  fold();
  journal.remove();
  progress.finish();
  const auto summary_rows = std::count_if(table.rows.begin(), table.rows.end(), [&](const auto& r) {
    return cell_text(r[table.column_index("status")], true) == "summary";
  });
  out << fmt::format("{}: {} points{} ({} run now, {} failed){}\n", path, table.rows.size() - summary_rows,
                     shard.active() ? fmt::format(" of shard {} ({} of the sweep's {})", shard.text(), mine, points.size()) : "",
                     mine - done.size(), failed, summary_rows ? fmt::format(", {} summary rows with 95% intervals", summary_rows) : "");
  return failed > 0 ? 1 : 0;
}

}  // namespace tqb
