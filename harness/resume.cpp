#include "harness/resume.hpp"

#include <fmt/format.h>

#include <signal.h>

#include <cerrno>
#include <filesystem>

#include "common/error.hpp"
#include "harness/provenance.hpp"
#include "kernels/cuda/gpu.hpp"

namespace tqb {

StartingTable start_result_table(const std::string& path, bool exists, ExistingFile existing, const ExperimentSpec& spec,
                                 const std::vector<SweepPoint>& points, const std::vector<Column>& columns,
                                 const Shard& shard, const std::string& command_line) {
  StartingTable t;
  t.table.columns = columns;
  if (exists && existing != ExistingFile::overwrite) {
    ResultTable old = read_result_file(path);
    const Cell* old_spec = old.attribute("spec_text");
    if (!old_spec || std::get_if<std::string>(old_spec) == nullptr || std::get<std::string>(*old_spec) != spec.text)
      throw InputError(fmt::format(
          "{}: error: this result file was written from a different spec than {}; pass --force to overwrite it "
          "or -o FILE to write elsewhere", path, spec.path));
    const Cell* old_shard = old.attribute("shard");
    const std::string was = old_shard ? cell_text(*old_shard, true) : std::string();
    if (was != (shard.active() ? shard.text() : std::string()))
      throw InputError(fmt::format("{}: error: this result file holds {}, not {}; pass --force to overwrite it or -o FILE "
                                   "to write elsewhere", path, was.empty() ? "a whole sweep" : "shard " + was,
                                   shard.active() ? "shard " + shard.text() : "the whole sweep"));
    t.table.attributes = old.attributes;
    std::erase_if(t.table.attributes, [](const auto& kv) { return kv.first == "last_resumed_utc"; });
    t.table.attributes.emplace_back("last_resumed_utc", utc_now());
    // Keep the finished rows of points still in the sweep, mapped onto the current columns.
    std::set<std::string> keys;
    for (const auto& p : points) keys.insert(p.key);
    const int key_col = old.column_index("key"), status_col = old.column_index("status");
    if (key_col < 0 || status_col < 0) throw InputError(fmt::format("{}: error: result file has no key/status columns", path));
    // A column this run writes must hold the same type in the old file (an edited file whose `point`
    // column became text would otherwise break the merge).
    for (const auto& c : columns) {
      const int j = old.column_index(c.name);
      if (j >= 0 && old.columns[j].type != c.type)
        throw InputError(fmt::format("{}: error: column '{}' holds {} values, but this run writes {}; the file was "
                                     "changed outside tqbench (pass --force to overwrite it)", path, c.name,
                                     column_type_name(old.columns[j].type), column_type_name(c.type)));
    }
    for (const auto& row : old.rows) {
      const std::string key = cell_text(row[key_col], true);
      if (cell_text(row[status_col], true) != "ok" || !keys.count(key) || t.done.count(key)) continue;
      std::vector<Cell> mapped;
      for (const auto& c : columns) {
        const int j = old.column_index(c.name);
        mapped.push_back(j >= 0 ? row[j] : missing_cell(c.type));
      }
      t.table.rows.push_back(std::move(mapped));
      t.done.insert(key);
    }
  } else {
    const Provenance& prov = provenance();
    t.table.attributes = {
        {"experiment", spec.experiment},
        {"description", spec.description},
        {"spec_path", spec.path},
        {"spec_text", spec.text},
        {"seed", static_cast<std::int64_t>(spec.seed)},
        {"repeats", spec.repeats},
        {"queries", spec.queries},
        {"timing_device", spec.timing.device},
        {"timing_kernel", spec.timing.kernel},
        {"timing_batch", spec.timing.batch},
        {"timing_repetitions", spec.timing.repetitions},
        {"points_total", static_cast<std::int64_t>(points.size())},
        {"shard", shard.active() ? shard.text() : std::string()},
        {"tqbench_version", prov.tqbench_version},
        {"git_commit", prov.git_commit},
        {"compiler", prov.compiler},
        {"build_type", prov.build_type},
        {"cpu_model", prov.cpu_model},
        {"dense_blas", prov.dense_blas},
        {"host", prov.host},
        {"os", prov.os},
        // The GPU that timing.device cuda ran on (asked only then: initialising CUDA costs time).
        {"gpu", spec.timing.device == "cuda" ? gpu::device_description() : std::string()},
        {"start_utc", utc_now()},
        {"command", command_line},
    };
  }

  return t;
}

void remove_stale_temporaries(const std::string& path) {
  const std::filesystem::path p(path);
  const std::filesystem::path dir = p.parent_path().empty() ? std::filesystem::path(".") : p.parent_path();
  const std::string prefix = p.filename().string() + ".tmp.";
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    const std::string pid = name.substr(prefix.size());
    if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) continue;
    if (::kill(static_cast<pid_t>(std::stol(pid)), 0) != 0 && errno == ESRCH) std::filesystem::remove(e.path(), ec);
  }
}

}  // namespace tqb
