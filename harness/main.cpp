// tqbench: the command-line front end. Exit codes: 0 success, 1 a run failed, 2 bad usage or bad input.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <iostream>

#include "common/error.hpp"
#include "common/version.hpp"
#include "harness/data_source.hpp"
#include "harness/metrics.hpp"
#include "harness/runner.hpp"
#include "harness/spec.hpp"
#include "harness/store.hpp"
#include "harness/sweep.hpp"
#include "harness/table.hpp"
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
  } else {
    for (const auto& s : data_sources()) {
      std::cout << fmt::format("{}: {}\n", s.name, s.description);
      print_schema(s.schema);
    }
  }
  return 0;
}

int show(const std::string& file, bool csv, bool all, const std::vector<std::string>& columns) {
  const ResultTable t = read_result_file(file);
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
  } else {
    const Cell* exp = t.attribute("experiment");
    const Cell* commit = t.attribute("git_commit");
    std::cout << fmt::format("{}: experiment {}, {} points, tqbench {}\n", file, exp ? cell_text(*exp) : "?",
                             t.rows.size(), commit ? cell_text(*commit) : "?");
    print_table(t, cols, std::cout);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
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
  run->add_flag("--dry-run", dry_run, "print the expanded sweep and its size, run nothing");

  auto* list_cmd = app.add_subcommand("list", "List registered quantizers, metrics or data sources with their parameters");
  std::string what;
  list_cmd->add_option("what", what, "quantizers | metrics | data")
      ->required()
      ->check(CLI::IsMember({"quantizers", "metrics", "data"}));

  auto* show_cmd = app.add_subcommand("show", "Print the results of an HDF5 result file as a table");
  std::string file;
  bool csv = false, all = false;
  std::vector<std::string> columns;
  show_cmd->add_option("file", file, "result file (.h5)")->required();
  show_cmd->add_flag("--csv", csv, "CSV with every column (or --columns) instead of a table");
  show_cmd->add_flag("--all", all, "every column, not only the point's identity and its metrics");
  show_cmd->add_option("--columns", columns, "columns to print, in order")->delimiter(',');

  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return 2;
  }

  try {
    if (*run) {
      const tqb::ExperimentSpec spec = tqb::load_spec(spec_path);
      const auto points = tqb::expand_sweep(spec);
      if (dry_run) {
        tqb::print_dry_run(spec, points, std::cout);
        return 0;
      }
      tqb::RunOptions opts;
      opts.output = output;
      opts.existing = force ? tqb::ExistingFile::overwrite
                            : (resume ? tqb::ExistingFile::require_resume : tqb::ExistingFile::resume);
      opts.command_line = command_line;
      return tqb::run_sweep(spec, points, opts, std::cout);
    }
    if (*list_cmd) return list(what);
    if (*show_cmd) return show(file, csv, all, columns);
  } catch (const tqb::InputError& e) {
    std::cerr << e.what() << '\n';
    return 2;
  } catch (const tqb::RunError& e) {
    std::cerr << "error: " << e.what() << '\n';
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "internal error: " << e.what() << '\n';
    return 1;
  }
  return 2;
}
