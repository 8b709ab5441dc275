#include "harness/table.hpp"
#include "common/printable.hpp"
#include "harness/short_names.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <cmath>
#include <ostream>

namespace tqb {

std::vector<std::string> default_show_columns(const ResultTable& t) {
  std::vector<std::string> out;
  const int data = t.column_index("data");
  const bool one_data = data >= 0 && std::all_of(t.rows.begin(), t.rows.end(), [&](const auto& r) {
    return cell_text(r[data], true) == cell_text(t.rows.front()[data], true);
  });
  for (const auto& c : t.columns) {
    const bool identity = c.name == "point" || (c.name == "data" && !one_data) || c.name == "quantizer";
    if (identity || c.role == "metric") out.push_back(c.name);
  }
  // Show the status only when something failed.
  const int s = t.column_index("status");
  if (s >= 0 && std::any_of(t.rows.begin(), t.rows.end(), [s](const auto& r) { return cell_text(r[s]) == "failed"; })) {
    out.push_back("status");
    out.push_back("error");
  }
  return out;
}

ResultTable summary_view(const ResultTable& t, int digits) {
  const int status = t.column_index("status");
  if (status < 0) return t;
  const bool repeated = std::any_of(t.rows.begin(), t.rows.end(), [&](const auto& r) { return cell_text(r[status], true) == "summary"; });
  ResultTable v;
  v.attributes = t.attributes;
  v.columns = t.columns;
  std::vector<std::pair<int, int>> intervals;  // metric column, its _ci95 column
  for (std::size_t j = 0; j < t.columns.size(); ++j)
    if (t.columns[j].role == "metric")
      if (const int c = t.column_index(t.columns[j].name + "_ci95"); c >= 0) {
        intervals.emplace_back(static_cast<int>(j), c);
        v.columns[j].type = ColumnType::text;
      }
  if (intervals.empty() && !repeated) return t;
  for (const auto& r : t.rows) {
    const std::string s = cell_text(r[status], true);
    if (repeated && s == "ok") continue;  // the repeats: `show --all` lists them
    std::vector<Cell> row = r;
    for (const auto& [m, c] : intervals) {
      const double half = std::get<double>(r[c]);
      row[m] = std::isfinite(half) ? fmt::format("{} ± {}", cell_display(r[m], digits), cell_display(r[c], digits)) : cell_display(r[m], digits);
    }
    v.rows.push_back(std::move(row));
  }
  return v;
}

ResultTable short_name_view(const ResultTable& t, const ResultTable& context) {
  ResultTable v = t;
  for (const char* name : {"data", "quantizer"}) {
    const int j = v.column_index(name), jc = context.column_index(name);
    if (j < 0 || jc < 0 || v.columns[static_cast<std::size_t>(j)].type != ColumnType::text) continue;
    // Shortened over the context's names (the rows shown among them), each row then looked up by its full name.
    std::vector<std::string> full;
    for (const auto& r : context.rows) full.push_back(cell_text(r[jc], true));
    const std::vector<std::string> shortened = varying_names(full);
    std::map<std::string, std::string> by_full;
    for (std::size_t i = 0; i < full.size(); ++i) by_full.emplace(full[i], shortened[i]);
    for (auto& r : v.rows)
      if (const auto it = by_full.find(cell_text(r[j], true)); it != by_full.end()) r[j] = it->second;
  }
  return v;
}

void print_table(const ResultTable& t, const std::vector<std::string>& columns, std::ostream& out, int digits) {
  std::vector<int> idx;
  for (const auto& name : columns) idx.push_back(t.column_index(name));
  std::vector<std::vector<std::string>> cells(t.rows.size());
  std::vector<std::size_t> width;
  for (const auto& name : columns) width.push_back(name.size());
  for (std::size_t i = 0; i < t.rows.size(); ++i)
    for (std::size_t j = 0; j < idx.size(); ++j) {
      cells[i].push_back(idx[j] >= 0 ? printable(cell_display(t.rows[i][idx[j]], digits)) : "");
      width[j] = std::max(width[j], cells[i][j].size());
    }
  auto numeric = [&](std::size_t j) { return idx[j] >= 0 && t.columns[idx[j]].type != ColumnType::text; };
  auto line = [&](auto get) {
    std::string s;
    for (std::size_t j = 0; j < idx.size(); ++j) {
      if (j) s += "  ";
      const std::string v = get(j);
      s += numeric(j) ? fmt::format("{:>{}}", v, width[j]) : fmt::format("{:<{}}", v, width[j]);
    }
    while (!s.empty() && s.back() == ' ') s.pop_back();
    out << s << '\n';
  };
  line([&](std::size_t j) { return columns[j]; });
  for (const auto& r : cells) line([&](std::size_t j) { return r[j]; });
}

static std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) {
    if (c == '"') q += '"';
    q += c;
  }
  return q + "\"";
}

void print_markdown(const ResultTable& t, const std::vector<std::string>& columns, std::ostream& out, int digits) {
  auto escape = [](std::string v) {
    for (std::size_t i = 0; (i = v.find('|', i)) != std::string::npos; i += 2) v.replace(i, 1, "\\|");
    return v;
  };
  out << '|';
  for (const auto& c : columns) out << ' ' << escape(c) << " |";
  out << "\n|";
  for (std::size_t j = 0; j < columns.size(); ++j) out << "---|";
  out << '\n';
  for (const auto& row : t.rows) {
    out << '|';
    for (const auto& c : columns) {
      const int k = t.column_index(c);
      out << ' ' << (k >= 0 ? escape(printable(cell_display(row[k], digits))) : "") << " |";
    }
    out << '\n';
  }
}

void print_csv(const ResultTable& t, const std::vector<std::string>& columns, std::ostream& out) {
  for (std::size_t j = 0; j < columns.size(); ++j) out << (j ? "," : "") << csv_field(columns[j]);
  out << '\n';
  for (const auto& row : t.rows) {
    for (std::size_t j = 0; j < columns.size(); ++j) {
      const int k = t.column_index(columns[j]);
      out << (j ? "," : "") << (k >= 0 ? csv_field(printable(cell_text(row[k], true))) : "");
    }
    out << '\n';
  }
}

}  // namespace tqb
