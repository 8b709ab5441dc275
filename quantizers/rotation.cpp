#include "quantizers/rotation.hpp"

#include <Eigen/Dense>
#include <cmath>
#include <list>
#include <map>
#include <mutex>
#include <stdexcept>
#include <tuple>

#include "common/rng.hpp"
#include "common/simd.hpp"

namespace tqb {

std::string to_string(RotationKind k) {
  switch (k) {
    case RotationKind::none: return "none";
    case RotationKind::haar: return "haar";
    case RotationKind::hadamard: return "hadamard";
  }
  return "?";
}

const std::vector<std::string>& rotation_kind_names() {
  static const std::vector<std::string> names{"haar", "hadamard", "none"};
  return names;
}

RotationKind parse_rotation_kind(const std::string& s) {
  if (s == "haar") return RotationKind::haar;
  if (s == "hadamard") return RotationKind::hadamard;
  if (s == "none") return RotationKind::none;
  throw std::invalid_argument("unknown rotation '" + s + "'");
}

void fwht(float* x, std::size_t n) { fwht_inline(x, n); }

namespace {

using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using StridedMap = Eigen::Map<RowMatrix, 0, Eigen::OuterStride<>>;

class IdentityRotation final : public Rotation {
 public:
  using Rotation::Rotation;
  RotationKind kind() const override { return RotationKind::none; }
  void forward(float*, std::size_t, std::size_t) const override {}
  void inverse(float*, std::size_t, std::size_t) const override {}
};

// Eigen blocks a multithreaded product by its thread count, so sums (and the codes a rounding decides)
// would depend on OMP_NUM_THREADS, and a sweep's shards run with other counts than a single process. Work
// run here sees an active two-thread region and keeps Eigen on one thread (its fixed blocking), whatever
// the caller's thread count.
template <class F>
void eigen_single_threaded(F&& fn) {
#pragma omp parallel num_threads(2)
#pragma omp single
  fn();
}

constexpr std::ptrdiff_t kRowBlock = 64;  // rows per product in the rotations: fixed, so thread-independent

class HaarRotation final : public Rotation {
 public:
  HaarRotation(std::size_t d, std::uint64_t seed) : Rotation(d) {
    Rng rng(seed);
    Eigen::MatrixXd g(d, d);
    for (Eigen::Index j = 0; j < g.cols(); ++j)
      for (Eigen::Index i = 0; i < g.rows(); ++i) g(i, j) = rng.normal();
    Eigen::MatrixXd q;
    eigen_single_threaded([&] {
      Eigen::HouseholderQR<Eigen::MatrixXd> qr(g);
      q = qr.householderQ();
      const auto& r = qr.matrixQR();
      for (Eigen::Index j = 0; j < q.cols(); ++j)
        if (r(j, j) < 0) q.col(j) = -q.col(j);
    });
    q_ = q.cast<float>();
  }
  RotationKind kind() const override { return RotationKind::haar; }
  void forward(float* x, std::size_t n, std::size_t stride) const override { apply(x, n, stride, true); }
  void inverse(float* x, std::size_t n, std::size_t stride) const override { apply(x, n, stride, false); }

 private:
  // Rows x_i ← Q x_i (forward) or Qᵀ x_i, in fixed blocks of rows, one thread per block.
  void apply(float* x, std::size_t n, std::size_t stride, bool forward) const {
    StridedMap m(x, static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(dim()), Eigen::OuterStride<>(static_cast<Eigen::Index>(stride)));
#pragma omp parallel for schedule(static) if (n > static_cast<std::size_t>(kRowBlock))
    for (std::ptrdiff_t b = 0; b < static_cast<std::ptrdiff_t>(n); b += kRowBlock) {
      const Eigen::Index rows = std::min<Eigen::Index>(kRowBlock, static_cast<Eigen::Index>(n) - b);
      RowMatrix y = forward ? RowMatrix(m.middleRows(b, rows) * q_.transpose()) : RowMatrix(m.middleRows(b, rows) * q_);
      m.middleRows(b, rows) = y;
    }
  }
  RowMatrix q_;  // d x d, orthogonal
};

class HadamardRotation final : public Rotation {
 public:
  HadamardRotation(std::size_t d, std::uint64_t seed) : Rotation(d) {
    Rng rng(seed);
    plan_.signs.resize(d);
    for (auto& s : plan_.signs) s = (rng.next_u64() >> 63) ? -1.0f : 1.0f;
    for (std::size_t left = d, start = 0; left > 0;) {
      std::size_t block = std::size_t{1} << (63 - __builtin_clzll(left));
      plan_.blocks.push_back({start, block});
      start += block;
      left -= block;
    }
  }
  RotationKind kind() const override { return RotationKind::hadamard; }
  const HadamardPlan* hadamard_plan() const override { return &plan_; }
  void forward(float* x, std::size_t n, std::size_t stride) const override { apply(x, n, stride, true); }
  void inverse(float* x, std::size_t n, std::size_t stride) const override { apply(x, n, stride, false); }

 private:
  TQB_MULTIVERSION void apply(float* x, std::size_t n, std::size_t stride, bool forward) const {
    for (std::size_t i = 0; i < n; ++i) {
      if (forward) hadamard_forward(plan_, x + i * stride);
      else hadamard_inverse(plan_, x + i * stride);
    }
  }
  HadamardPlan plan_;
};

// A small LRU cache of immutable objects keyed by (tag, a, b, seed), bounded in bytes.
template <class T>
class SharedCache {
 public:
  using Key = std::tuple<int, std::size_t, std::size_t, std::uint64_t>;
  template <class Make>
  std::shared_ptr<const T> get(const Key& key, std::size_t bytes, Make make) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = index_.find(key);
      if (it != index_.end()) {
        order_.splice(order_.begin(), order_, it->second);
        return it->second->value;
      }
    }
    std::shared_ptr<const T> value = make();  // built outside the lock: may take seconds
    std::lock_guard<std::mutex> lock(mutex_);
    if (index_.count(key)) return index_[key]->value;
    order_.push_front({key, value, bytes});
    index_[key] = order_.begin();
    total_ += bytes;
    while (total_ > kBudget && order_.size() > 1) {
      total_ -= order_.back().bytes;
      index_.erase(order_.back().key);
      order_.pop_back();
    }
    return value;
  }

 private:
  static constexpr std::size_t kBudget = std::size_t{512} << 20;
  struct Entry {
    Key key;
    std::shared_ptr<const T> value;
    std::size_t bytes;
  };
  std::mutex mutex_;
  std::list<Entry> order_;
  std::map<Key, typename std::list<Entry>::iterator> index_;
  std::size_t total_ = 0;
};

}  // namespace

std::unique_ptr<Rotation> make_rotation(RotationKind kind, std::size_t dim, std::uint64_t seed) {
  switch (kind) {
    case RotationKind::none: return std::make_unique<IdentityRotation>(dim);
    case RotationKind::haar: return std::make_unique<HaarRotation>(dim, seed);
    case RotationKind::hadamard: return std::make_unique<HadamardRotation>(dim, seed);
  }
  return nullptr;
}

std::shared_ptr<const Rotation> cached_rotation(RotationKind kind, std::size_t dim, std::uint64_t seed) {
  static SharedCache<Rotation> cache;
  const std::size_t bytes = kind == RotationKind::haar ? dim * dim * sizeof(float) : dim * sizeof(float);
  return cache.get({static_cast<int>(kind), dim, 0, seed}, bytes,
                   [&] { return std::shared_ptr<const Rotation>(make_rotation(kind, dim, seed)); });
}

std::shared_ptr<const std::vector<float>> cached_gaussian_matrix(std::size_t m, std::size_t d, std::uint64_t seed) {
  static SharedCache<std::vector<float>> cache;
  return cache.get({0, m, d, seed}, m * d * sizeof(float), [&] {
    auto s = std::make_shared<std::vector<float>>(m * d);
    Rng rng(seed);
    for (auto& x : *s) x = static_cast<float>(rng.normal());
    return std::shared_ptr<const std::vector<float>>(s);
  });
}

}  // namespace tqb
