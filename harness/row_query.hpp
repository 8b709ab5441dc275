#pragma once
// Choosing and ordering a result file's rows for `show` (issue 27): `--where COLUMN OP VALUE` and `--sort COLUMN`.
// OP is one of = != < <= > >= and ~ (contains); numbers compare as numbers in numeric columns, text as text (= != ~
// only). A missing value (NaN, -1 in integer columns, "") matches only !=. plots/tqb_results.py reads the same
// syntax for the plot scripts' --where.
#include <string>
#include <vector>

#include "harness/store.hpp"

namespace tqb {

// The rows of `t` that satisfy every condition. Throws InputError naming the condition for a bad one (no
// operator, an unknown column with the valid ones, a number expected, an order on text).
ResultTable where_rows(const ResultTable& t, const std::vector<std::string>& conditions);

// Rows ordered by `column` (ascending; "-column": descending), stable, missing values last. InputError for an
// unknown column.
ResultTable sort_rows(const ResultTable& t, const std::string& column);

}  // namespace tqb
