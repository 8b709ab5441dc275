#pragma once
// Names that fit (issue 27): a sweep's canonical names ("model(model=...,corpus=...,ctx=512,...)" runs to 330
// characters) shortened to what varies across the sweep, for progress lines, `run --dry-run` and `show`. The
// result file keeps the full names; these are only for reading.
#include <string>
#include <vector>

namespace tqb {

// names: canonical "family(k=v,...)" names (quantizers, data points; nested values such as
// rotated(quantizer=rtn(...)) are one value). Returns, for each, its family followed by only the k=v whose value
// differs among the names of the same family ("turboquant(bits=2,group=32)"; "model" when nothing varies).
// Names of another form are returned whole.
std::vector<std::string> varying_names(const std::vector<std::string>& names);

struct SweepPoint;  // harness/sweep.hpp

// Each point as "DATA | QUANTIZER" from varying_names over the sweep's data and quantizer names, with
// " | repeat R" when the point repeats and its timing axes when the spec has them. quantizer_first: "QUANTIZER |
// DATA ...", for a progress line cut at the terminal's width (the quantizer is what a reader looks for).
std::vector<std::string> point_labels(const std::vector<SweepPoint>& points, bool quantizer_first = false);

}  // namespace tqb
