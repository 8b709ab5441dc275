#include "common/memory.hpp"

#include <fmt/format.h>
#include <sys/resource.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <algorithm>
#include <fstream>
#include <string>

namespace tqb {

static std::size_t status_kb(const char* key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const std::string k = std::string(key) + ":";
  while (std::getline(in, line))
    if (line.rfind(k, 0) == 0) return std::stoull(line.substr(k.size())) * 1024;
  return 0;
}

std::size_t current_rss_bytes() { return status_kb("VmRSS"); }
std::size_t peak_rss_bytes() { return status_kb("VmHWM"); }

void reuse_freed_memory() {
#if defined(__GLIBC__)
  constexpr int kKeep = 1 << 30;
  mallopt(M_MMAP_THRESHOLD, kKeep);
  mallopt(M_TRIM_THRESHOLD, kKeep);
#endif
}

bool reset_peak_rss() {
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
  std::ofstream out("/proc/self/clear_refs");
  if (!out) return false;
  out << "5";
  out.flush();
  return static_cast<bool>(out);
}

namespace {

// The first number in a file (memory.max holds "max" when unlimited: nullopt-like 0 then).
std::size_t read_number(const std::string& path) {
  std::ifstream in(path);
  unsigned long long v = 0;
  if (in >> v) return static_cast<std::size_t>(v);
  return 0;
}

}  // namespace

std::size_t available_memory_bytes() {
  std::size_t avail = 0;
  {
    std::ifstream in("/proc/meminfo");
    std::string key;
    unsigned long long kb = 0;
    std::string unit;
    while (in >> key >> kb) {
      std::getline(in, unit);
      if (key == "MemAvailable:") {
        avail = static_cast<std::size_t>(kb) * 1024;
        break;
      }
    }
  }
  // cgroup v2: "0::/some/path" in /proc/self/cgroup.
  std::ifstream cg("/proc/self/cgroup");
  std::string line;
  while (std::getline(cg, line)) {
    if (line.rfind("0::", 0) != 0) continue;
    const std::string dir = "/sys/fs/cgroup" + line.substr(3);
    const std::size_t max = read_number(dir + "/memory.max"), used = read_number(dir + "/memory.current");
    if (max > 0) avail = std::min(avail == 0 ? max : avail, max > used ? max - used : 0);
  }
  rlimit as{};
  if (::getrlimit(RLIMIT_AS, &as) == 0 && as.rlim_cur != RLIM_INFINITY) {  // address space still free
    const std::size_t limit = static_cast<std::size_t>(as.rlim_cur), mapped = status_kb("VmSize");
    const std::size_t left = limit > mapped ? limit - mapped : 0;
    avail = avail == 0 ? left : std::min(avail, left);
  }
  return avail;
}

std::string format_bytes(double b) {
  if (b >= 1024.0 * 1024 * 1024) return fmt::format("{:.3g} GiB", b / (1024.0 * 1024 * 1024));
  if (b >= 1024.0 * 1024) return fmt::format("{:.3g} MiB", b / (1024.0 * 1024));
  if (b >= 1024.0) return fmt::format("{:.3g} KiB", b / 1024.0);
  return fmt::format("{} B", b);
}

}  // namespace tqb
