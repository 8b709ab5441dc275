#include "common/input_files.hpp"

#include <fmt/format.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "common/error.hpp"
#include "common/printable.hpp"

namespace tqb {

void InputFiles::add(const std::string& path, const std::string& what) {
  namespace fs = std::filesystem;
  auto one = [&](const std::string& p) {
    struct stat st {};
    if (::stat(p.c_str(), &st) == 0) entries_.push_back({static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino), p, what});
  };
  one(path);
  std::error_code ec;
  if (fs::is_directory(path, ec))
    for (const auto& e : fs::directory_iterator(path, ec))
      if (e.is_regular_file(ec)) one(e.path().string());
}

void InputFiles::refuse_as_output(const std::string& output, const std::string& flag) const {
  struct stat st {};
  if (::stat(output.c_str(), &st) != 0) return;  // nothing there yet: nothing to overwrite
  for (const auto& e : entries_)
    if (e.device == static_cast<std::uint64_t>(st.st_dev) && e.inode == static_cast<std::uint64_t>(st.st_ino))
      throw InputError(fmt::format("{} {}: error: this is {} this command reads ({}); it is never written over, with or without "
                                   "--force: give the output another name",
                                   flag, printable(output), e.what, printable(e.path)));
}

bool has_hdf5_signature(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char head[8] = {};
  in.read(head, sizeof head);
  return in.gcount() == 8 && std::string(head, 8) == std::string("\x89HDF\r\n\x1a\n", 8);
}

}  // namespace tqb
