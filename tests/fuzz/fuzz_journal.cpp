// libFuzzer target, structure-aware (generators.hpp): a forged journal beside a real result file, read the way
// `tqbench show` and a resume read it. The input decides each record: a header (the file's columns, one twice,
// one missing, retyped or renamed; this spec's hash or another's) or a row (the file's cells with some replaced by
// hostile values of any type, a cell more or fewer); then payload bytes tampered with under a valid checksum, and
// the framing (magic, length, checksum) forged or cut. Findings: anything but rows read or an InputError.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "fuzz_input.hpp"
#include "generators.hpp"
#include "harness/result_journal.hpp"
#include "harness/resume.hpp"
#include "harness/table.hpp"
#include "result_fixture.hpp"

namespace {

struct Fixture {
  std::string path;
  tqb::ResultTable table;
  tqb::ExperimentSpec spec;
  std::vector<tqb::SweepPoint> points;
};

const Fixture& fixture() {
  static const Fixture f = [] {
    Fixture x;
    x.path = (tqb::fuzz::scratch_dir() / "journal.h5").string();
    tqb::fuzz::run_fixture(x.path);
    x.table = tqb::read_result_file(x.path);
    x.spec = tqb::fuzz::fixture_spec();
    x.points = tqb::expand_sweep(x.spec, 100);
    return x;
  }();
  return f;
}

std::string forged_header(FuzzedDataProvider& in, const Fixture& f) {
  std::vector<tqb::Column> cols = f.table.columns;
  const int changes = in.ConsumeIntegralInRange(0, 3);
  for (int i = 0; i < changes && !cols.empty(); ++i) {
    const std::size_t j = in.ConsumeIntegralInRange<std::size_t>(0, cols.size() - 1);
    switch (in.ConsumeIntegralInRange(0, 4)) {
      case 0: cols.push_back(cols[j]); break;  // a column twice
      case 1: cols.erase(cols.begin() + static_cast<long>(j)); break;
      case 2: cols[j].type = static_cast<tqb::ColumnType>(in.ConsumeIntegralInRange(0, 255)); break;
      case 3: cols[j].name = tqb::fuzz::hostile_text(in); break;
      case 4: std::swap(cols[j], cols[in.ConsumeIntegralInRange<std::size_t>(0, cols.size() - 1)]); break;
    }
  }
  const tqb::Cell* spec_text = f.table.attribute("spec_text");
  const std::string spec = in.ConsumeBool() && spec_text ? std::get<std::string>(*spec_text) : tqb::fuzz::hostile_text(in);
  return tqb::journal_header_payload(cols, spec);
}

std::string forged_row(FuzzedDataProvider& in, const Fixture& f) {
  std::vector<tqb::Cell> row;
  if (!f.table.rows.empty()) row = f.table.rows[in.ConsumeIntegralInRange<std::size_t>(0, f.table.rows.size() - 1)];
  const int changes = in.ConsumeIntegralInRange(0, 3);
  for (int i = 0; i < changes; ++i) {
    const int what = in.ConsumeIntegralInRange(0, 5);
    if (what == 4) {
      row.push_back(tqb::fuzz::hostile_cell(in, tqb::ColumnType::integer, true));
    } else if (what == 5 && !row.empty()) {
      row.pop_back();
    } else if (!row.empty()) {
      // Mostly the point column (its range and uniqueness are what a resume trusts), else any cell.
      const int point = f.table.column_index("point");
      const std::size_t j = what < 2 && point >= 0 ? static_cast<std::size_t>(point)
                                                   : in.ConsumeIntegralInRange<std::size_t>(0, row.size() - 1);
      row[j] = tqb::fuzz::hostile_cell(in, f.table.columns[std::min(j, f.table.columns.size() - 1)].type, what == 3);
    }
  }
  return tqb::journal_row_payload(row);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const Fixture& f = fixture();
  FuzzedDataProvider in(data, size);
  std::string journal;
  const int records = in.ConsumeIntegralInRange(0, 12);
  for (int i = 0; i < records; ++i) {
    std::string payload = i == 0 || in.ConsumeIntegralInRange(0, 7) == 0 ? forged_header(in, f) : forged_row(in, f);
    if (in.ConsumeIntegralInRange(0, 5) == 0) tqb::fuzz::tamper_bytes(in, payload);  // under a valid checksum
    std::string record = tqb::journal_record(payload);
    if (in.ConsumeIntegralInRange(0, 9) == 0) {  // the framing itself: magic, length or checksum forged
      std::string frame = record.substr(0, 16);
      tqb::fuzz::tamper_bytes(in, frame);
      record.replace(0, 16, frame);
    }
    if (in.ConsumeIntegralInRange(0, 15) == 0) record.resize(in.ConsumeIntegralInRange<std::size_t>(0, record.size()));  // torn
    journal += record;
  }
  std::ofstream(tqb::journal_path(f.path), std::ios::binary | std::ios::trunc) << journal;
  // Every input: the journal read onto the file's rows (what read_result_file does after reading the HDF5 file) and
  // shown. One in 16 also through read_result_file and a resume, which read the HDF5 file again: 7 ms under ASan.
  const bool whole = in.ConsumeIntegralInRange(0, 15) == 15;  // not 0: an input that runs out of bytes reads 0s
  tqb::fuzz::expect_clean([&] {  // show
    tqb::ResultTable t = f.table;
    if (whole) t = tqb::read_result_file(f.path);
    else tqb::add_journal_rows(f.path, t);
    const tqb::ResultTable view = tqb::short_name_view(tqb::summary_view(t), t);
    std::ostringstream out;
    tqb::print_table(view, tqb::default_show_columns(view), out);
    std::vector<std::string> all;
    for (const auto& c : t.columns) all.push_back(c.name);
    tqb::print_csv(t, all, out);
  });
  if (whole)
    tqb::fuzz::expect_clean([&] {  // resume: which points are done
      (void)tqb::start_result_table(f.path, true, tqb::ExistingFile::resume, f.spec, f.points, f.table.columns, {}, "fuzz");
    });
  return 0;
}
