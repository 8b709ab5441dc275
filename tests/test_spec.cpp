#include <doctest/doctest.h>

#include "common/error.hpp"
#include "common/memory.hpp"
#include "harness/spec.hpp"
#include "harness/sweep.hpp"
#include "kernels/registry.hpp"

using namespace tqb;

namespace {

std::string error_of(const std::string& yaml) {
  try {
    expand_sweep(parse_spec(yaml, "t.yaml"));
  } catch (const InputError& e) {
    return e.what();
  }
  return "accepted";
}

const char* kSpec = R"(experiment: t
seed: 3
data:
  - source: gaussian
    rows: 16
    cols: [64, 128]
  - source: sphere
    rows: 8
    cols: 64
quantizers:
  - family: rtn
    bits: [2, 4, 8]
    group: [32, row]
  - rtn(bits=3,mode=asym,group=32)
  - rtn(bits=4,group=32,mode=sym,scale=fp16)
metrics: [weight_mse, bits_per_weight]
)";

}  // namespace

TEST_CASE("a spec expands to the Cartesian product, data-major, without duplicates") {
  const ExperimentSpec spec = parse_spec(kSpec, "t.yaml");
  CHECK(spec.experiment == "t");
  CHECK(spec.seed == 3);
  CHECK(spec.metrics == std::vector<std::string>{"weight_mse", "bits_per_weight"});
  const auto points = expand_sweep(spec);
  // 3 data points x (6 + 1 + 1 quantizers), the last duplicating rtn(bits=4,group=32) of the grid.
  CHECK(points.size() == 3 * 7);
  CHECK(points[0].key == "gaussian(rows=16,cols=64,std=1) | rtn(bits=2,group=32,mode=sym,scale=fp16)");
  CHECK(points[7].data->name == "gaussian(rows=16,cols=128,std=1)");
  CHECK(points.back().data->name == "sphere(rows=8,cols=64)");
  for (std::size_t i = 0; i < points.size(); ++i) CHECK(points[i].index == i);
}

TEST_CASE("seeds derive from the spec seed and the data, not from the position in the sweep") {
  const auto a = expand_sweep(parse_spec(kSpec, "t.yaml"));
  std::string reordered = kSpec;
  reordered.replace(reordered.find("bits: [2, 4, 8]"), 15, "bits: [8, 4, 2]");
  const auto b = expand_sweep(parse_spec(reordered, "t.yaml"));
  REQUIRE(a.size() == b.size());
  for (const auto& p : a)
    for (const auto& q : b)
      if (p.key == q.key) {
        CHECK(p.seed == q.seed);
        CHECK(p.data->seed == q.data->seed);
      }
  std::string reseeded = kSpec;
  reseeded.replace(reseeded.find("seed: 3"), 7, "seed: 4");
  CHECK(expand_sweep(parse_spec(reseeded, "t.yaml"))[0].seed != a[0].seed);
  CHECK(a[0].seed < (std::uint64_t{1} << 63));
  CHECK(a[0].seed == a[1].seed);           // same data: common random numbers
  CHECK(a[0].seed != a.back().seed);       // other data: another seed
}

TEST_CASE("a model experiment accepts every kernel of the registry and no other") {
  for (const auto& k : linear_kernel_names())
    CHECK_MESSAGE(error_of("experiment: t\ndata: {source: model, kernel: " + k + "}\nquantizers: [none]\n") == "accepted", k);
  const std::string bad = error_of("experiment: t\ndata: {source: model, kernel: fused_i4}\nquantizers: [none]\n");
  CHECK(bad.find("t.yaml:2:") == 0);
  CHECK(bad.find("fused_i4") != std::string::npos);
  CHECK(bad.find("fused_i16") != std::string::npos);  // the valid choices are listed
}

TEST_CASE("spec errors name file, line, column, key and what is valid") {
  const std::string base = "experiment: t\ndata: {source: gaussian, rows: 4, cols: 64}\n";
  CHECK(error_of(base + "quantizers:\n  - family: rtn\n    bitz: 4\n") ==
        "t.yaml:5:5: error: key 'quantizers[0].bitz': unknown key (did you mean 'bits'?); valid keys here: family, "
        "bits, group, mode, scale");
  CHECK(error_of(base + "quantizers:\n  - family: rtn\n    bits: four\n") ==
        "t.yaml:5:11: error: key 'quantizers[0].bits': expected an integer from 1 to 8, found 'four'");
  CHECK(error_of(base + "quantizers:\n  - family: rtn\n    group: 128\n")
            .starts_with("t.yaml:5:5: error: key 'quantizers[0].group': rtn(bits=4,group=128,mode=sym,scale=fp16) on "
                         "data gaussian(rows=4,cols=64,std=1): group size 128 does not divide the 64 columns"));
  CHECK(error_of(base + "quantizers: [rtn(bits=4, grp=32)]\n").find("t.yaml:3:14: error: key 'quantizers[0]'") == 0);
  CHECK(error_of(base + "quantizers: []\n").find("t.yaml:3:13: error: key 'quantizers': empty list") == 0);
  CHECK(error_of(base + "quantizers: [rtn]\nseed: -1\n").find("t.yaml:4:7: error: key 'seed'") == 0);
  CHECK(error_of(base + "quantizers: [rtn]\nquantizers: [rtn]\n").find("t.yaml:4:1: error: key 'quantizers': given twice") == 0);
  CHECK(error_of("experiment: t\nquantizers: [rtn]\n").find("t.yaml:1:1: error: key 'data': missing") == 0);
  CHECK(error_of("experiment: t\ndata: {source: gauss}\nquantizers: [rtn]\n")
            .find("t.yaml:2:16: error: key 'data.source': unknown data source 'gauss'") == 0);
}

TEST_CASE("a sweep larger than the point limit is refused from its axes, before any point is made") {
  const ExperimentSpec spec = parse_spec("experiment: t\ndata: {source: gaussian, rows: [8, 16, 32], cols: 64}\n"
                                         "quantizers:\n  - family: rtn\n    bits: [2, 3, 4, 8]\n    group: 32\n",
                                         "t.yaml");
  CHECK(expand_sweep(spec, 12).size() == 12);
  CHECK_THROWS_WITH_AS(expand_sweep(spec, 11), doctest::Contains("the sweep has 12 points"), InputError);
  // A product of 10^12 is refused at once, not materialised.
  std::string values;
  for (int i = 1; i <= 1000; ++i) values += (i > 1 ? "," : "") + std::to_string(i);
  const ExperimentSpec huge = parse_spec("experiment: t\ndata: {source: gaussian, rows: [" + values + "], cols: 64, std: [" + values +
                                             "]}\nquantizers:\n  - family: rtn\n    bits: [2, 3, 4, 5, 6, 7, 8]\n    group: 32\n"
                                             "    scale: [fp16, fp32, bf16]\n    mode: [sym, asym]\n",
                                         "t.yaml");
  CHECK_THROWS_WITH_AS(expand_sweep(huge), doctest::Contains("more than the limit of 1000000"), InputError);
  // A raised limit still meets memory: 4.2e7 points of about a kilobyte each would not be listed on a machine with
  // less than 86 GB available (issue 28: a bad_alloc before).
  if (available_memory_bytes() > 0 && available_memory_bytes() < std::size_t{86} << 30)
    CHECK_THROWS_WITH_AS(expand_sweep(huge, std::uint64_t{1} << 40), doctest::Contains("more than half of the"), InputError);
}

TEST_CASE("a spec nested deeper than any real one is refused, located, before yaml-cpp recurses (issue 28)") {
  const std::string head = "experiment: e\ndata: {source: gaussian, rows: 8, cols: 64}\nquantizers: ";
  CHECK_THROWS_WITH_AS(parse_spec(head + std::string(100000, '[') + std::string(100000, ']') + "\n", "deep.yaml"),
                       doctest::Contains("deep.yaml:3:"), InputError);
  CHECK_THROWS_WITH_AS(parse_spec(head + std::string(100000, '[') + "\n", "deep.yaml"), doctest::Contains("nested more than 64 levels"),
                       InputError);
  std::string block = "experiment: e\nx:\n";
  for (int i = 1; i < 400; ++i) block += std::string(static_cast<std::size_t>(i), ' ') + "- \n";
  CHECK_THROWS_WITH_AS(parse_spec(block, "deep.yaml"), doctest::Contains("indented more than 256 columns"), InputError);
  // Brackets inside quotes and comments do not count; a real spec parses.
  CHECK_NOTHROW(parse_spec(head + "['rtn(bits=4)']  # [[[[[[[[\ndescription: \"" + std::string(100, '[') + "\"\n", "ok.yaml"));
}
