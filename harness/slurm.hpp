#pragma once
// `tqbench submit SPEC --slurm`: a sweep as a Slurm job array (one shard per array task, `run --shard
// $SLURM_ARRAY_TASK_ID/N`, which resumes its shard file when Slurm requeues the task) and a merge job that
// runs after all of them succeed (--dependency=afterok). tqbench schedules nothing itself: Slurm does.
// The scripts go to <results>/<experiment>.slurm/; both are submitted with sbatch unless dry_run.
#include <cstdint>
#include <ostream>
#include <string>

#include "harness/spec.hpp"

namespace tqb {

struct SlurmOptions {
  int tasks = 4;                 // array tasks = shards
  std::string partition;         // empty: the cluster's default
  std::string time = "24:00:00"; // per task
  int cpus_per_task = 2;
  int gpus = 0;                  // per task (--gres=gpu:G)
  std::string output;            // merged result file (default results/<experiment>.h5)
  bool dry_run = false;          // print the scripts, submit nothing
  std::string sbatch = "sbatch"; // the submit command ($TQB_SBATCH overrides: tests)
};

// Returns 0; InputError for bad options, RunError when sbatch fails (its output quoted).
int submit_slurm(const ExperimentSpec& spec, std::size_t points, const SlurmOptions& options, std::ostream& out);

}  // namespace tqb
