#pragma once
// Runs a sweep: for each point, make (or reuse) the data, quantize, dequantize, compute the metrics and
// append the row to the result file, durably. Resumes from an existing file of the same spec.
#include <iosfwd>
#include <string>
#include <vector>

#include "harness/spec.hpp"
#include "harness/store.hpp"
#include "harness/sweep.hpp"

namespace tqb {

enum class ExistingFile {
  resume,          // default: continue a file of the same spec, start one when there is none
  require_resume,  // --resume: as above, but a missing file is an error
  overwrite,       // --force: start afresh
};

// One shard of a sweep (`--shard I/N`): the points whose index is I modulo N, into a file of its own;
// `tqbench merge` joins the N files (harness/merge.hpp). Round-robin, so that every shard gets a share of
// each data point's quantizers and of each repeat.
struct Shard {
  std::size_t index = 0, count = 1;  // 0 <= index < count
  bool active() const { return count > 1; }
  bool owns(std::size_t point) const { return point % count == index; }
  std::string text() const;  // "I/N"
};
// "I/N" with 0 <= I < N <= 100000; InputError naming the flag otherwise.
Shard parse_shard(const std::string& text);

struct RunOptions {
  std::string output;  // empty: results/<experiment>.h5, or results/<experiment>.shard-I-of-N.h5
  ExistingFile existing = ExistingFile::resume;
  std::string command_line;  // stored as provenance
  Shard shard;
};

// The columns a sweep writes: point bookkeeping, data and quantizer parameters, metrics, provenance.
std::vector<Column> result_columns(const ExperimentSpec& spec, const std::vector<SweepPoint>& points);

std::string default_output_path(const ExperimentSpec& spec, const Shard& shard = {});
// A shard's file name, "<experiment>.shard-<index>-of-<count>.h5"; `index` is text so that a job script can
// put a shell variable there (harness/slurm.cpp).
std::string shard_file_name(const std::string& experiment, const std::string& index, std::size_t count);

// Prints the expanded sweep (one line per point) and its size.
void print_dry_run(const ExperimentSpec& spec, const std::vector<SweepPoint>& points, std::ostream& out);

// Returns the exit code: 0 when every point succeeded, 1 when any failed. Throws InputError for bad
// usage (a file of another spec without --force) and RunError when results cannot be written.
int run_sweep(const ExperimentSpec& spec, const std::vector<SweepPoint>& points, const RunOptions& options,
              std::ostream& out);

}  // namespace tqb
