#pragma once
// Experiment specs: YAML text parsed into a typed ExperimentSpec. Every error names the file, line and
// column, the key, what was found and what is valid (experiments/README.md documents the schema).
#include <cstdint>
#include <string>
#include <vector>

#include "harness/data_source.hpp"
#include "harness/kernel_timing.hpp"
#include "quantizers/params.hpp"

namespace tqb {

struct SourceLocation {
  std::string file;
  int line = 0;    // 1-based; 0 when unknown
  int column = 0;  // 1-based
};

// "FILE:LINE:COL: key 'K': MESSAGE" — the one format of every spec error.
std::string located_message(const SourceLocation& where, const std::string& key, const std::string& message);

// One parameter axis of a grid: a key and the values it sweeps (one value = not swept).
struct GridAxis {
  std::string key;
  std::vector<ParamValue> values;
  SourceLocation where;  // of the key
};

// A family (quantizer or data source) with parameter axes; expands to their Cartesian product.
struct ParamGrid {
  std::string family;
  std::vector<GridAxis> axes;  // in the order written
  SourceLocation where;        // of the grid's node
  std::string path;            // key path for messages, e.g. "quantizers[1]"
};

struct ExperimentSpec {
  std::string path;  // spec file
  std::string text;  // its full text, stored with the results
  std::string experiment;
  std::string description;
  std::uint64_t seed = 0;
  // Every point runs under this many seeds (rotations, projections and synthetic data drawn anew; a model's
  // corpus is fixed), and the result file gets a summary row per point with each metric's mean, standard
  // deviation and 95% interval (harness/repeat_summary.hpp). Repeat 0 uses the seeds of an unrepeated run.
  std::int64_t repeats = 1;
  std::int64_t queries = 256;  // random unit queries for inner-product metrics
  std::vector<ParamGrid> data;
  std::vector<ParamGrid> quantizers;
  std::vector<std::string> metrics;  // default: every registered metric but the latencies
  TimingSpec timing;                 // for the latency metrics (kernel_us, ...)
  SourceLocation queries_where;
};

// Throws InputError: missing/unreadable file, YAML syntax, schema violations.
ExperimentSpec load_spec(const std::string& path);
// The kind of the spec's data (one per experiment, checked by parse_spec): which evaluator runs it.
DataKind data_kind(const ExperimentSpec& spec);

ExperimentSpec parse_spec(const std::string& text, const std::string& path);

}  // namespace tqb
