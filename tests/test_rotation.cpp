#include <doctest/doctest.h>

#include <Eigen/Dense>
#include <cmath>

#include "quantizers/rotation.hpp"

using namespace tqb;

namespace {

// The matrix of a rotation: apply it to the identity's rows.
Eigen::MatrixXf matrix_of(const Rotation& r) {
  const std::size_t d = r.dim();
  Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> e =
      Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>::Identity(d, d);
  r.forward(e.data(), d, d);  // row i = Π e_i = column i of Π
  return e.transpose();
}

}  // namespace

TEST_CASE("rotations are orthogonal to 1e-5 and invert exactly") {
  for (auto kind : {RotationKind::haar, RotationKind::hadamard, RotationKind::none})
    for (std::size_t d : {2u, 7u, 64u, 96u, 128u, 136u}) {
      CAPTURE(to_string(kind));
      CAPTURE(d);
      auto r = make_rotation(kind, d, 42);
      const Eigen::MatrixXf q = matrix_of(*r);
      const Eigen::MatrixXf qtq = q.transpose() * q;
      CHECK((qtq - Eigen::MatrixXf::Identity(d, d)).cwiseAbs().maxCoeff() < 1e-5f);
      // forward then inverse on a strided batch returns the input.
      const std::size_t n = 5, stride = d + 3;
      std::vector<float> x(n * stride), orig;
      for (std::size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37f * i);
      orig = x;
      r->forward(x.data(), n, stride);
      r->inverse(x.data(), n, stride);
      float err = 0;
      for (std::size_t i = 0; i < x.size(); ++i) err = std::max(err, std::fabs(x[i] - orig[i]));
      CHECK(err < 1e-5f);
      // The padding between strided vectors is untouched.
      for (std::size_t i = 0; i < n; ++i)
        for (std::size_t k = d; k < stride; ++k) CHECK(x[i * stride + k] == orig[i * stride + k]);
    }
}

TEST_CASE("rotations are reproducible from their seed and differ between seeds") {
  for (auto kind : {RotationKind::haar, RotationKind::hadamard}) {
    CAPTURE(to_string(kind));
    const Eigen::MatrixXf a = matrix_of(*make_rotation(kind, 64, 7));
    const Eigen::MatrixXf b = matrix_of(*make_rotation(kind, 64, 7));
    const Eigen::MatrixXf c = matrix_of(*make_rotation(kind, 64, 8));
    CHECK(a == b);
    CHECK((a - c).cwiseAbs().maxCoeff() > 0.01f);
    CHECK(matrix_of(*cached_rotation(kind, 64, 7)) == a);
  }
  // A pinned value: the first entry of the seed-1 Hadamard rotation in 4 dimensions is ±1/2, and the
  // same on every machine (signs come from xoshiro256**).
  const Eigen::MatrixXf h = matrix_of(*make_rotation(RotationKind::hadamard, 4, 1));
  CHECK(std::fabs(h(0, 0)) == 0.5f);
}

TEST_CASE("a rotated unit vector's coordinates have variance 1/d") {
  // The premise of TurboQuant §3: after a random rotation each coordinate of a unit vector follows
  // the beta density with variance 1/d, whatever the vector (here: e_0, the worst case for RTN).
  for (auto kind : {RotationKind::haar, RotationKind::hadamard}) {
    const std::size_t d = 256, trials = 200;
    double sum2 = 0, max_abs = 0;
    for (std::size_t t = 0; t < trials; ++t) {
      std::vector<float> x(d, 0.0f);
      x[0] = 1.0f;
      make_rotation(kind, d, 1000 + t)->forward(x.data(), 1, d);
      for (float v : x) {
        sum2 += v * v;
        max_abs = std::max<double>(max_abs, std::fabs(v));
      }
    }
    CAPTURE(to_string(kind));
    CHECK(sum2 / (trials * d) == doctest::Approx(1.0 / d).epsilon(1e-4));
    CHECK(max_abs < 0.5);  // no coordinate keeps the spike
  }
}

TEST_CASE("the fast Walsh-Hadamard transform equals the textbook butterflies bit for bit") {
  for (std::size_t n : {1u, 2u, 4u, 8u, 16u, 128u, 1024u}) {
    std::vector<float> x(n), ref(n);
    for (std::size_t i = 0; i < n; ++i) x[i] = ref[i] = std::cos(1.3f * i) * (1 + i % 5);
    fwht(x.data(), n);
    for (std::size_t h = 1; h < n; h *= 2)
      for (std::size_t i = 0; i < n; i += 2 * h)
        for (std::size_t j = i; j < i + h; ++j) {
          const float a = ref[j], b = ref[j + h];
          ref[j] = a + b;
          ref[j + h] = a - b;
        }
    CAPTURE(n);
    CHECK(x == ref);
  }
}
