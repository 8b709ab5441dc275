#pragma once
// `tqbench merge OUT.h5 SHARD.h5...`: joins the shards of a sweep (`run --shard I/N`) into one result file
// that holds, row for row, what a single-process run of the spec writes: the rows in point order, each with
// the host and commit that computed it, and the summary rows of a repeated sweep. Shards must come from the
// same spec text and seed, and from the same tqbench commit unless allow_mixed_versions; duplicated points
// are refused and missing ones reported.
#include <ostream>
#include <string>
#include <vector>

namespace tqb {

struct MergeOptions {
  bool allow_mixed_versions = false;
  std::string command_line;
};

// Exit code: 0, or 1 when points are missing or failed (the file is written all the same). InputError for
// shards that cannot be merged (different spec, seed or version; duplicated points; not shards).
int merge_results(const std::string& output, const std::vector<std::string>& shards, const MergeOptions& options, std::ostream& log);

}  // namespace tqb
