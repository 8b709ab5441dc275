#pragma once
// A result row, column by column: each column with its description and the function that fills its cell
// from a finished point, in one table (the columns a sweep writes are exactly this table's).
#include <functional>
#include <vector>

#include "harness/evaluator.hpp"
#include "harness/spec.hpp"
#include "harness/store.hpp"
#include "harness/sweep.hpp"

namespace tqb {

// Everything a row is made from.
struct FinishedPoint {
  const SweepPoint& point;
  const PointOutcome& outcome;
  double seconds = 0;       // wall time of the point
  bool peak_reset = false;  // whether the resident high-water mark was reset at its start
};

struct RowField {
  Column column;
  std::function<Cell(const FinishedPoint&)> cell;
};

// Point bookkeeping, data and quantizer parameters (every family's and source's in the sweep), the spec's
// metrics, repeat columns (repeats > 1), the evaluator's own columns, then provenance.
std::vector<RowField> result_fields(const ExperimentSpec& spec, const std::vector<SweepPoint>& points,
                                    const Evaluator& evaluator);
std::vector<Column> columns_of(const std::vector<RowField>& fields);
std::vector<Cell> make_row(const std::vector<RowField>& fields, const FinishedPoint& finished);

}  // namespace tqb
