#include "common/read_file.hpp"

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/error.hpp"

namespace tqb {

std::string read_regular_file(const std::string& path, std::size_t max_bytes, const std::string& what) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (ec || !fs::exists(st)) throw InputError(fmt::format("{}: error: cannot open the {}: no such file", path, what));
  if (!fs::is_regular_file(st)) throw InputError(fmt::format("{}: error: the {} must be a regular file (not a device, fifo or folder)", path, what));
  const std::uintmax_t size = fs::file_size(path, ec);
  if (ec) throw InputError(fmt::format("{}: error: cannot read the {}: {}", path, what, ec.message()));
  if (size > max_bytes)
    throw InputError(fmt::format("{}: error: the {} is {} bytes; at most {} are read", path, what, size, max_bytes));
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(fmt::format("{}: error: cannot open the {}: {}", path, what, std::strerror(errno)));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw InputError(fmt::format("{}: error: cannot read the {}", path, what));
  return ss.str();
}

}  // namespace tqb
