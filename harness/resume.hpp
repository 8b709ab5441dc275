#pragma once
// Where a run starts: a new result table carrying the run's provenance, or the finished rows of an existing
// file written from the same spec text and shard (resume), mapped onto this run's columns. A file of another
// spec or shard is refused (InputError naming --force and -o).
#include <set>
#include <string>
#include <vector>

#include "harness/shard.hpp"
#include "harness/spec.hpp"
#include "harness/store.hpp"
#include "harness/sweep.hpp"

namespace tqb {

enum class ExistingFile {
  resume,          // default: continue a file of the same spec, start one when there is none
  require_resume,  // --resume: as above, but a missing file is an error
  overwrite,       // --force: start afresh
};

struct StartingTable {
  ResultTable table;           // columns set; rows: the finished points kept
  std::set<std::string> done;  // their keys
};

// exists: whether `path` exists (the caller holds its OutputLock).
StartingTable start_result_table(const std::string& path, bool exists, ExistingFile existing, const ExperimentSpec& spec,
                                 const std::vector<SweepPoint>& points, const std::vector<Column>& columns,
                                 const Shard& shard, const std::string& command_line);

// Removes temporary files that a killed writer of `path` left behind (their process is gone).
void remove_stale_temporaries(const std::string& path);

}  // namespace tqb
