#pragma once
// Reading a whole text input (a spec, a corpus) with the checks every such read needs: a regular file
// (not a device, fifo or folder: /dev/zero would never end) of at most a stated size.
#include <cstddef>
#include <string>

namespace tqb {

// Throws InputError "PATH: error: WHAT ..." when path is missing, not a regular file, larger than
// max_bytes, or unreadable.
std::string read_regular_file(const std::string& path, std::size_t max_bytes, const std::string& what);

}  // namespace tqb
