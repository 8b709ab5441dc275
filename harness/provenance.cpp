#include "harness/provenance.hpp"

#include <sys/utsname.h>
#include <unistd.h>

#include <ctime>
#include <fstream>

#include "common/version.hpp"
#include "kernels/cpu/dense_blas.hpp"

namespace tqb {

static std::string read_cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(" \t", colon + 1));
    }
  }
  return "unknown";
}

const Provenance& provenance() {
  static const Provenance p = [] {
    Provenance v;
    v.tqbench_version = version();
    v.git_commit = git_commit();
    v.compiler = compiler();
    v.build_type = build_type();
    v.cpu_model = read_cpu_model();
    v.dense_blas = dense_blas_description();
    char host[256] = {0};
    v.host = gethostname(host, sizeof(host) - 1) == 0 ? host : "unknown";
    utsname u{};
    v.os = uname(&u) == 0 ? std::string(u.sysname) + " " + u.release + " " + u.machine : "unknown";
    return v;
  }();
  return p;
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace tqb
