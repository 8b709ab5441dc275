#include "harness/runner.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <ostream>
#include <set>

#include "common/env.hpp"
#include "common/error.hpp"
#include "common/input_files.hpp"
#include "common/memory.hpp"
#include "common/printable.hpp"
#include "eval/model_eval.hpp"
#include "harness/evaluator.hpp"
#include "harness/interrupt.hpp"
#include "harness/output_lock.hpp"
#include "harness/progress.hpp"
#include "harness/repeat_summary.hpp"
#include "harness/result_journal.hpp"
#include "harness/result_row.hpp"
#include "harness/short_names.hpp"
#include "models/checkpoint.hpp"

namespace tqb {

std::string default_output_path(const ExperimentSpec& spec, const Shard& shard) {
  if (shard.active()) return "results/" + shard_file_name(spec.experiment, std::to_string(shard.index), shard.count);
  return "results/" + spec.experiment + ".h5";
}

void print_dry_run(const ExperimentSpec& spec, const std::vector<SweepPoint>& points, std::ostream& out, bool calibrate) {
  out << fmt::format("experiment {}: {} points (seed {})\n", spec.experiment, points.size(), spec.seed);
  const std::vector<std::string> labels = point_labels(points);  // what varies; the result file keeps the full names
  for (std::size_t i = 0; i < points.size(); ++i) out << fmt::format("{:>5}  {}\n", points[i].index, printable(labels[i]));
  out << fmt::format("metrics: {}\n", fmt::join(spec.metrics, ", "));
  if (const std::string w = repeats_warning(spec.repeats); !w.empty()) out << w << '\n';
  const auto evaluator = make_evaluator(spec);
  evaluator->describe_plan(points, out);
  if (!calibrate) {
    out << "time: run --dry-run --calibrate to time the first points and estimate the sweep\n";
    return;
  }
  // The first point pays for loading (data, a model, its baseline); the second is a typical one. Points differ
  // (shapes, quantizers, kernels): this is a guide, not a promise.
  std::vector<double> seconds;
  for (std::size_t i = 0; i < std::min<std::size_t>(2, points.size()); ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    const PointOutcome r = evaluator->evaluate(points[i], [](const std::string&) {});
    seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    if (!r.ok) out << fmt::format("calibration: point {} failed: {}\n", points[i].index, printable(r.error));
  }
  if (seconds.empty()) return;
  const double typical = seconds.back();
  const double total = seconds.front() + typical * static_cast<double>(points.size() - 1);
  out << fmt::format("time: point 0 took {} (with loading){}; the sweep's {} points about {} on this machine\n",
                     format_duration(seconds.front()), seconds.size() > 1 ? fmt::format(", point 1 {}", format_duration(seconds[1])) : "",
                     points.size(), format_duration(total));
}

namespace {

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
  const std::unique_ptr<Evaluator> evaluator = make_evaluator(spec);
  const std::vector<RowField> fields = result_fields(spec, points, *evaluator);
  evaluator->check_plan(points);  // a point that cannot run as specified stops the run before any point runs
  if (const std::string w = repeats_warning(spec.repeats); !w.empty()) std::cerr << w << '\n';
  const std::vector<Column> columns = columns_of(fields);
  check_output_path(path, spec.path);  // never a device, a folder or the spec, --force or not
  {
    // Never a file this run reads (the spec, a model, a corpus), through links too; --force replaces result files only.
    InputFiles inputs;
    inputs.add(spec.path, "the spec");
    std::set<std::string> models, corpora;
    for (const auto& p : points) {
      const Params& dp = p.data->params;
      if (dp.count("model")) models.insert(get_str(dp, "model"));
      if (dp.count("corpus")) corpora.insert(get_str(dp, "corpus"));
    }
    for (const auto& m : models) {
      try {
        inputs.add(resolve_model_path(m), "the model " + m);
      } catch (const std::exception&) {  // a model that is not there: its point reports it
      }
    }
    for (const auto& c : corpora) {
      try {
        inputs.add(resolve_corpus_path(c), "the corpus " + c);
      } catch (const std::exception&) {
      }
    }
    inputs.refuse_as_output(path, "-o");
    std::error_code exists_ec;
    if (options.existing == ExistingFile::overwrite && std::filesystem::exists(path, exists_ec) && !has_hdf5_signature(path))
      throw InputError(fmt::format("-o {}: error: the file exists and is not a tqbench result file (not HDF5); --force replaces "
                                   "result files only: give another name, or remove it yourself", path));
  }

  std::error_code ec;
  {
    const auto parent = std::filesystem::path(path).parent_path();
    if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  }
  OutputLock lock(path);  // one writer per result file; released however this run ends
  const bool exists = std::filesystem::exists(path, ec);
  if (!exists && options.existing == ExistingFile::require_resume)
    throw InputError(fmt::format("{}: error: --resume given but there is no result file to resume", path));
  StartingTable start = start_result_table(path, exists, options.existing, spec, points, columns, shard, options.command_line);
  ResultTable& table = start.table;
  const std::set<std::string>& done = start.done;

  remove_stale_temporaries(path);
  if (summaries) {  // a resumed file's summaries (not kept: their status is not ok) from its finished repeats
    update_repeat_summaries(table, spec.metrics, static_cast<std::int64_t>(points.size()));
    sort_by_point(table);
  }
  write_result_file(path, table);  // the file exists (possibly empty) from the start; an old journal is folded
  // Finished rows go to the journal, one record each, and are folded into the file every kFoldSeconds and at
  // the end: a point's bookkeeping does not grow with the number of points before it (issue 17).
  ResultJournal journal(path, columns, spec.text);
  auto last_fold = std::chrono::steady_clock::now();
  // TQB_FOLD_SECONDS overrides the interval (the durability tests fold after every point, to kill during folds).
  double fold_seconds = kFoldSeconds;
  if (const auto env = env_seconds("TQB_FOLD_SECONDS")) fold_seconds = *env;
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
  const std::vector<std::string> labels = point_labels(points, /*quantizer_first=*/true);
  std::size_t failed = 0, run_now = 0;
  // SIGINT/SIGTERM: fold what finished, say so and how to resume, release the lock (harness/interrupt.hpp). The
  // state mutex is held wherever the table, the journal or the file change.
  std::mutex state;
  std::string in_progress;
  const InterruptGuard interrupts(state, [&](int sig) {
    progress.finish();
    std::string saved;
    try {
      fold();
      journal.remove();
      saved = fmt::format("{} points saved in {}", std::count_if(table.rows.begin(), table.rows.end(), [&](const auto& r) {
                            return cell_text(r[table.column_index("status")], true) != "summary";
                          }), path);
    } catch (const std::exception& e) {
      saved = fmt::format("the finished points are in {}'s journal ({}); the next run folds them", path, e.what());
    }
    lock.release();
    std::cerr << fmt::format("\ninterrupted ({}): {} ({} run now); {}resume with: tqbench run '{}' -o '{}'{}\n",
                             sig == SIGINT ? "SIGINT" : "SIGTERM", saved, run_now,
                             in_progress.empty() ? "" : fmt::format("the point in progress ({}) reruns; ", printable(in_progress)),
                             spec.path, path, shard.active() ? " --shard " + shard.text() : "")
              << std::flush;
  });
  for (const auto& p : points) {
    if (done.count(p.key) || !shard.owns(p.index)) continue;
    const std::string& label = labels[static_cast<std::size_t>(&p - points.data())];
    {
      const std::lock_guard<std::mutex> hold(state);
      in_progress = label;
    }
    progress.start_point(label);
    const bool peak_reset = reset_peak_rss();
    const auto t0 = std::chrono::steady_clock::now();
    PointOutcome r;
    try {
      r = evaluator->evaluate(p, [&](const std::string& msg) { progress.start_point(label + " | " + msg); });
    } catch (const InputError&) {
      // Bad model file or corpus: the whole run is bad input. A file this run created and that holds no
      // row is removed, so that the corrected spec is not refused as "a different spec".
      if (!exists && table.rows.empty()) {
        std::filesystem::remove(path, ec);
        journal.remove();
      }
      throw;
    } catch (const std::exception& e) {
      r = PointOutcome{};
      r.ok = false;
      r.error = e.what();
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::vector<Cell> row = make_row(fields, FinishedPoint{p, r, seconds, peak_reset});
    {
      const std::lock_guard<std::mutex> hold(state);
      journal.append(row);
      table.rows.push_back(std::move(row));
      ++run_now;
      in_progress.clear();
      if (std::chrono::duration<double>(std::chrono::steady_clock::now() - last_fold).count() >= fold_seconds) fold();
    }
    if (!r.ok) ++failed;
    std::string summary = r.ok ? "" : r.error;
    if (r.ok && r.metrics.count("bits_per_weight") && r.metrics.count("weight_nmse"))
      summary = fmt::format("{:.4g} bits/weight, nmse {:.4g}", r.metrics["bits_per_weight"], r.metrics["weight_nmse"]);
    progress.finish_point(label, r.ok, seconds, summary);
  }
  {
    const std::lock_guard<std::mutex> hold(state);
    fold();
    journal.remove();
  }
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
