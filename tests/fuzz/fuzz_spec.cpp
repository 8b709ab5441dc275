// libFuzzer target: a YAML experiment spec parsed, expanded into its sweep (bounded as `tqbench run`
// bounds it) and printed as `--dry-run` prints it. Seeds: tests/specs and experiments (scripts/fuzz.sh).
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>

#include "fuzz_input.hpp"
#include "harness/runner.hpp"
#include "harness/spec.hpp"
#include "harness/sweep.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  tqb::fuzz::expect_clean([&] {
    const tqb::ExperimentSpec spec = tqb::parse_spec(text, "fuzz.yaml");
    const auto points = tqb::expand_sweep(spec, 10000);
    std::ostringstream out;
    tqb::print_dry_run(spec, points, out);
  });
  return 0;
}
