#pragma once
// Guards on the result file a run writes (-o): it must be a regular file (or not exist yet) and not the
// spec itself, and one run at a time may write it. The lock is an advisory flock on "<path>.lock" holding
// the writer's pid: the kernel drops it when the process ends, however it ends, so a killed run never
// blocks the next one (the lock file itself stays, empty of meaning until a run locks it again).
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
  ~OutputLock();
  OutputLock(const OutputLock&) = delete;
  OutputLock& operator=(const OutputLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace tqb
