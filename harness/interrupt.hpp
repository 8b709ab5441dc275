#pragma once
// SIGINT and SIGTERM during a run (issue 27): instead of dying with the finished points only in the journal (and
// h5py seeing none of them until the next run folds it), the run folds the journal into the result file, says how
// many points are saved and how to resume, releases its lock and exits with 128 + the signal. The point in
// progress is abandoned: it reruns on resume.
//
// How: a handler (async-signal-safe: it only writes the signal number to a pipe) wakes a watcher thread, which
// takes the run's state mutex, so that it never folds while the run is appending a row or folding itself, calls
// `on_interrupt` and ends the process with _exit. A second signal while the first is handled is ignored.
#include <functional>
#include <mutex>
#include <thread>

namespace tqb {

class InterruptGuard {
 public:
  // on_interrupt(signal) runs on the watcher thread with `state` held; it must not throw.
  InterruptGuard(std::mutex& state, std::function<void(int)> on_interrupt);
  ~InterruptGuard();  // restores the previous handlers and stops the watcher
  InterruptGuard(const InterruptGuard&) = delete;
  InterruptGuard& operator=(const InterruptGuard&) = delete;

 private:
  std::mutex& state_;
  std::function<void(int)> on_interrupt_;
  std::thread watcher_;
};

}  // namespace tqb
