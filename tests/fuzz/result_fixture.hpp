#pragma once
// Real result files for the fuzz targets that forge journals and shards: a small sweep run in-process once per
// fuzzing process (a second's work), so that each input tampers with what `tqbench run` really writes.
#include <sstream>
#include <string>

#include "harness/runner.hpp"
#include "harness/spec.hpp"
#include "harness/sweep.hpp"

namespace tqb::fuzz {

// Two quantizers, two repeats (summary rows), three metrics: 6 points.
inline constexpr const char* kFixtureSpec =
    "experiment: fuzz\nseed: 3\nrepeats: 2\ndata: {source: gaussian, rows: 16, cols: 64}\n"
    "quantizers: ['turboquant(bits=2,group=32)', 'rtn(bits=3,group=32)', 'qjl(sketch=d,group=32)']\n"
    "metrics: [weight_nmse, ip_bias, bits_per_weight]\n";

inline ExperimentSpec fixture_spec() { return parse_spec(kFixtureSpec, "fuzz.yaml"); }

// Runs the fixture spec (one shard of it when shard.count > 1) into `path`, replacing what was there.
inline void run_fixture(const std::string& path, const Shard& shard = {}) {
  const ExperimentSpec spec = fixture_spec();
  RunOptions options;
  options.output = path;
  options.existing = ExistingFile::overwrite;
  options.command_line = "fuzz fixture";
  options.shard = shard;
  std::ostringstream log;
  run_sweep(spec, expand_sweep(spec, 100), options, log);
}

}  // namespace tqb::fuzz
