#include <doctest/doctest.h>

#include <vector>

#include "common/error.hpp"
#include "common/rng.hpp"
#include "quantizers/registry.hpp"

using namespace tqb;

namespace {

// Parameter sets to try for a family: every choice value and a few values of each integer and real,
// varied one parameter at a time from the defaults.
std::vector<Params> sample_params(const QuantizerFamily& f) {
  std::vector<Params> out{Params{}};
  for (const auto& s : f.schema.specs()) {
    std::vector<ParamValue> values;
    switch (s.kind) {
      case ParamSpec::Kind::choice:
        for (const auto& c : s.choices) values.emplace_back(c);
        break;
      case ParamSpec::Kind::integer:
        for (const auto& a : s.aliases) values.emplace_back(a.second);
        values.emplace_back(static_cast<std::int64_t>(s.min));
        values.emplace_back(static_cast<std::int64_t>(s.max));
        break;
      case ParamSpec::Kind::real:
        values.emplace_back(s.min);
        values.emplace_back(s.max);
        break;
      case ParamSpec::Kind::text: break;
    }
    for (const auto& v : values)
      if (s.check(v).empty()) out.push_back(Params{{s.name, v}});
  }
  return out;
}

}  // namespace

TEST_CASE("parse(name(q)) == q for every registered quantizer") {
  REQUIRE(!quantizer_families().empty());
  Rng rng(1);
  std::vector<float> w(8 * 64);
  for (auto& x : w) x = static_cast<float>(rng.normal());
  for (const auto& f : quantizer_families()) {
    for (const auto& p : sample_params(f)) {
      std::unique_ptr<Quantizer> q;
      try {
        q = make_quantizer(f.name, p);
      } catch (const InputError&) {
        continue;  // a combination the family rejects (cross-parameter constraint)
      }
      const std::string name = q->name();
      CAPTURE(name);
      auto back = parse_quantizer(name);
      CHECK(back->name() == name);
      CHECK(back->family() == q->family());
      CHECK(back->params() == q->params());
      if (q->check_shape(8, 64).message.empty()) {
        const auto a = q->quantize(w.data(), 8, 64, 5);
        const auto b = back->quantize(w.data(), 8, 64, 5);
        CHECK(a.codes == b.codes);
        CHECK(a.scales == b.scales);
        CHECK(a.format == name);
      }
    }
  }
}

TEST_CASE("short names fill defaults and canonicalize") {
  CHECK(parse_quantizer("rtn")->name() == "rtn(bits=4,group=128,mode=sym,scale=fp16)");
  CHECK(parse_quantizer(" rtn( group = row , bits=3 ) ")->name() == "rtn(bits=3,group=row,mode=sym,scale=fp16)");
}

TEST_CASE("bad quantizer names are rejected with what is valid") {
  auto message = [](const std::string& name) {
    try {
      parse_quantizer(name);
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  CHECK(message("rnt(bits=4)").find("did you mean 'rtn'") != std::string::npos);
  CHECK(message("rtn(bitz=4)").find("did you mean 'bits'") != std::string::npos);
  CHECK(message("rtn(bits=9)").find("out of range") != std::string::npos);
  CHECK(message("rtn(bits=four)").find("expected an integer from 1 to 8") != std::string::npos);
  CHECK(message("rtn(group=100)").find("not a power of two") != std::string::npos);
  CHECK(message("rtn(mode=symm)").find("did you mean 'sym'") != std::string::npos);
  CHECK(message("rtn(bits=4").find("missing ')'") != std::string::npos);
  CHECK(message("rtn(bits)").find("has no '='") != std::string::npos);
  CHECK(message("rtn(bits=4,bits=5)").find("given twice") != std::string::npos);
  CHECK(message("(bits=4)").find("missing family") != std::string::npos);
}

TEST_CASE("working_bytes grows with the state a format holds: Haar rotations, sketches, residual passes") {
  const std::size_t rows = 64, cols = 65536;
  const auto haar = parse_quantizer("turboquant(bits=2,rotation=haar,group=row)")->working_bytes(rows, cols);
  const auto hadamard = parse_quantizer("turboquant(bits=2,rotation=hadamard,group=row)")->working_bytes(rows, cols);
  const auto rtn = parse_quantizer("rtn(bits=4,group=128)")->working_bytes(rows, cols);
  CHECK(haar >= std::uint64_t{cols} * cols * 4);  // the d x d float rotation alone
  CHECK(hadamard < std::uint64_t{rows} * cols * 4);
  CHECK(rtn >= std::uint64_t{rows} * cols / 2);  // at least the packed 4-bit codes
  const auto sketch = parse_quantizer("qjl(sketch=2d,group=1024)")->working_bytes(rows, cols);
  CHECK(sketch >= std::uint64_t{64} * 2048 * 1024 * 4);  // 64 groups' 2048 x 1024 projections
  const auto stack = parse_quantizer("turboquant_prod(bits=3,group=1024)")->working_bytes(rows, cols);
  CHECK(stack > std::uint64_t{rows} * cols * 8);  // residual and approximation copies
}

TEST_CASE("storage_bytes(rows, cols) is what quantize() stores, for every registered quantizer and shape") {
  // Shapes with whole, partial and fallback blocks: 256 (k-quant super-blocks), 96 (32-blocks only: the
  // k-quants' fallback), 40 (no ggml block; groups of 8) and odd row counts (the bit stream's last byte).
  const std::vector<std::pair<std::size_t, std::size_t>> shapes{{3, 256}, {5, 96}, {7, 40}, {1, 512}};
  Rng rng(2);
  std::size_t checked = 0;
  for (const auto& f : quantizer_families())
    for (const auto& p : sample_params(f)) {
      std::unique_ptr<Quantizer> q;
      try {
        q = make_quantizer(f.name, p);
      } catch (const InputError&) {
        continue;
      }
      for (const auto& [rows, cols] : shapes) {
        if (!q->check_shape(rows, cols).message.empty()) continue;
        std::vector<float> w(rows * cols);
        for (auto& x : w) x = static_cast<float>(rng.normal());
        CAPTURE(q->name());
        CAPTURE(cols);
        // A calibrated quantizer (gptq, awq) with the statistics of white inputs.
        const InputStatistics white{Eigen::MatrixXd::Identity(cols, cols), Eigen::VectorXd::Constant(cols, std::sqrt(2 / M_PI)), cols};
        const QuantizedMatrix m = q->needs_calibration() ? q->quantize_calibrated(w.data(), rows, cols, 3, white)
                                                         : q->quantize(w.data(), rows, cols, 3);
        CHECK(q->storage_bytes(rows, cols) == m.storage_bytes());
        ++checked;
      }
    }
  CHECK(checked > 100);
}
