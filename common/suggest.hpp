#pragma once
// "Did you mean ...?" for misspelled keys and names.
#include <string>
#include <string_view>
#include <vector>

namespace tqb {

// Edit distance (optimal string alignment: adjacent transpositions count as one edit).
std::size_t edit_distance(std::string_view a, std::string_view b);

// The closest candidate if it is close enough to be a plausible typo (distance <= 1 for words of 1-2 letters, else max(2, |word|/3)),
// else empty.
std::string closest_match(std::string_view word, const std::vector<std::string>& candidates);

// " (did you mean 'x'?)" or "" — ready to append to an error message.
std::string did_you_mean(std::string_view word, const std::vector<std::string>& candidates);

// "a, b, c": the valid choices, for error messages.
std::string join(const std::vector<std::string>& items, std::string_view sep = ", ");

}  // namespace tqb
