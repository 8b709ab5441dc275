#pragma once
// `tqbench compare FILE A B`: the paired difference of two model rows of a result file over the chunks both
// scored (eval/paired.hpp): Δ log-perplexity (B − A) with its paired 95% interval and test, the perplexity
// ratio, ΔKLD, and the unpaired interval beside it. A and B name a row by its point number or by its quantizer
// (one row). Throws InputError for rows that are missing, ambiguous, not model rows, or not on the same chunks.
#include <ostream>
#include <string>

namespace tqb {

void compare_rows(const std::string& file, const std::string& a, const std::string& b, std::ostream& out);

}  // namespace tqb
