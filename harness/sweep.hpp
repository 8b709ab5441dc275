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
  std::string key;     // "data-name | quantizer-name" (+ " | repeat R" when the spec repeats): unique within a sweep
  std::string group;   // "data-name | quantizer-name": what the repeats of one point share
  int repeat = 0;      // 0 .. repeats - 1
  int repeats = 1;     // spec.repeats, or 1 when neither the quantizer nor the data uses the seed
  std::uint64_t seed = 0;  // quantizer seed, derived from the spec seed and the data name (shared by all
                       // quantizers on that data: common random numbers)
  // Matrix points: the kernel and batch their latency metrics time (the spec's timing axes). Points that
  // differ only here share data, quantizer and seed: the evaluator quantizes once.
  std::string timing_kernel = "auto";
  std::int64_t timing_batch = 1;
};

// Whether the spec's timing kernels or batches are evaluation axes of its points (lists, on matrix data; a model
// names its kernel as a data parameter instead).
bool timing_axes(const ExperimentSpec& spec);

// " | timing(kernel=K,batch=B)": what a point's key and group add when the spec sweeps kernels or batches.
std::string timing_label(const std::string& kernel, std::int64_t batch);

// Cartesian product of each grid's axes, data-major (all quantizers for the first data point, then
// the next), so the data matrix is generated once per data point and repeat. Duplicate points are
// dropped. With spec.repeats = N, each (data, quantizer) becomes N points whose seeds (and synthetic data)
// differ; repeat 0 keeps the seeds of an unrepeated sweep. A seedless quantizer (llama.cpp's formats, RTN)
// on seedless data (a model) runs once: its repeats would be identical.
// Throws InputError located at the offending key (e.g. a group size that does not divide cols).
// A sweep's size is checked from its axes before any point is made (a 10^12-point product once
// exhausted memory even in --dry-run): above max_points, InputError naming the size and the flag
// (`tqbench run --max-points N`) that raises the limit.
inline constexpr std::uint64_t kDefaultMaxSweepPoints = 1000000;
std::vector<SweepPoint> expand_sweep(const ExperimentSpec& spec, std::uint64_t max_points = kDefaultMaxSweepPoints);

}  // namespace tqb
