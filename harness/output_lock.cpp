#include "harness/output_lock.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "common/error.hpp"

namespace tqb {

void check_output_path(const std::string& path, const std::string& spec_path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (ec || !fs::exists(st)) return;
  if (!fs::is_regular_file(st))
    throw InputError(fmt::format("{}: error: the output is not a regular file; -o must name a result file (.h5) to create or resume", path));
  if (!spec_path.empty() && fs::exists(spec_path, ec) && fs::equivalent(path, spec_path, ec))
    throw InputError(fmt::format("{}: error: the output is the spec file itself; give -o a result file (.h5)", path));
}

// The lock lives beside the real file (links resolved), so that two spellings of one result file share one lock.
static std::string real_lock_path(const std::string& path) {
  std::error_code ec;
  const auto real = std::filesystem::weakly_canonical(path, ec);
  return (ec ? path : real.string()) + ".lock";
}

OutputLock::OutputLock(const std::string& path) : lock_path_(real_lock_path(path)) {
  const std::string& lock_path = lock_path_;
  for (int attempt = 0;; ++attempt) {
    fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) throw RunError(fmt::format("{}: error: cannot create the lock file: {}", lock_path, std::strerror(errno)));
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) break;  // held by another run: reported below
    // Locked; but the holder that just finished may have removed the file we opened: lock the one at the path.
    struct stat held {}, at_path {};
    if (::fstat(fd_, &held) == 0 && ::stat(lock_path.c_str(), &at_path) == 0 && held.st_ino == at_path.st_ino &&
        held.st_dev == at_path.st_dev) {
      const std::string pid = std::to_string(::getpid());
      if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
        // The lock holds without the pid; a second run then reports the holder as unknown.
      }
      return;
    }
    ::close(fd_);
    fd_ = -1;
    if (attempt > 100) throw RunError(fmt::format("{}: error: the lock file keeps being replaced; is another run starting and stopping?", lock_path));
  }
  {
    char buf[32] = {};
    const ssize_t n = ::pread(fd_, buf, sizeof buf - 1, 0);
    ::close(fd_);
    fd_ = -1;
    const std::string holder = n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : "unknown";
    throw InputError(fmt::format("{}: error: another tqbench run (pid {}) is writing this result file; wait for it to finish, or "
                                 "write elsewhere with -o", path, holder));
  }
}

OutputLock::~OutputLock() { release(); }

void OutputLock::release() {
  if (fd_ < 0) return;
  ::unlink(lock_path_.c_str());  // while locked: no other run holds this inode
  ::close(fd_);                  // releases the flock
  fd_ = -1;
}

}  // namespace tqb
