#pragma once
// Progress of a sweep on stderr. On a terminal: one updating line with points done/total, the current
// point, elapsed time and ETA. Otherwise: one plain line per finished point (for logs and CI).
#include <chrono>
#include <cstdio>
#include <string>

namespace tqb {

class Progress {
 public:
  // total: points in the sweep; already_done: points skipped because a resumed file holds them.
  Progress(std::size_t total, std::size_t already_done, std::FILE* out = stderr);
  void start_point(const std::string& label);
  void finish_point(const std::string& label, bool ok, double seconds, const std::string& summary);
  void finish();  // ends the updating line

 private:
  void draw(const std::string& label);
  std::string eta() const;  // from the points run so far; "?" before the first
  std::size_t total_, done_, skipped_, run_ = 0;
  std::FILE* out_;
  bool tty_;
  std::chrono::steady_clock::time_point start_;
};

std::string format_duration(double seconds);  // "12s", "3m05s", "1h02m"

}  // namespace tqb
