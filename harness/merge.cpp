#include "harness/merge.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <map>
#include <set>

#include "common/error.hpp"
#include "common/input_files.hpp"
#include "common/printable.hpp"
#include "harness/output_lock.hpp"
#include "harness/provenance.hpp"
#include "harness/repeat_summary.hpp"
#include "harness/store.hpp"

namespace tqb {
namespace {

std::string attr(const ResultTable& t, const std::string& name) {
  const Cell* c = t.attribute(name);
  return c ? cell_text(*c, true) : std::string();
}

}  // namespace

namespace {

// A count read from a shard's attributes, checked (issue 28): a tampered file gets an error naming it and the field,
// never "internal error: stoul" or a bad_alloc from a count of 10^12.
std::int64_t checked_count(const std::string& path, const char* field, const std::string& text, std::int64_t lo, std::int64_t hi) {
  std::int64_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v < lo || v > hi)
    throw InputError(fmt::format("{}: error: attribute '{}' is '{}'; an integer from {} to {} is valid", path, field, printable(text), lo, hi));
  return v;
}

}  // namespace

int merge_results(const std::string& output, const std::vector<std::string>& shards, const MergeOptions& options, std::ostream& log) {
  if (shards.empty()) throw InputError("merge: give the shard files to merge");
  {
    std::error_code ec;
    if (std::filesystem::exists(output, ec) && !has_hdf5_signature(output))
      throw InputError(fmt::format("{}: error: the output exists and is not a tqbench result file (not HDF5); merge replaces "
                                   "result files only: give another name", output));
  }
  std::vector<ResultTable> tables;
  for (const auto& path : shards) {
    std::error_code ec;
    if (std::filesystem::equivalent(path, output, ec))
      throw InputError(fmt::format("{}: error: the output is also one of the shards", output));
    tables.push_back(read_result_file(path));
  }
  const ResultTable& first = tables.front();
  std::size_t count = 0;
  std::set<std::size_t> indices;
  for (std::size_t i = 0; i < tables.size(); ++i) {
    const ResultTable& t = tables[i];
    const std::string& path = shards[i];
    auto differ = [&](const char* what, const std::string& a, const std::string& b) {
      return InputError(fmt::format("{}: error: {} differs from {}'s ({} against {}); shards of one sweep share it", path,
                                    what, shards.front(), a.substr(0, 80), b.substr(0, 80)));
    };
    if (attr(t, "spec_text") != attr(first, "spec_text")) throw differ("the spec text", "this file's", "that file's");
    if (attr(t, "seed") != attr(first, "seed")) throw differ("the seed", attr(t, "seed"), attr(first, "seed"));
    if (attr(t, "points_total") != attr(first, "points_total"))
      throw differ("the sweep's size", attr(t, "points_total"), attr(first, "points_total"));
    if (!options.allow_mixed_versions && attr(t, "git_commit") != attr(first, "git_commit"))
      throw InputError(fmt::format("{}: error: computed by tqbench {}, {} by {}; pass --allow-mixed-versions to merge "
                                   "them anyway (each row keeps its own git_commit)", path, attr(t, "git_commit"),
                                   shards.front(), attr(first, "git_commit")));
    const std::string shard = attr(t, "shard");
    const auto slash = shard.find('/');
    if (slash == std::string::npos)
      throw InputError(fmt::format("{}: error: not a shard (it has no 'shard' attribute: it was run without --shard)", path));
    const auto n = static_cast<std::size_t>(checked_count(path, "shard (count)", shard.substr(slash + 1), 1, 1 << 20));
    const auto index = static_cast<std::size_t>(checked_count(path, "shard (index)", shard.substr(0, slash), 0, static_cast<std::int64_t>(n) - 1));
    if (i == 0) count = n;
    if (n != count) throw differ("the shard count", std::to_string(n), std::to_string(count));
    if (!indices.insert(index).second) throw InputError(fmt::format("{}: error: shard {} is given twice", path, shard));
    if (t.columns.size() != first.columns.size())
      throw differ("the column set", std::to_string(t.columns.size()), std::to_string(first.columns.size()));
    for (std::size_t j = 0; j < t.columns.size(); ++j)
      if (t.columns[j].name != first.columns[j].name || t.columns[j].type != first.columns[j].type)
        throw differ("a column", t.columns[j].name, first.columns[j].name);
  }

  ResultTable merged;
  merged.columns = first.columns;
  for (const auto& [k, v] : first.attributes)
    if (k != "shard" && k != "host" && k != "command" && k != "last_resumed_utc") merged.attributes.emplace_back(k, v);
  std::vector<std::string> hosts;
  for (const auto& t : tables)
    if (const std::string h = attr(t, "host"); std::find(hosts.begin(), hosts.end(), h) == hosts.end()) hosts.push_back(h);
  merged.attributes.emplace_back("host", fmt::format("{}", fmt::join(hosts, ", ")));
  merged.attributes.emplace_back("command", options.command_line);
  merged.attributes.emplace_back("merged_from", fmt::format("{} shards: {}", tables.size(), fmt::join(shards, ", ")));
  merged.attributes.emplace_back("merged_utc", utc_now());

  const int point = first.column_index("point"), status = first.column_index("status"), key = first.column_index("key");
  if (point < 0 || status < 0 || key < 0 || first.columns[static_cast<std::size_t>(point)].type != ColumnType::integer)
    throw InputError(fmt::format("{}: error: no integer 'point' column, or no 'status' or 'key' column: not a tqbench result file", shards.front()));
  const std::int64_t total = checked_count(shards.front(), "points_total", attr(first, "points_total"), 0, std::int64_t{1} << 32);
  std::map<std::int64_t, std::string> seen;  // point index -> shard file
  std::size_t failed = 0;
  for (std::size_t i = 0; i < tables.size(); ++i)
    for (const auto& row : tables[i].rows) {
      const std::string s = cell_text(row[status], true);
      if (s == "summary") continue;  // shards have none; merge computes them over all repeats
      const std::int64_t p = std::get<std::int64_t>(row[point]);
      if (p < 0 || p >= total)
        throw InputError(fmt::format("{}: error: a row has point {}, outside the sweep's 0 .. {}", shards[i], p, total - 1));
      if (auto [it, fresh] = seen.emplace(p, shards[i]); !fresh)
        throw InputError(fmt::format("{}: error: point {} ({}) is also in {}; shards must not overlap", shards[i], p,
                                     cell_text(row[key], true), it->second));
      failed += s == "failed";
      merged.rows.push_back(row);
    }
  std::stable_sort(merged.rows.begin(), merged.rows.end(),
                   [point](const auto& a, const auto& b) { return std::get<std::int64_t>(a[point]) < std::get<std::int64_t>(b[point]); });
  // Counted, with the first 20 kept: a sweep of 2^32 points with few rows must not hold every missing index.
  std::size_t missing_count = 0;
  std::vector<std::int64_t> missing;
  for (std::int64_t p = 0; p < total; ++p)
    if (!seen.count(p) && ++missing_count <= 20) missing.push_back(p);
  if (checked_count(shards.front(), "repeats", attr(first, "repeats").empty() ? "1" : attr(first, "repeats"), 1, 1000) > 1) {
    std::vector<std::string> metrics;
    for (const auto& c : merged.columns)
      if (c.role == "metric" && c.type == ColumnType::real) metrics.push_back(c.name);
    try {
      update_repeat_summaries(merged, metrics, total);
    } catch (const InputError& e) {  // the shards' columns agree (checked above): the first names them
      throw InputError(fmt::format("{}: error: {}", shards.front(), e.what()));
    }
  }
  {
    const OutputLock lock(output);
    write_result_file(output, merged);
  }
  std::set<std::size_t> absent_shards;
  for (std::size_t i = 0; i < count; ++i)
    if (!indices.count(i)) absent_shards.insert(i);
  log << fmt::format("{}: {} of {} points from {} shards of {}{}{}\n", output, seen.size(), total, tables.size(), count,
                     failed ? fmt::format(", {} failed", failed) : "",
                     absent_shards.empty() ? "" : fmt::format("; shards not given: {}", fmt::join(absent_shards, ", ")));
  if (missing_count > 0) {
    log << fmt::format("missing points ({}): {}{}\n", missing_count, fmt::join(missing, ", "), missing_count > missing.size() ? ", ..." : "");
  }
  return missing_count == 0 && failed == 0 ? 0 : 1;
}

}  // namespace tqb
