// TurboQuant family: the paper's distortion and bias claims, residual stacks, exact sizes.
#include <doctest/doctest.h>

#include <cmath>

#include "common/error.hpp"
#include "common/rng.hpp"
#include "harness/data_source.hpp"
#include "quantizers/codebook.hpp"
#include "quantizers/registry.hpp"
#include "test_util.hpp"

using namespace tqb;

namespace {

Matrix roundtrip(const Quantizer& q, const Matrix& w, std::uint64_t seed = 11) {
  Matrix out(w.rows(), w.cols());
  q.dequantize(q.quantize(w.data(), w.rows(), w.cols(), seed), out.data());
  return out;
}

double mean_row_error(const Matrix& w, const Matrix& w_hat) {
  return (w - w_hat).cast<double>().rowwise().squaredNorm().mean();
}

// Inner products <y, x> and <y, x̃> for queries correlated with each row (y = unit(x + noise)), so the
// estimate's bias shows in its mean as well as its slope.
struct Pairs {
  std::vector<double> exact, estimate;
};
Pairs correlated_pairs(const Matrix& x, const Matrix& x_hat, std::size_t per_row, std::uint64_t seed) {
  Pairs p;
  Rng rng(seed);
  for (Eigen::Index i = 0; i < x.rows(); ++i)
    for (std::size_t k = 0; k < per_row; ++k) {
      Eigen::VectorXd y = x.row(i).cast<double>().transpose();
      for (Eigen::Index j = 0; j < y.size(); ++j) y(j) += rng.normal() / std::sqrt(double(y.size()));
      y.normalize();
      p.exact.push_back(y.dot(x.row(i).cast<double>().transpose()));
      p.estimate.push_back(y.dot(x_hat.row(i).cast<double>().transpose()));
    }
  return p;
}

}  // namespace

TEST_CASE("turboquant D_mse at d = 1536 is within 2% of the Lloyd-Max value, b = 1..4") {
  const std::size_t d = 1536;
  const Matrix x = random_unit_rows(400, d, 5);
  for (int b = 1; b <= 4; ++b) {
    CAPTURE(b);
    auto q = parse_quantizer("turboquant(bits=" + std::to_string(b) + ",codebook=beta,rotation=haar,group=row)");
    const double measured = mean_row_error(x, roundtrip(*q, x));
    const double predicted = lloyd_max_codebook(CodebookDistribution::beta, d, b).distortion * d;
    CHECK(measured == doctest::Approx(predicted).epsilon(0.02));
  }
}

TEST_CASE("turboquant_prod is unbiased, 1-bit turboquant shrinks inner products by 2/pi") {
  const std::size_t d = 256;
  const Matrix x = random_unit_rows(2000, d, 6);
  for (int b : {1, 2, 3}) {
    CAPTURE(b);
    auto prod = parse_quantizer("turboquant_prod(bits=" + std::to_string(b) + ")");
    const Pairs p = correlated_pairs(x, roundtrip(*prod, x), 5, 7);
    REQUIRE(p.exact.size() >= 10000);
    double mean = 0, m2 = 0;
    for (std::size_t i = 0; i < p.exact.size(); ++i) mean += p.estimate[i] - p.exact[i];
    mean /= p.exact.size();
    for (std::size_t i = 0; i < p.exact.size(); ++i) m2 += std::pow(p.estimate[i] - p.exact[i] - mean, 2);
    const double se = std::sqrt(m2 / (p.exact.size() - 1) / p.exact.size());
    CHECK(std::fabs(mean) <= 3 * se);
  }
  auto mse1 = parse_quantizer("turboquant(bits=1,rotation=haar)");
  const Pairs p = correlated_pairs(x, roundtrip(*mse1, x), 5, 7);
  double sxy = 0, sxx = 0;
  for (std::size_t i = 0; i < p.exact.size(); ++i) {
    sxy += p.exact[i] * p.estimate[i];
    sxx += p.exact[i] * p.exact[i];
  }
  CHECK(sxy / sxx == doctest::Approx(2 / M_PI).epsilon(0.02));
}

TEST_CASE("turboquant D_mse is non-increasing in bits for every rotation and codebook") {
  const Matrix x = random_unit_rows(200, 256, 8);
  for (const std::string rot : {"haar", "hadamard", "none"})
    for (const std::string cb : {"beta", "gaussian"}) {
      double prev = INFINITY;
      for (int b = 1; b <= 8; ++b) {
        auto q = parse_quantizer("turboquant(bits=" + std::to_string(b) + ",codebook=" + cb + ",rotation=" + rot +
                                 ",group=64)");
        const double e = mean_row_error(x, roundtrip(*q, x));
        CAPTURE(q->name());
        CHECK(e <= prev);
        prev = e;
      }
    }
}

TEST_CASE("a 4+4 residual's error is at most 1/50 of a single 4-bit pass") {
  const Matrix w = test::random_normal_matrix(256, 1024, 9);
  for (const std::string rot : {"haar", "hadamard"}) {
    CAPTURE(rot);
    const double one = mean_row_error(w, roundtrip(*parse_quantizer("turboquant(bits=4,group=128,rotation=" + rot + ")"), w));
    const double two = mean_row_error(w, roundtrip(*parse_quantizer("residual(stack=4+4,group=128,rotation=" + rot + ")"), w));
    CHECK(two <= one / 50);
  }
  // Seed strategies are a real ablation axis: re-using pass 0's rotation gives different codes.
  const Matrix a = roundtrip(*parse_quantizer("residual(stack=4+2,group=128,seeds=shared)"), w);
  const Matrix b = roundtrip(*parse_quantizer("residual(stack=4+2,group=128,seeds=different)"), w);
  CHECK((a - b).cwiseAbs().maxCoeff() > 0);
}

TEST_CASE("bits per weight are exact for every variant") {
  const Matrix w = test::random_normal_matrix(16, 1024, 10);
  struct Case {
    std::string name;
    double bpw;
  };
  for (const Case& c : std::vector<Case>{
           {"turboquant(bits=4,group=128,norm=fp32,rotation=hadamard)", 4.25},
           {"turboquant(bits=3,group=64,norm=fp16)", 3.25},
           {"turboquant(bits=2,group=row,norm=bf16)", 2 + 16.0 / 1024},
           {"residual(stack=4+4,group=128)", 8.5},
           {"residual(stack=4+2,group=128)", 6.5},
           {"residual(stack=3+2,group=128)", 5.5},
           {"residual(stack=3+1-qjl,group=128)", 4.5},
           {"residual(stack=4,group=32,norm=fp16)", 4.5},
           {"residual(stack=rtn(bits=4,group=64,mode=asym,scale=fp16)+2,group=128)", 4.5 + 2.25},
           {"turboquant_prod(bits=4,group=128,norm=fp16)", 4.25},
           {"turboquant_prod(bits=1,group=row)", 1 + 32.0 / 1024},
           {"qjl(sketch=d,group=128)", 1.25},
           {"qjl(sketch=2d,group=64,norm=bf16)", 2.25},
           {"qjl(sketch=64,group=128)", 0.75},
       }) {
    CAPTURE(c.name);
    auto q = parse_quantizer(c.name);
    CHECK(q->quantize(w.data(), w.rows(), w.cols(), 1).bits_per_weight() == doctest::Approx(c.bpw).epsilon(1e-12));
  }
}

TEST_CASE("residual stacks have canonical names that parse back") {
  CHECK(parse_quantizer("residual(stack=4 + qjl)")->name() ==
        "residual(stack=4+1-qjl,codebook=beta,rotation=haar,group=128,norm=fp32,seeds=different)");
  const std::string nested = parse_quantizer("residual(stack=rtn(bits=2)+3,group=64)")->name();
  CHECK(nested ==
        "residual(stack=rtn(bits=2,group=128,mode=sym,scale=fp16)+3,codebook=beta,rotation=haar,group=64,norm=fp32,"
        "seeds=different)");
  CHECK(parse_quantizer(nested)->name() == nested);
  CHECK_THROWS_WITH_AS(parse_quantizer("residual(stack=4+x)"), doctest::Contains("pass 'x' is not valid"), InputError);
  CHECK_THROWS_WITH_AS(parse_quantizer("residual(stack=4++2)"), doctest::Contains("empty pass"), InputError);
  CHECK_THROWS_WITH_AS(parse_quantizer("residual(stack=9)"), doctest::Contains("1 to 8 bits"), InputError);
}

TEST_CASE("weight mode handles groups that are not powers of two and zero rows") {
  Matrix w = test::random_normal_matrix(4, 96, 12);
  w.row(2).setZero();
  for (const std::string rot : {"haar", "hadamard", "none"}) {
    auto q = parse_quantizer("turboquant(bits=4,group=row,rotation=" + rot + ")");
    const Matrix back = roundtrip(*q, w);
    CHECK(back.row(2).cwiseAbs().maxCoeff() == 0.0f);
    CHECK(mean_row_error(w, back) < 0.02 * w.cast<double>().rowwise().squaredNorm().mean());
  }
}
