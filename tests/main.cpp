// The test binary's entry: doctest, plus a check that no test changed an input (issue 28: "no input file changes in
// any test"). Every file under the inputs the tests read (tests/fixtures, tests/specs, experiments, and the shared
// models and data) is checksummed before the tests run and after; a file changed, removed or added there fails
// the run, naming the file, whatever the tests themselves reported.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "common/fnv1a.hpp"
#include "models/checkpoint.hpp"

namespace {

namespace fs = std::filesystem;

std::map<std::string, std::uint64_t> input_checksums() {
  const fs::path source = TQB_SOURCE_DIR;
  const fs::path shared = tqb::shared_dir();
  std::map<std::string, std::uint64_t> sums;
  std::vector<char> buffer(1 << 20);
  for (const fs::path& root : {source / "tests/fixtures", source / "tests/specs", source / "experiments", shared / "models", shared / "data"}) {
    std::error_code ec;
    if (!fs::is_directory(root, ec)) continue;
    for (auto it = fs::recursive_directory_iterator(root, fs::directory_options::skip_permission_denied, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (!it->is_regular_file(ec)) continue;
      std::ifstream in(it->path(), std::ios::binary);
      std::uint64_t h = tqb::kFnv1aBasis;
      while (in.read(buffer.data(), static_cast<std::streamsize>(buffer.size())) || in.gcount() > 0)
        h = tqb::fnv1a(buffer.data(), static_cast<std::size_t>(in.gcount()), h);
      sums[it->path().string()] = h;
    }
  }
  return sums;
}

}  // namespace

int main(int argc, char** argv) {
  doctest::Context context(argc, argv);
  const bool listing = [&] {
    for (int i = 1; i < argc; ++i)
      if (std::string(argv[i]).find("-list") != std::string::npos || std::string(argv[i]).find("-ltc") != std::string::npos) return true;
    return false;
  }();
  std::map<std::string, std::uint64_t> before;
  if (!listing) before = input_checksums();
  const int status = context.run();
  if (context.shouldExit() || listing) return status;
  const std::map<std::string, std::uint64_t> after = input_checksums();
  int changed = 0;
  auto report = [&](const char* what, const std::string& path) {
    std::fprintf(stderr, "error: a test %s %s\n", what, path.c_str());
    ++changed;
  };
  for (const auto& [path, sum] : before) {
    const auto it = after.find(path);
    if (it == after.end()) report("removed the input", path);
    else if (it->second != sum) report("changed the input (its checksum differs after the tests)", path);
  }
  for (const auto& [path, sum] : after)
    if (!before.count(path)) report("wrote a file into an input folder:", path);
  if (changed) std::fprintf(stderr, "error: %d input files changed during the tests (issue 28: tests never change their inputs)\n", changed);
  return status != 0 ? status : changed ? 1 : 0;
}
