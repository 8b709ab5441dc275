#pragma once
// `tqbench compare FILE A B`: the paired difference of two model rows (or two points' repeats) of a result file
// over the chunks both scored, and over the seeds their repeats share (eval/paired.hpp): Δ log-perplexity (B − A)
// with its 95% interval and test, the perplexity ratio, ΔKLD, the unpaired interval beside it, and both sides'
// bits per weight, with a warning when they differ by more than `bits_tolerance` (a comparison at matched bits).
// A and B name rows by point number (one row), by quantizer (every finished repeat of it), or `baseline` (the
// unquantized model on the same chunks, from B's or A's rows). Throws InputError for rows that are missing,
// ambiguous, not model rows, or not on the same chunks.
#include <ostream>
#include <string>
#include <vector>

namespace tqb {

struct CompareOptions {
  double bits_tolerance = 0.05;  // bits per weight the two sides may differ by before the comparison is flagged
};

void compare_rows(const std::string& file, const std::string& a, const std::string& b, const CompareOptions& options, std::ostream& out);

// `tqbench compare A.json B.json`: the same paired difference between two `tqbench perplexity --chunk-nll` files (two
// runs on different model files, e.g. a peer's quantized GGUF against tqbench's, scored on the same chunks). Throws
// InputError for a file that is not one, or two runs not on the same chunks.
void compare_chunk_files(const std::string& a, const std::string& b, const CompareOptions& options, std::ostream& out);

// `tqbench compare A.h5 B.h5 ...`: one table across result files of the same sweep (other runs, machines, commits or
// shards): per data point and quantizer, `metric` with its 95% interval in each file (summary rows where a file has
// them), and each later file's difference from the first. metric empty: delta_ppl, perplexity or weight_nmse,
// whichever the first file has. Throws InputError for a file that is not a result file or lacks the metric.
void compare_files(const std::vector<std::string>& files, const std::string& metric, std::ostream& out);

}  // namespace tqb
