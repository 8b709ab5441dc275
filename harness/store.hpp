#pragma once
// HDF5 result files: one file per run, one row per sweep point (results/README.md shows the layout
// and how to read it with h5py).
//
//   /                 attributes: tqbench_format, experiment, spec_text, seed, tqbench_version,
//                     git_commit, compiler, cpu_model, host, start_utc, ...
//   /points/<column>  one 1-D dataset per column (int64, float64 or UTF-8 text), all of equal length;
//                     attributes: role (point|data|quantizer|metric), description, direction (metrics)
//   /points           attribute column_order: the columns in display order
//
// Writes are atomic: the file is written to a temporary name, flushed to disk and renamed over the
// old one, so a process killed at any moment leaves the previous complete file (never a torn one).
#include <cstdint>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace tqb {

inline constexpr const char* kResultFormat = "tqbench-results/1";

enum class ColumnType { integer, real, text };
const char* column_type_name(ColumnType t);  // integer | real | text

struct Column {
  std::string name;
  ColumnType type = ColumnType::real;
  std::string role;         // point | data | quantizer | metric
  std::string description;  // one line
  std::string direction;    // metrics: lower | higher | zero
};

using Cell = std::variant<std::int64_t, double, std::string>;

struct ResultTable {
  std::vector<std::pair<std::string, Cell>> attributes;  // root attributes
  std::vector<Column> columns;
  std::vector<std::vector<Cell>> rows;  // rows[i][j] belongs to columns[j]

  int column_index(const std::string& name) const;  // -1 when absent
  const Cell* attribute(const std::string& name) const;
};

// Missing values: integer columns hold -1, real columns NaN, text columns "".
Cell missing_cell(ColumnType t);

// Atomically replaces `path`. Throws RunError on I/O failure (the old file is left untouched).
void write_result_file(const std::string& path, const ResultTable& table);

// Throws InputError naming the file and what is wrong when it is missing, not HDF5, or not a
// tqbench result file.
ResultTable read_result_file(const std::string& path);

// Text of a cell for tables and CSV (reals with up to 6 significant digits, or full precision).
std::string cell_text(const Cell& c, bool full_precision = false);
// As cell_text, reals with `digits` significant digits (show --digits).
std::string cell_display(const Cell& c, int digits);

}  // namespace tqb
