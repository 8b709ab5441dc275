#pragma once
// Helpers shared by the libFuzzer targets: tqbench's readers take paths (model files are memory-mapped,
// Hugging Face checkpoints are folders), so each input is put where a reader expects it.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "common/error.hpp"

namespace tqb::fuzz {

// The input as an anonymous in-memory file, named by /proc/self/fd/N (no disk I/O per input).
class MemFile {
 public:
  MemFile(const std::uint8_t* data, std::size_t size) : fd_(::memfd_create("tqb-fuzz", MFD_CLOEXEC)) {
    if (fd_ < 0) std::abort();
    for (std::size_t done = 0; done < size;) {
      const ssize_t n = ::write(fd_, data + done, size - done);
      if (n <= 0) std::abort();
      done += static_cast<std::size_t>(n);
    }
  }
  ~MemFile() { ::close(fd_); }
  MemFile(const MemFile&) = delete;
  MemFile& operator=(const MemFile&) = delete;
  std::string path() const { return "/proc/self/fd/" + std::to_string(fd_); }

 private:
  int fd_;
};

// One scratch folder per process (libFuzzer runs inputs one at a time in a process), on tmpfs when
// there is one.
inline const std::filesystem::path& scratch_dir() {
  static const std::filesystem::path dir = [] {
    const std::filesystem::path base = std::filesystem::exists("/dev/shm") ? "/dev/shm" : "/tmp";
    auto d = base / ("tqb-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    return d;
  }();
  return dir;
}

inline void write_file(const std::filesystem::path& p, const std::uint8_t* data, std::size_t size) {
  std::ofstream(p, std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
}

// The shared folder (../shared next to the source tree, or $TQB_SHARED_DIR) for real files the
// targets pair an input with.
inline std::string shared_file(const std::string& relative) {
  const char* env = std::getenv("TQB_SHARED_DIR");
  return (std::filesystem::path(env ? env : TQB_SOURCE_DIR "/../shared") / relative).string();
}

// Runs `read`; bad input must end in InputError (exit code 2 in tqbench). Anything else escaping is a
// finding: libFuzzer reports the uncaught exception as a crash with the input.
template <class F>
void expect_clean(F&& read) {
  try {
    read();
  } catch (const InputError&) {
  }
}

}  // namespace tqb::fuzz
