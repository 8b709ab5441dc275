#pragma once
// Resident memory of this process (Linux /proc): the current size and the high-water mark, which can
// be reset so that each sweep point reports its own peak.
#include <cstddef>

namespace tqb {

std::size_t current_rss_bytes();  // VmRSS; 0 when unknown
std::size_t peak_rss_bytes();     // VmHWM; 0 when unknown
// Resets the high-water mark to the current RSS (writes 5 to /proc/self/clear_refs, Linux >= 4.0).
// Returns false where that is not possible; the peak then covers the whole process so far.
bool reset_peak_rss();

}  // namespace tqb
