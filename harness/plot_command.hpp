#pragma once
// `tqbench plot [--script NAME] ARGS...`: the plot scripts (plots/NAME.py) run by the Python the set-up prepared
// (issue 27): $TQB_PYTHON, else the interpreter scripts/setup.sh configured the build with (it has matplotlib,
// h5py and numpy), else python3 on the PATH. Every argument after the script's name goes to the script.
#include <string>
#include <vector>

namespace tqb {

// The scripts `plot` runs: plot (a metric against bits), distortion (the paper's figure), kv_cache.
std::vector<std::string> plot_script_names();

// Runs plots/<script>.py with `args`; returns its exit status. InputError for an unknown script, RunError when no
// interpreter can be started.
int run_plot_script(const std::string& script, const std::vector<std::string>& args);

}  // namespace tqb
