#pragma once
// Where a result came from: build, machine and time, stored beside every result row.
#include <string>

namespace tqb {

struct Provenance {
  std::string tqbench_version;
  std::string git_commit;
  std::string compiler;
  std::string build_type;
  std::string cpu_model;
  std::string dense_blas;  // the dense path's library and the kernel set it chose for this CPU
  std::string host;
  std::string os;
};

// Read once per process (CPU model from /proc/cpuinfo, host from gethostname, os from uname).
const Provenance& provenance();

// Current UTC time as ISO 8601, e.g. "2026-11-23T16:04:05Z".
std::string utc_now();

}  // namespace tqb
