#include "harness/result_row.hpp"

#include <fmt/format.h>

#include <map>
#include <set>

#include "common/memory.hpp"
#include "harness/data_source.hpp"
#include "harness/metrics.hpp"
#include "harness/provenance.hpp"
#include "harness/repeat_summary.hpp"
#include "quantizers/registry.hpp"

namespace tqb {
namespace {

ColumnType column_type(ParamSpec::Kind k) {
  switch (k) {
    case ParamSpec::Kind::integer: return ColumnType::integer;
    case ParamSpec::Kind::real: return ColumnType::real;
    default: return ColumnType::text;
  }
}

Cell param_cell(const ParamValue& v, ColumnType t) {
  if (t == ColumnType::text) {
    if (const auto* s = std::get_if<std::string>(&v)) return *s;
    if (const auto* i = std::get_if<std::int64_t>(&v)) return fmt::format("{}", *i);
    return fmt::format("{}", std::get<double>(v));
  }
  if (const auto* i = std::get_if<std::int64_t>(&v)) return t == ColumnType::real ? Cell{static_cast<double>(*i)} : Cell{*i};
  if (const auto* d = std::get_if<double>(&v)) return *d;
  return missing_cell(t);
}

// Adds a parameter column, widening to text when two families declare it with different kinds.
void add_param_column(std::vector<Column>& cols, std::map<std::string, std::size_t>& index, const std::string& name,
                      const ParamSpec& spec, const std::string& role) {
  const ColumnType t = column_type(spec.kind);
  std::string desc = spec.description;
  if (!spec.aliases.empty()) {
    desc += " (";
    for (std::size_t i = 0; i < spec.aliases.size(); ++i)
      desc += fmt::format("{}{} = {}", i ? ", " : "", spec.aliases[i].second, spec.aliases[i].first);
    desc += ")";
  }
  auto it = index.find(name);
  if (it == index.end()) {
    index[name] = cols.size();
    cols.push_back({name, t, role, desc, ""});
  } else if (cols[it->second].type != t) {
    cols[it->second].type = ColumnType::text;
  }
}

Cell param_of(const Params& params, const std::string& key, ColumnType t) {
  auto it = params.find(key);
  return it != params.end() ? param_cell(it->second, t) : missing_cell(t);
}

}  // namespace

std::vector<RowField> result_fields(const ExperimentSpec& spec, const std::vector<SweepPoint>& points,
                                    const Evaluator& evaluator) {
  using F = const FinishedPoint&;
  std::vector<RowField> out{
      {{"point", ColumnType::integer, "point", "index of the point in the expanded sweep", ""},
       [](F f) -> Cell { return static_cast<std::int64_t>(f.point.index); }},
      {{"key", ColumnType::text, "point", "canonical identity of the point: data | quantizer", ""},
       [](F f) -> Cell { return f.point.key; }},
      {{"status", ColumnType::text, "point", "ok or failed", ""},
       [](F f) -> Cell { return std::string(f.outcome.ok ? "ok" : "failed"); }},
      {{"error", ColumnType::text, "point", "why the point failed (empty when ok)", ""}, [](F f) -> Cell { return f.outcome.error; }},
      {{"data", ColumnType::text, "data", "canonical name of the data", ""}, [](F f) -> Cell { return f.point.data->name; }},
      {{"quantizer", ColumnType::text, "quantizer", "canonical one-line name of the quantizer", ""},
       [](F f) -> Cell { return f.point.quantizer->name(); }},
      {{"family", ColumnType::text, "quantizer", "quantizer family", ""}, [](F f) -> Cell { return f.point.quantizer->family(); }},
  };
  // Parameter columns: every source's and family's in the sweep, typed once all are known.
  std::vector<Column> params;
  std::map<std::string, std::size_t> index;
  std::set<std::string> seen_sources, seen_families;
  for (const auto& p : points)
    if (seen_sources.insert(p.data->source).second)
      for (const auto& s : find_data_source(p.data->source)->schema.specs()) add_param_column(params, index, "data." + s.name, s, "data");
  for (const auto& p : points)
    if (seen_families.insert(p.quantizer->family()).second)
      for (const auto& s : find_quantizer_family(p.quantizer->family())->schema.specs())
        add_param_column(params, index, "q." + s.name, s, "quantizer");
  for (const auto& c : params) {
    const std::string key = c.name.substr(c.role == "data" ? 5 : 2);
    const ColumnType t = c.type;
    if (c.role == "data")
      out.push_back({c, [key, t](F f) { return param_of(f.point.data->params, key, t); }});
    else
      out.push_back({c, [key, t](F f) { return param_of(f.point.quantizer->params(), key, t); }});
  }
  if (timing_axes(spec)) {
    out.push_back({{"timing.kernel", ColumnType::text, "evaluation", "kernel the latency metrics timed (spec timing.kernel)", ""},
                   [](F f) -> Cell { return f.point.timing_kernel; }});
    out.push_back({{"timing.batch", ColumnType::integer, "evaluation", "rows of X the latency metrics timed (spec timing.batch)", ""},
                   [](F f) -> Cell { return f.point.timing_batch; }});
  }
  for (const auto& m : spec.metrics) {
    const Metric* metric = find_metric(m);
    out.push_back({{m, ColumnType::real, "metric", metric->description, to_string(metric->direction)}, [m](F f) -> Cell {
                     auto it = f.outcome.metrics.find(m);
                     return it != f.outcome.metrics.end() ? Cell{it->second} : missing_cell(ColumnType::real);
                   }});
  }
  // repeat and n_repeats; the intervals an evaluator computed for the row (a model row's over its chunks); the
  // others are filled in summary rows only.
  for (auto& c : repeat_columns(spec.metrics, spec.repeats > 1)) {
    const ColumnType t = c.type;
    const std::string name = c.name;
    if (name == "repeat") out.push_back({c, [](F f) -> Cell { return static_cast<std::int64_t>(f.point.repeat); }});
    else if (name == "n_repeats") out.push_back({c, [](F f) -> Cell { return static_cast<std::int64_t>(f.point.repeats); }});
    else
      out.push_back({c, [name, t](F f) -> Cell {
                       auto it = f.outcome.metrics.find(name);
                       return it != f.outcome.metrics.end() ? Cell{it->second} : missing_cell(t);
                     }});
  }
  for (auto& c : evaluator.columns()) {
    const std::string name = c.name;
    out.push_back({c, [name](F f) -> Cell {
                     auto it = f.outcome.text.find(name);
                     return it != f.outcome.text.end() ? it->second : std::string();
                   }});
  }
  const std::vector<RowField> tail{
      {{"seed", ColumnType::integer, "point", "seed of the quantizer's randomness, derived from the spec seed and key", ""},
       [](F f) -> Cell { return static_cast<std::int64_t>(f.point.seed); }},
      {{"data_seed", ColumnType::integer, "point", "seed of the data, derived from the spec seed and data name", ""},
       [](F f) -> Cell { return static_cast<std::int64_t>(f.point.data->seed); }},
      {{"elapsed_s", ColumnType::real, "point", "wall time of the point (quantize, dequantize, metrics), seconds", ""},
       [](F f) -> Cell { return f.seconds; }},
      {{"peak_rss_bytes", ColumnType::integer, "point",
        "resident-memory high-water mark during the point (reset per point through /proc/self/clear_refs; "
        "includes what the process keeps across points: data, a loaded model, baseline log-probabilities)", ""},
       [](F f) -> Cell { return f.peak_reset ? static_cast<std::int64_t>(peak_rss_bytes()) : std::int64_t{-1}; }},
      {{"finished_utc", ColumnType::text, "point", "when the point finished", ""}, [](F) -> Cell { return utc_now(); }},
      {{"git_commit", ColumnType::text, "point", "tqbench commit that computed the point", ""},
       [](F) -> Cell { return provenance().git_commit; }},
      {{"host", ColumnType::text, "point", "machine that computed the point", ""}, [](F) -> Cell { return provenance().host; }},
  };
  out.insert(out.end(), tail.begin(), tail.end());
  return out;
}

std::vector<Column> columns_of(const std::vector<RowField>& fields) {
  std::vector<Column> out;
  for (const auto& f : fields) out.push_back(f.column);
  return out;
}

std::vector<Cell> make_row(const std::vector<RowField>& fields, const FinishedPoint& finished) {
  std::vector<Cell> row;
  row.reserve(fields.size());
  for (const auto& f : fields) row.push_back(f.cell(finished));
  return row;
}

}  // namespace tqb
