#include "common/atomic_file.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "common/error.hpp"

namespace tqb {

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)), tmp_(fmt::format("{}.tmp.{}", path_, ::getpid())) {
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) throw RunError(fmt::format("{}: cannot create: {}", tmp_, std::strerror(errno)));
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) {
    ::close(fd_);
    std::remove(tmp_.c_str());
  }
}

void AtomicFile::fail(int err, std::size_t wanted) {
  throw RunError(fmt::format("{}: cannot write {} bytes ({} written): {}{}", path_, wanted, written_, std::strerror(err),
                             err == ENOSPC || err == EDQUOT ? " (the disk is full)" : ""));
}

void AtomicFile::write(const void* data, std::size_t n) {
  const auto* p = static_cast<const char*>(data);
  std::size_t done = 0;
  while (done < n) {
    const ssize_t k = ::write(fd_, p + done, n - done);
    if (k > 0) {
      done += static_cast<std::size_t>(k);
      written_ += static_cast<std::size_t>(k);
    } else if (k == 0 || errno != EINTR) {
      fail(k == 0 ? EIO : errno, n);
    }
  }
}

void AtomicFile::pad_to(std::size_t alignment) {
  static const char zeros[64] = {};
  while (written_ % alignment != 0) write(zeros, std::min(sizeof(zeros), alignment - written_ % alignment));
}

void AtomicFile::commit() {
  if (::fsync(fd_) != 0) fail(errno, 0);
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) {
    const int err = errno;
    std::remove(tmp_.c_str());
    throw RunError(fmt::format("{}: cannot close {}: {}", path_, tmp_, std::strerror(err)));
  }
  std::error_code ec;
  std::filesystem::rename(tmp_, path_, ec);
  if (ec) {
    std::remove(tmp_.c_str());
    throw RunError(fmt::format("{}: cannot replace with {}: {}", path_, tmp_, ec.message()));
  }
  const auto dir = std::filesystem::path(path_).parent_path();
  const int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace tqb
