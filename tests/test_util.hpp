#pragma once
// Helpers shared by the tests: temporary folders, running the tqbench binary, reading spec fixtures.
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "common/float_format.hpp"
#include "common/matrix.hpp"
#include "quantizers/quantizer.hpp"
#include "common/rng.hpp"
#include "models/checkpoint.hpp"

namespace tqb::test {

inline const std::string kSourceDir = TQB_SOURCE_DIR;
// The tqbench binary under test: the build's, or $TQBENCH_BINARY (scripts/device_check.sh points it
// at the copy carried to the GPU machine).
inline const std::string kBinary = std::getenv("TQBENCH_BINARY") != nullptr ? std::getenv("TQBENCH_BINARY") : TQB_BINARY;

// n token ids below vocab, drawn from seed: text for the random-weight fixtures.
inline std::vector<int> seeded_tokens(std::size_t n, int vocab, std::uint64_t seed) {
  Rng rng(seed);
  std::vector<int> t(n);
  for (auto& v : t) v = static_cast<int>(rng.next_u64() % static_cast<std::uint64_t>(vocab));
  return t;
}

// books-14m and its held-out text under shared_dir() (../shared, or $TQB_SHARED_DIR).
struct BooksModel {
  std::string model, corpus;
  bool present() const { return std::filesystem::exists(model + "/config.json") && std::filesystem::exists(corpus); }
  // For a test that needs it: false, with the skip message ctest reads, when it is not there.
  bool present_or_skip() const {
    if (present()) return true;
    MESSAGE("SKIPPED: books-14m (../shared) is not there");
    return false;
  }
};
inline BooksModel books14m() {
  const std::filesystem::path shared = shared_dir();
  return {(shared / "models/books-14m").string(), (shared / "data/books-heldout/heldout.txt").string()};
}

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

// y_ref = W_deq · bf16(x) in double (x: n × cols; y: n × rows): the reference of the GPU kernels, which take
// activations rounded to bf16, so that their own rounding of x is not counted as error.
inline std::vector<double> bf16_reference(const tqb::Quantizer& q, const tqb::QuantizedMatrix& qm, const tqb::Matrix& x) {
  std::vector<float> w(qm.rows * qm.cols);
  q.dequantize(qm, w.data());
  std::vector<double> y(x.rows() * qm.rows, 0.0);
  for (Eigen::Index t = 0; t < x.rows(); ++t)
    for (std::size_t r = 0; r < qm.rows; ++r) {
      double acc = 0;
      for (std::size_t k = 0; k < qm.cols; ++k)
        acc += static_cast<double>(w[r * qm.cols + k]) * tqb::bf16_value(tqb::bf16_bits(x(t, static_cast<Eigen::Index>(k))));
      y[t * qm.rows + r] = acc;
    }
  return y;
}

}  // namespace tqb::test
