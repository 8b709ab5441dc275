#include "harness/slurm.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "common/error.hpp"
#include "harness/runner.hpp"

namespace tqb {
namespace {

namespace fs = std::filesystem;

// A path or word as one single-quoted shell word.
std::string quoted(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::string self_path() {
  std::error_code ec;
  const fs::path p = fs::read_symlink("/proc/self/exe", ec);
  if (ec) throw RunError(std::string("cannot find the tqbench binary's path (/proc/self/exe): ") + ec.message());
  return p.string();
}

std::string run_capture(const std::string& cmd, int& status) {
  std::string out;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (!p) throw RunError(fmt::format("cannot run {}", cmd));
  std::array<char, 4096> buf;
  std::size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  status = ::pclose(p);
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

// sbatch --parsable prints "JOBID" or "JOBID;CLUSTER".
std::string job_id(const std::string& printed) { return printed.substr(0, printed.find(';')); }

}  // namespace

int submit_slurm(const ExperimentSpec& spec, std::size_t points, const SlurmOptions& o, std::ostream& out) {
  if (o.tasks < 1 || o.tasks > 100000) throw InputError(fmt::format("--tasks {}: expected 1 to 100000", o.tasks));
  if (o.cpus_per_task < 1 || o.cpus_per_task > 4096) throw InputError(fmt::format("--cpus-per-task {}: expected 1 to 4096", o.cpus_per_task));
  if (o.gpus < 0 || o.gpus > 64) throw InputError(fmt::format("--gpus {}: expected 0 to 64", o.gpus));
  for (char c : o.partition + o.time)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == ':' || c == ','))
      throw InputError(fmt::format("--partition '{}' / --time '{}': letters, digits, '-', '_', ':' and ',' only", o.partition, o.time));
  const std::size_t tasks = std::min<std::size_t>(static_cast<std::size_t>(o.tasks), std::max<std::size_t>(points, 1));
  const fs::path cwd = fs::current_path();
  const fs::path merged = fs::absolute(o.output.empty() ? default_output_path(spec) : o.output);
  const fs::path dir = merged.parent_path() / (spec.experiment + ".slurm");
  const std::string binary = self_path(), spec_path = fs::absolute(spec.path).string();
  auto shard_file = [&](const std::string& index) {
    return (merged.parent_path() / shard_file_name(spec.experiment, index, tasks)).string();
  };
  std::string header = fmt::format("#!/bin/bash\n#SBATCH --job-name=tqb-{}\n#SBATCH --cpus-per-task={}\n#SBATCH --time={}\n",
                                   spec.experiment, o.cpus_per_task, o.time);
  if (!o.partition.empty()) header += fmt::format("#SBATCH --partition={}\n", o.partition);
  header += fmt::format("#SBATCH --chdir={}\n", cwd.string());
  // Each task is one shard; a requeued task (node failure, preemption, scontrol requeue) reruns the same
  // command, which resumes the shard's file: finished points are kept, the interrupted one reruns.
  std::string array = header + fmt::format("#SBATCH --array=0-{}\n#SBATCH --requeue\n#SBATCH --open-mode=append\n"
                                           "#SBATCH --output={}/shard-%a.log\n", tasks - 1, dir.string());
  if (o.gpus > 0) array += fmt::format("#SBATCH --gres=gpu:{}\n", o.gpus);
  // The shard file holds the task id: double-quoted so that the variable expands (so the path itself may
  // not hold characters double quotes leave active).
  const std::string shard_dir = merged.parent_path().string();
  if (shard_dir.find_first_of("\"$`\\") != std::string::npos)
    throw InputError(fmt::format("{}: the results folder's path may not contain \" $ ` or \\ (it goes into a job script)", shard_dir));
  const std::string shard_word = fmt::format("\"{}\"", shard_file("${SLURM_ARRAY_TASK_ID}"));
  array += fmt::format(
      "set -euo pipefail\nexport OMP_NUM_THREADS=${{SLURM_CPUS_PER_TASK:-{}}}\n"
      "echo \"$(date -u +%FT%TZ) shard ${{SLURM_ARRAY_TASK_ID}}/{} on $(hostname), restart ${{SLURM_RESTART_COUNT:-0}}\"\n"
      "exec {} run {} --shard \"${{SLURM_ARRAY_TASK_ID}}/{}\" -o {}\n",
      o.cpus_per_task, tasks, quoted(binary), quoted(spec_path), tasks, shard_word);
  std::string merge = header + fmt::format("#SBATCH --output={}/merge.log\nset -euo pipefail\nexec {} merge {}", dir.string(),
                                           quoted(binary), quoted(merged.string()));
  for (std::size_t i = 0; i < tasks; ++i) {
    merge += ' ';
    merge += quoted(shard_file(std::to_string(i)));
  }
  merge += "\n";

  if (o.dry_run) {
    out << fmt::format("# {}/array.sbatch ({} points in {} shards)\n{}\n# {}/merge.sbatch (after all shards succeed)\n{}",
                       dir.string(), points, tasks, array, dir.string(), merge);
    return 0;
  }
  fs::create_directories(dir);
  std::ofstream(dir / "array.sbatch") << array;
  std::ofstream(dir / "merge.sbatch") << merge;
  int status = 0;
  const std::string first = run_capture(fmt::format("{} --parsable {}", o.sbatch, quoted((dir / "array.sbatch").string())), status);
  if (status != 0 || first.empty())
    throw RunError(fmt::format("{} refused the array job ({}): {}", o.sbatch, (dir / "array.sbatch").string(), first));
  const std::string array_id = job_id(first);
  const std::string second = run_capture(
      fmt::format("{} --parsable --dependency=afterok:{} {}", o.sbatch, array_id, quoted((dir / "merge.sbatch").string())), status);
  if (status != 0 || second.empty())
    throw RunError(fmt::format("{} refused the merge job ({}): {}; the array job {} is submitted", o.sbatch,
                               (dir / "merge.sbatch").string(), second, array_id));
  out << fmt::format("submitted array job {} ({} shards of {} points) and merge job {} (after all succeed)\n"
                     "shards: {}\nresults: {}\nlogs: {}\n", array_id, tasks, points, job_id(second), shard_file("*"),
                     merged.string(), dir.string());
  return 0;
}

}  // namespace tqb
