#pragma once
// Guards on the result file a run writes (-o): it must be a regular file (or not exist yet) and not the
// spec itself, and one run at a time may write it. The lock is an advisory flock on "<path>.lock" holding
// the writer's pid: the kernel drops it when the process ends, however it ends, so a killed run never
// blocks the next one. A run that ends normally or on SIGINT/SIGTERM removes the lock file while it still holds
// the lock; a run that opened the file before it was removed finds its inode gone and locks a fresh one.
#include <string>

namespace tqb {

// Throws InputError naming the path when it exists and is not a regular file (a device, a folder, a
// fifo), or when it is the spec file.
void check_output_path(const std::string& path, const std::string& spec_path);

class OutputLock {
 public:
  // Throws InputError naming the holder's pid when another process holds the lock, RunError when the
  // lock file cannot be created.
  explicit OutputLock(const std::string& path);
  ~OutputLock();  // release()
  // Removes the lock file and drops the lock (idempotent): the signal path calls it before _exit.
  void release();
  OutputLock(const OutputLock&) = delete;
  OutputLock& operator=(const OutputLock&) = delete;

 private:
  int fd_ = -1;
  std::string lock_path_;
};

}  // namespace tqb
