#include "harness/progress.hpp"

#include "common/printable.hpp"

#include <fmt/format.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cmath>

namespace tqb {

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const long t = std::lround(s);
  if (t < 60) return fmt::format("{}s", t);
  if (t < 3600) return fmt::format("{}m{:02}s", t / 60, t % 60);
  return fmt::format("{}h{:02}m", t / 3600, (t % 3600) / 60);
}

Progress::Progress(std::size_t total, std::size_t already_done, std::FILE* out)
    : total_(total), done_(already_done), skipped_(already_done), out_(out), tty_(isatty(fileno(out))),
      start_(std::chrono::steady_clock::now()) {
  if (already_done > 0)
    std::fprintf(out_, "resuming: %zu of %zu points already done\n", already_done, total);
}

std::string Progress::eta() const {
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double per_point = run_ > 0 ? elapsed / static_cast<double>(run_) : NAN;
  return run_ > 0 ? format_duration(per_point * static_cast<double>(total_ - done_)) : std::string("?");
}

// The counts and the ETA first, then the point: cut at the terminal's width, what is cut is the end of the label.
void Progress::draw(const std::string& raw_label) {
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  std::string line = fmt::format("[{}/{} {} ETA {}] {}", done_, total_, format_duration(elapsed), eta(), printable(raw_label));
  winsize w{};
  const std::size_t width = ioctl(fileno(out_), TIOCGWINSZ, &w) == 0 && w.ws_col >= 20 ? w.ws_col : 80;
  if (line.size() >= width) line = line.substr(0, width - 4) + "...";
  std::fprintf(out_, "\r\033[K%s", line.c_str());
  std::fflush(out_);
}

void Progress::start_point(const std::string& label) {
  if (tty_) draw(label);
}

void Progress::finish_point(const std::string& raw_label, bool ok, double seconds, const std::string& raw_summary) {
  const std::string label = printable(raw_label), summary = printable(raw_summary);
  ++done_;
  ++run_;
  if (tty_) {
    if (!ok) std::fprintf(out_, "\r\033[KFAILED %s: %s\n", label.c_str(), summary.c_str());
    draw(label);
  } else {
    std::fprintf(out_, "[%zu/%zu ETA %s] %s %s (%s)%s%s\n", done_, total_, eta().c_str(), ok ? "done" : "FAILED", label.c_str(),
                 format_duration(seconds).c_str(), summary.empty() ? "" : ": ", summary.c_str());
    std::fflush(out_);
  }
}

void Progress::finish() {
  if (tty_) {
    std::fprintf(out_, "\r\033[K");
    std::fflush(out_);
  }
}

}  // namespace tqb
