// libFuzzer target, structure-aware (generators.hpp): two real shard files of one sweep (`run --shard I/2`), tampered
// with and merged as `tqbench merge` merges them. The input decides the changes to each shard: an attribute (shard,
// points_total, repeats, seed, spec_text, git_commit, ...) set to a hostile value of any type or removed; a row's
// point or another cell set to a hostile value; a row dropped, doubled or moved to the other shard; a column retyped
// or dropped. Findings: anything but a merged file or an InputError.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <sstream>

#include "fuzz_input.hpp"
#include "generators.hpp"
#include "harness/merge.hpp"
#include "result_fixture.hpp"

namespace {

const std::vector<tqb::ResultTable>& shards() {
  static const std::vector<tqb::ResultTable> s = [] {
    std::vector<tqb::ResultTable> out;
    for (std::size_t i = 0; i < 2; ++i) {
      const std::string path = (tqb::fuzz::scratch_dir() / ("fixture-" + std::to_string(i) + ".h5")).string();
      tqb::fuzz::run_fixture(path, tqb::Shard{i, 2});
      out.push_back(tqb::read_result_file(path));
    }
    return out;
  }();
  return s;
}

void set_attribute(tqb::ResultTable& t, const std::string& name, const tqb::Cell& value) {
  for (auto& [k, v] : t.attributes)
    if (k == name) {
      v = value;
      return;
    }
  t.attributes.emplace_back(name, value);
}

bool same_columns(const tqb::ResultTable& a, const tqb::ResultTable& b) {
  if (a.columns.size() != b.columns.size()) return false;
  for (std::size_t j = 0; j < a.columns.size(); ++j)
    if (a.columns[j].name != b.columns[j].name || a.columns[j].type != b.columns[j].type) return false;
  return true;
}

void tamper(FuzzedDataProvider& in, tqb::ResultTable& t, tqb::ResultTable& other) {
  static const char* names[] = {"shard", "points_total", "repeats", "seed", "spec_text", "git_commit", "experiment",
                                "host", "tqbench_version"};
  const int point = t.column_index("point");
  switch (in.ConsumeIntegralInRange(0, 9)) {
    case 0:
    case 1:
    case 2: {  // an attribute set to a hostile value, mostly as text (how tqbench writes them)
      const std::string name = names[in.ConsumeIntegralInRange<std::size_t>(0, std::size(names) - 1)];
      set_attribute(t, name, tqb::fuzz::hostile_cell(in, tqb::ColumnType::text, in.ConsumeIntegralInRange(0, 3) == 0));
      break;
    }
    case 3:  // an attribute removed
      if (!t.attributes.empty()) t.attributes.erase(t.attributes.begin() + in.ConsumeIntegralInRange<long>(0, t.attributes.size() - 1));
      break;
    case 4:
    case 5:  // a row's point, or any cell, hostile (of its column's type: a file stores one type per column)
      if (!t.rows.empty()) {
        auto& row = t.rows[in.ConsumeIntegralInRange<std::size_t>(0, t.rows.size() - 1)];
        const std::size_t j = point >= 0 && in.ConsumeBool() ? static_cast<std::size_t>(point)
                                                             : in.ConsumeIntegralInRange<std::size_t>(0, row.size() - 1);
        row[j] = tqb::fuzz::hostile_cell(in, t.columns[j].type);
      }
      break;
    case 6:  // a row dropped or doubled
      if (!t.rows.empty()) {
        const std::size_t r = in.ConsumeIntegralInRange<std::size_t>(0, t.rows.size() - 1);
        if (in.ConsumeBool()) t.rows.push_back(t.rows[r]);
        else t.rows.erase(t.rows.begin() + static_cast<long>(r));
      }
      break;
    case 7:  // a row moved to the other shard (same columns)
      if (!t.rows.empty() && same_columns(t, other)) {
        const std::size_t r = in.ConsumeIntegralInRange<std::size_t>(0, t.rows.size() - 1);
        other.rows.push_back(t.rows[r]);
        t.rows.erase(t.rows.begin() + static_cast<long>(r));
      }
      break;
    case 8: {  // a column retyped: every cell of it converted
      const std::size_t j = in.ConsumeIntegralInRange<std::size_t>(0, t.columns.size() - 1);
      const auto type = static_cast<tqb::ColumnType>(in.ConsumeIntegralInRange(0, 2));
      t.columns[j].type = type;
      for (auto& row : t.rows) row[j] = tqb::fuzz::hostile_cell(in, type);
      break;
    }
    case 9:  // a column dropped
      if (t.columns.size() > 1) {
        const std::size_t j = in.ConsumeIntegralInRange<std::size_t>(0, t.columns.size() - 1);
        t.columns.erase(t.columns.begin() + static_cast<long>(j));
        for (auto& row : t.rows) row.erase(row.begin() + static_cast<long>(j));
      }
      break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  std::vector<tqb::ResultTable> t = shards();
  const int changes = in.ConsumeIntegralInRange(0, 6);
  for (int i = 0; i < changes; ++i) {
    const std::size_t s = in.ConsumeIntegralInRange<std::size_t>(0, 1);
    tamper(in, t[s], t[1 - s]);
  }
  const auto& dir = tqb::fuzz::scratch_dir();
  std::vector<std::string> paths;
  try {
    for (std::size_t s = 0; s < 2; ++s) {
      paths.push_back((dir / ("shard-" + std::to_string(s) + ".h5")).string());
      tqb::write_result_file(paths.back(), t[s]);
    }
  } catch (const tqb::RunError&) {
    return 0;  // a table the writer refuses (the generator's, not an input): nothing to merge
  }
  if (in.ConsumeIntegralInRange(0, 7) == 0) paths.push_back(paths[in.ConsumeIntegralInRange<std::size_t>(0, 1)]);  // given twice
  const std::string out = (dir / "merged.h5").string();
  std::filesystem::remove(out);
  tqb::fuzz::expect_clean([&] {
    std::ostringstream log;
    tqb::merge_results(out, paths, {}, log);
    (void)tqb::read_result_file(out);  // what merge wrote reads back
  });
  return 0;
}
