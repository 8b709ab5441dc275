#include "harness/plot_command.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "common/error.hpp"

extern char** environ;

namespace tqb {

#ifndef TQB_SOURCE_DIR_DEFAULT
#define TQB_SOURCE_DIR_DEFAULT "."
#endif
#ifndef TQB_PYTHON_DEFAULT
#define TQB_PYTHON_DEFAULT ""
#endif

std::vector<std::string> plot_script_names() { return {"plot", "distortion", "kv_cache"}; }

int run_plot_script(const std::string& script, const std::vector<std::string>& args) {
  const auto names = plot_script_names();
  if (std::find(names.begin(), names.end(), script) == names.end())
    throw InputError(fmt::format("--script {}: not a plot script; valid: {}", script, fmt::join(names, ", ")));
  // The source tree's plots/, as the build recorded it (TQB_SOURCE_DIR overrides, as for the named models).
  const char* src_env = std::getenv("TQB_SOURCE_DIR");
  const std::filesystem::path src = src_env && *src_env ? src_env : TQB_SOURCE_DIR_DEFAULT;
  const std::string path = (src / "plots" / (script + ".py")).string();
  if (!std::filesystem::exists(path))
    throw InputError(fmt::format("{}: not found (set TQB_SOURCE_DIR to the tqbench source tree)", path));
  std::string python = "python3";
  if (const char* p = std::getenv("TQB_PYTHON"); p && *p) python = p;
  else if (std::strlen(TQB_PYTHON_DEFAULT) > 0 && std::filesystem::exists(TQB_PYTHON_DEFAULT)) python = TQB_PYTHON_DEFAULT;
  std::vector<std::string> argv_s{python, path};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  if (const int e = posix_spawnp(&pid, python.c_str(), nullptr, nullptr, argv.data(), environ); e != 0)
    throw RunError(fmt::format("cannot start {} for {}: {} (set TQB_PYTHON to a Python with matplotlib, h5py and numpy; "
                               "scripts/setup.sh installs them)", python, path, std::strerror(e)));
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

}  // namespace tqb
