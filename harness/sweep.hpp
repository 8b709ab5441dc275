#pragma once
// Sweep expansion: a spec's grids become the list of concrete points (data × quantizer), each with a
// canonical key that identifies it for resuming and seeds its randomness.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "harness/spec.hpp"
#include "quantizers/quantizer.hpp"

namespace tqb {

struct DataPoint {
  std::string source;  // data source name
  Params params;       // complete
  std::string name;    // canonical "source(k=v,...)"
  std::uint64_t seed;  // derived from the spec seed and seed_name: every quantizer sees the same matrix
  std::string seed_name;  // the name without evaluation-only parameters (ParamSpec::evaluation_only)
};

struct SweepPoint {
  std::size_t index = 0;  // position in the sweep
  std::shared_ptr<const DataPoint> data;
  std::shared_ptr<const Quantizer> quantizer;
  std::string key;     // "data-name | quantizer-name": unique within a sweep
  std::uint64_t seed;  // quantizer seed, derived from the spec seed and the data name (shared by all
                       // quantizers on that data: common random numbers)
};

// Cartesian product of each grid's axes, data-major (all quantizers for the first data point, then
// the next), so the data matrix is generated once per data point. Duplicate points are dropped.
// Throws InputError located at the offending key (e.g. a group size that does not divide cols).
// A sweep's size is checked from its axes before any point is made (a 10^12-point product once
// exhausted memory even in --dry-run): above max_points, InputError naming the size and the flag
// (`tqbench run --max-points N`) that raises the limit.
inline constexpr std::uint64_t kDefaultMaxSweepPoints = 1000000;
std::vector<SweepPoint> expand_sweep(const ExperimentSpec& spec, std::uint64_t max_points = kDefaultMaxSweepPoints);

}  // namespace tqb
