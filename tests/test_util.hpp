#pragma once
// Helpers shared by the tests: temporary folders, running the tqbench binary, reading spec fixtures.
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "common/matrix.hpp"
#include "common/rng.hpp"

namespace tqb::test {

inline const std::string kSourceDir = TQB_SOURCE_DIR;
// The tqbench binary under test: the build's, or $TQBENCH_BINARY (scripts/device_check.sh points it
// at the copy carried to the GPU machine).
inline const std::string kBinary = std::getenv("TQBENCH_BINARY") != nullptr ? std::getenv("TQBENCH_BINARY") : TQB_BINARY;

// A fresh folder under the system temp dir, removed at scope exit.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    static int counter = 0;
    path = std::filesystem::temp_directory_path() /
           ("tqb-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

// Runs a shell command line, capturing stdout and stderr.
inline CommandResult run_command(const std::string& cmd) {
  CommandResult r;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  std::size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.output.append(buf.data(), n);
  const int status = ::pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

inline CommandResult run_tqbench(const std::string& args) { return run_command("'" + kBinary + "' " + args); }

inline std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// rows x cols of i.i.d. N(0,1) from a seed.
inline tqb::Matrix random_normal_matrix(std::size_t rows, std::size_t cols, std::uint64_t seed) {
  tqb::Matrix m(rows, cols);
  tqb::Rng rng(seed);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<float>(rng.normal());
  return m;
}

inline void write_text(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

}  // namespace tqb::test
