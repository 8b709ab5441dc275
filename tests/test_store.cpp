#include <doctest/doctest.h>
#include <hdf5.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "common/error.hpp"
#include "harness/result_journal.hpp"
#include "harness/store.hpp"
#include "test_util.hpp"

using namespace tqb;

namespace {

ResultTable sample_table(std::size_t rows) {
  ResultTable t;
  t.attributes = {{"experiment", std::string("unit")},
                  {"seed", std::int64_t{42}},
                  {"spec_text", std::string("experiment: unit\nnote: ünïcødé ŵ\n")},
                  {"ratio", 0.125}};
  t.columns = {{"point", ColumnType::integer, "point", "index", ""},
               {"quantizer", ColumnType::text, "quantizer", "name", ""},
               {"weight_mse", ColumnType::real, "metric", "mse", "lower"}};
  for (std::size_t i = 0; i < rows; ++i)
    t.rows.push_back({static_cast<std::int64_t>(i), std::string("rtn(bits=") + std::to_string(i) + ",group=row)",
                      i == 1 ? std::nan("") : 1.0 / (i + 1)});
  return t;
}

}  // namespace

TEST_CASE("HDF5 result files round-trip") {
  test::TempDir dir;
  for (std::size_t rows : {0u, 1u, 5u}) {
    CAPTURE(rows);
    const ResultTable t = sample_table(rows);
    const std::string path = dir.file("r" + std::to_string(rows) + ".h5");
    write_result_file(path, t);
    const ResultTable back = read_result_file(path);
    REQUIRE(back.columns.size() == t.columns.size());
    for (std::size_t j = 0; j < t.columns.size(); ++j) {
      CHECK(back.columns[j].name == t.columns[j].name);
      CHECK(back.columns[j].type == t.columns[j].type);
      CHECK(back.columns[j].role == t.columns[j].role);
      CHECK(back.columns[j].description == t.columns[j].description);
      CHECK(back.columns[j].direction == t.columns[j].direction);
    }
    REQUIRE(back.rows.size() == rows);
    for (std::size_t i = 0; i < rows; ++i)
      for (std::size_t j = 0; j < t.columns.size(); ++j) {
        if (i == 1 && j == 2) CHECK(std::isnan(std::get<double>(back.rows[i][j])));
        else CHECK(back.rows[i][j] == t.rows[i][j]);
      }
    CHECK(*back.attribute("spec_text") == *t.attribute("spec_text"));
    CHECK(std::get<std::int64_t>(*back.attribute("seed")) == 42);
    CHECK(std::get<double>(*back.attribute("ratio")) == 0.125);
    // No temporary file is left behind.
    std::size_t files = 0;
    for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir.path)) ++files;
    CHECK(files == (rows == 0 ? 1u : rows == 1 ? 2u : 3u));
  }
}

TEST_CASE("corrupt, truncated and foreign files are rejected with the file named") {
  test::TempDir dir;
  const std::string good = dir.file("good.h5");
  write_result_file(good, sample_table(3));
  const std::string bytes = test::read_text(good);

  auto rejected = [&](const std::string& path) {
    try {
      read_result_file(path);
    } catch (const InputError& e) {
      const std::string msg = e.what();
      CHECK(msg.find(path) != std::string::npos);
      return true;
    }
    return false;
  };
  CHECK(rejected(dir.file("missing.h5")));
  test::write_text(dir.file("text.h5"), "this is not HDF5\n");
  CHECK(rejected(dir.file("text.h5")));
  test::write_text(dir.file("empty.h5"), "");
  CHECK(rejected(dir.file("empty.h5")));
  for (std::size_t cut : {bytes.size() / 2, bytes.size() - 100, std::size_t{600}}) {
    const std::string p = dir.file("cut" + std::to_string(cut) + ".h5");
    test::write_text(p, bytes.substr(0, cut));
    CAPTURE(cut);
    CHECK(rejected(p));
  }
  // An HDF5 file that is not a tqbench result file.
  ResultTable foreign = sample_table(1);
  write_result_file(dir.file("foreign.h5"), foreign);
  {
    // Rewrite the format attribute by writing a table whose attributes override nothing: simulate a
    // foreign file by damaging the format marker's bytes.
    std::string raw = test::read_text(dir.file("foreign.h5"));
    const auto at = raw.find("tqbench-results/1");
    REQUIRE(at != std::string::npos);
    raw.replace(at, 17, "other-results/999");
    test::write_text(dir.file("foreign.h5"), raw);
  }
  CHECK(rejected(dir.file("foreign.h5")));
}

TEST_CASE("a column that declares more rows than the file stores is refused before anything is read") {
  test::TempDir dir;
  const std::string path = dir.file("huge.h5");
  write_result_file(path, sample_table(2));
  {  // Replace 'point' by an unwritten dataset of 2^25 declared rows (256 MiB if read).
    const hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    REQUIRE(f >= 0);
    REQUIRE(H5Ldelete(f, "points/point", H5P_DEFAULT) >= 0);
    const hsize_t dims = hsize_t{1} << 25;
    const hid_t space = H5Screate_simple(1, &dims, nullptr);
    const hid_t d = H5Dcreate2(f, "points/point", H5T_NATIVE_INT64, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    REQUIRE(d >= 0);
    H5Dclose(d);
    H5Sclose(space);
    H5Fclose(f);
  }
  CHECK_THROWS_WITH_AS(read_result_file(path), doctest::Contains("declares 33554432 rows"), InputError);
}

// The journal of finished rows beside a result file (harness/result_journal.hpp).
TEST_CASE("journal: rows appear to readers before a fold, torn tails and corrupt records are ignored, a fold's duplicates kept once") {
  test::TempDir dir;
  const std::string path = dir.file("r.h5");
  ResultTable t;
  t.columns = {{"point", ColumnType::integer, "point", "", ""},
               {"key", ColumnType::text, "point", "", ""},
               {"x", ColumnType::real, "metric", "", "lower"}};
  t.rows.push_back({std::int64_t{0}, std::string("a"), 1.5});
  write_result_file(path, t);
  {
    ResultJournal j(path, t.columns);
    j.append({std::int64_t{1}, std::string("b"), 2.5});
    j.append({std::int64_t{2}, std::string("c"), std::nan("")});
    j.append({std::int64_t{0}, std::string("a"), 1.5});  // as after a fold interrupted before clear(): one copy
  }
  ResultTable r = read_result_file(path);
  REQUIRE(r.rows.size() == 3);
  CHECK(std::get<std::string>(r.rows[1][1]) == "b");
  CHECK(std::isnan(std::get<double>(r.rows[2][2])));
  // A torn last record (a write cut short) is ignored; the rows before it stay.
  const std::string journal = journal_path(path);
  std::filesystem::resize_file(journal, std::filesystem::file_size(journal) - 3);
  CHECK(read_result_file(path).rows.size() == 3);  // the torn record was the duplicate of point 0
  std::filesystem::resize_file(journal, std::filesystem::file_size(journal) - 47);  // the rest of it, and 5 bytes of point 2
  CHECK(read_result_file(path).rows.size() == 2);  // point 2's record torn: points 0 and 1
  // A corrupt byte in a record stops reading there.
  {
    std::fstream f(journal, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-5, std::ios::end);
    f.put('\x7f');
  }
  CHECK(read_result_file(path).rows.size() >= 1);
  // A journal whose columns conflict with the file's belongs to another run.
  {
    std::vector<Column> other = t.columns;
    other[2].type = ColumnType::text;
    ResultJournal j(path, other);
    j.append({std::int64_t{5}, std::string("e"), std::string("text")});
  }
  CHECK_THROWS_WITH_AS(read_result_file(path), doctest::Contains("has another type"), InputError);
  // Forged or damaged journals (issue 28): a header with a column twice or without the point column is refused
  // naming the journal; a row with a text cell in a number column or a point outside the sweep ends the valid
  // prefix there, with a warning naming it.
  {
    std::vector<Column> twice = t.columns;
    twice.push_back(t.columns[0]);
    ResultJournal j(path, twice);
    j.append({std::int64_t{5}, std::string("e"), 5.0, std::int64_t{50}});
  }
  CHECK_THROWS_WITH_AS(read_result_file(path), doctest::Contains("column 'point' appears twice"), InputError);
  {
    ResultJournal j(path, {t.columns[1], t.columns[2]});
    j.append({std::string("e"), 5.0});
  }
  CHECK_THROWS_WITH_AS(read_result_file(path), doctest::Contains("no 'point' column"), InputError);
  {
    std::vector<Column> text_point = t.columns;
    ResultJournal j(path, text_point);
    j.append({std::string("five"), std::string("e"), 5.0});  // a text cell where the header says integer
  }
  CHECK(read_result_file(path).rows.size() == 1);  // the valid prefix (none of the journal's rows), with a warning
  {
    ResultJournal j(path, t.columns);
    j.append({std::int64_t{-5}, std::string("e"), 5.0});
  }
  CHECK(read_result_file(path).rows.size() == 1);
  {
    ResultTable with_total = t;
    with_total.attributes.push_back({"points_total", std::int64_t{3}});
    write_result_file(path, with_total);
    ResultJournal j(path, t.columns);
    j.append({std::int64_t{2}, std::string("c"), 2.0});
    j.append({std::int64_t{3}, std::string("d"), 3.0});
  }
  {
    const ResultTable read = read_result_file(path);  // point 2 kept, point 3 (and anything after it) not
    REQUIRE(read.rows.size() == 2);
    CHECK(std::get<std::int64_t>(read.rows[1][0]) == 2);
  }
  {  // a journal left by a run of another spec
    ResultTable with_spec = t;
    with_spec.attributes.push_back({"spec_text", std::string("experiment: a\n")});
    write_result_file(path, with_spec);
    {
      ResultJournal j(path, t.columns, "experiment: b\n");
      j.append({std::int64_t{1}, std::string("b"), 2.5});
    }
    CHECK_THROWS_WITH_AS(read_result_file(path), doctest::Contains("a run of another spec"), InputError);
    {
      ResultJournal j(path, t.columns, "experiment: a\n");
      j.append({std::int64_t{1}, std::string("b"), 2.5});
    }
    CHECK(read_result_file(path).rows.size() == 2);
  }
  write_result_file(path, t);
  // clear() keeps the header only; remove() deletes the journal.
  ResultJournal j(path, t.columns);
  j.append({std::int64_t{7}, std::string("g"), 7.0});
  CHECK(read_result_file(path).rows.size() == 2);
  j.clear();
  CHECK(read_result_file(path).rows.size() == 1);
  j.remove();
  CHECK(!std::filesystem::exists(journal));
}
