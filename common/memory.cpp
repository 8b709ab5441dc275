#include "common/memory.hpp"

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

bool reset_peak_rss() {
  std::ofstream out("/proc/self/clear_refs");
  if (!out) return false;
  out << "5";
  out.flush();
  return static_cast<bool>(out);
}

}  // namespace tqb
