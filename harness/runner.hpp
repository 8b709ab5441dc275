#pragma once
// Runs a sweep: for each point, make (or reuse) the data, quantize, dequantize, compute the metrics and
// append the row to the result file, durably. Resumes from an existing file of the same spec.
#include <iosfwd>
#include <string>
#include <vector>

#include "harness/resume.hpp"
#include "harness/shard.hpp"
#include "harness/spec.hpp"
#include "harness/store.hpp"
#include "harness/sweep.hpp"

namespace tqb {

struct RunOptions {
  std::string output;  // empty: results/<experiment>.h5, or results/<experiment>.shard-I-of-N.h5
  ExistingFile existing = ExistingFile::resume;
  std::string command_line;  // stored as provenance
  Shard shard;
};

std::string default_output_path(const ExperimentSpec& spec, const Shard& shard = {});

// Prints the expanded sweep (one line per point) and its size.
// calibrate: also run the first two points (results discarded) and estimate the sweep's time from the second
// (the first pays for loading data and models).
void print_dry_run(const ExperimentSpec& spec, const std::vector<SweepPoint>& points, std::ostream& out, bool calibrate = false);

// Returns the exit code: 0 when every point succeeded, 1 when any failed. Throws InputError for bad
// usage (a file of another spec without --force) and RunError when results cannot be written.
int run_sweep(const ExperimentSpec& spec, const std::vector<SweepPoint>& points, const RunOptions& options,
              std::ostream& out);

}  // namespace tqb
