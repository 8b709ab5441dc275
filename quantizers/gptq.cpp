#include "quantizers/gptq.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <vector>

#include "common/error.hpp"
#include "quantizers/bitpack.hpp"
#include "quantizers/calibrated_modifier.hpp"

namespace tqb {
namespace {

// The per-group rotation Π_j as a dense g × g matrix in double: column i is Π e_i.
Eigen::MatrixXd dense_rotation(const Rotation& r, std::size_t g) {
  std::vector<float> e(g * g, 0.0f);
  for (std::size_t i = 0; i < g; ++i) e[i * g + i] = 1.0f;
  r.forward(e.data(), g, g);  // vector i (row i of e) ← Π e_i
  Eigen::MatrixXd P(static_cast<Eigen::Index>(g), static_cast<Eigen::Index>(g));
  for (std::size_t i = 0; i < g; ++i)
    for (std::size_t k = 0; k < g; ++k) P(static_cast<Eigen::Index>(k), static_cast<Eigen::Index>(i)) = e[i * g + k];
  return P;  // column i = Π e_i
}

}  // namespace

namespace {

// The lower Cholesky factor of a (C × C, symmetric positive definite; its lower triangle is read), right-looking in
// tiles of kTile: a diagonal tile by Eigen's LLT, the panel below it by a triangular solve and the trailing lower
// triangle by one product per tile, the panel's tiles and the trailing tiles spread over OpenMP's threads. The tiles
// are fixed by C alone and each is one thread's, so the bits do not depend on the number of threads (Eigen's own LLT
// runs on one).
Eigen::MatrixXd tiled_cholesky(Eigen::MatrixXd a) {
  constexpr Eigen::Index kTile = 128;
  const Eigen::Index C = a.rows();
  for (Eigen::Index k0 = 0; k0 < C; k0 += kTile) {
    const Eigen::Index kb = std::min(kTile, C - k0), r0 = k0 + kb, rest = C - r0;
    const Eigen::LLT<Eigen::MatrixXd> diagonal(a.block(k0, k0, kb, kb));
    if (diagonal.info() != Eigen::Success) throw InputError("gptq: the damped Hessian is not positive definite (raise damp)");
    a.block(k0, k0, kb, kb).triangularView<Eigen::Lower>() = diagonal.matrixL();
    if (rest == 0) break;
    const Eigen::Index tiles = (rest + kTile - 1) / kTile;
    // The panel: L21 = A21 L11⁻ᵀ, a tile of rows at a time.
#pragma omp parallel for schedule(dynamic)
    for (Eigen::Index t = 0; t < tiles; ++t) {
      const Eigen::Index i0 = r0 + t * kTile, ib = std::min(kTile, C - i0);
      Eigen::MatrixXd panel = a.block(i0, k0, ib, kb);
      diagonal.matrixL().transpose().solveInPlace<Eigen::OnTheRight>(panel);
      a.block(i0, k0, ib, kb) = panel;
    }
    // The trailing lower triangle: A22 −= L21 L21ᵀ, tile (i, j ≤ i) by tile.
#pragma omp parallel for schedule(dynamic)
    for (Eigen::Index ij = 0; ij < tiles * (tiles + 1) / 2; ++ij) {
      Eigen::Index i = 0;
      while ((i + 1) * (i + 2) / 2 <= ij) ++i;
      const Eigen::Index j = ij - i * (i + 1) / 2;
      const Eigen::Index i0 = r0 + i * kTile, ib = std::min(kTile, C - i0), j0 = r0 + j * kTile, jb = std::min(kTile, C - j0);
      a.block(i0, j0, ib, jb).noalias() -= a.block(i0, k0, ib, kb) * a.block(j0, k0, jb, kb).transpose();
    }
  }
  a.triangularView<Eigen::StrictlyUpper>().setZero();
  return a;
}

}  // namespace

Eigen::MatrixXd inverse_hessian_factor(const Eigen::MatrixXd& h) {
  // With J the reversal of the columns' order and J H J = L Lᵀ (lower L): H⁻¹ = J L⁻ᵀ L⁻¹ J = Uᵀ U for U = J L⁻¹ J,
  // which is upper triangular. A Cholesky (C³/3 flops) and L's triangular inverse (C³/3) instead of the reference
  // implementation's three steps, a Cholesky, H⁻¹ by two triangular solves (2C³) and a Cholesky of H⁻¹.
  const Eigen::Index C = h.rows();
  const Eigen::MatrixXd lower = tiled_cholesky(h.reverse());  // J H J = L Lᵀ: both axes reversed
  // L⁻¹ a block of columns at a time: columns j0 … of L⁻¹ are zero above row j0, so a block solves only L's trailing
  // corner (about C³/3 flops in all, not C³). Blocks of a fixed width, each on one thread: the result does not depend
  // on the number of threads.
  constexpr Eigen::Index kBlock = 64;
  Eigen::MatrixXd l_inv = Eigen::MatrixXd::Zero(C, C);
  const Eigen::Index blocks = (C + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(dynamic)
  for (Eigen::Index b = 0; b < blocks; ++b) {
    const Eigen::Index j0 = b * kBlock, w = std::min(kBlock, C - j0), m = C - j0;
    Eigen::MatrixXd rhs = Eigen::MatrixXd::Identity(m, w);
    lower.bottomRightCorner(m, m).triangularView<Eigen::Lower>().solveInPlace(rhs);
    l_inv.block(j0, j0, m, w) = rhs;
  }
  Eigen::MatrixXd u = l_inv.reverse();  // J L⁻¹ J
  u.triangularView<Eigen::StrictlyLower>().setZero();  // exact zeros where the solve left rounding
  return u;
}

QuantizedMatrix gptq_quantize(const Quantizer& inner, const float* w, std::size_t rows, std::size_t cols, const Eigen::MatrixXd& hessian,
                              std::uint64_t seed, const GptqOptions& o) {
  if (!(o.damp > 0 && o.damp <= 1)) throw InputError(fmt::format("gptq: damp {} must be in (0, 1] (a fraction of mean(diag H))", o.damp));
  if (o.block < 1) throw InputError(fmt::format("gptq: block {} must be at least 1 column", o.block));
  if (hessian.rows() != static_cast<Eigen::Index>(cols) || hessian.cols() != static_cast<Eigen::Index>(cols))
    throw InputError(fmt::format("gptq: the Hessian is {} x {}; a layer of {} input columns needs {} x {}", hessian.rows(), hessian.cols(),
                                 cols, cols, cols));
  if (!hessian.allFinite()) throw InputError("gptq: the Hessian has a non-finite entry");
  if (const ShapeProblem p = inner.check_shape(rows, cols); !p.message.empty())
    throw InputError(fmt::format("gptq({}): {}", inner.name(), p.message));
  QuantizedMatrix q = inner.quantize(w, rows, cols, seed);  // the grid, and the codes GPTQ replaces
  const auto unsupported = [&](const std::string& why) {
    return InputError(fmt::format("gptq({}): {}; gptq wraps a quantizer of one pass of per-group codes on a grid (rtn, turboquant, "
                                  "rotated(rtn), llama.cpp's blocks)", inner.name(), why));
  };
  DecodePass s;
  try {
    s = inner.search_grid(q);
  } catch (const std::invalid_argument& e) {
    throw unsupported(e.what());
  }
  if (s.transform == GroupTransform::gaussian_projection || s.m != s.g) throw unsupported("its codes are a projection's, not the weights'");
  if (s.rows != rows || s.cols != cols || s.lut.empty()) throw unsupported("its grid is not one of the weights' own");
  const std::size_t g = s.g, groups = s.groups;
  const auto R = static_cast<Eigen::Index>(rows), C = static_cast<Eigen::Index>(cols), G = static_cast<Eigen::Index>(g);

  // The weights and the Hessian in the basis the codes are in: per group, v = Π_j w_j and H'_{jk} = Π_j H_{jk} Π_kᵀ.
  Eigen::MatrixXd W(R, C);
  for (Eigen::Index r = 0; r < R; ++r)
    for (Eigen::Index c = 0; c < C; ++c) W(r, c) = w[r * C + c];
  Eigen::MatrixXd H = hessian;
  if (!s.rotations.empty()) {
    std::vector<Eigen::MatrixXd> P(groups);
    for (std::size_t j = 0; j < groups; ++j) P[j] = dense_rotation(*s.rotations[j], g);
    for (std::size_t j = 0; j < groups; ++j) {
      const Eigen::Index c0 = static_cast<Eigen::Index>(j * g);
      W.middleCols(c0, G) = (W.middleCols(c0, G) * P[j].transpose()).eval();
      H.middleRows(c0, G) = (P[j] * H.middleRows(c0, G)).eval();
      H.middleCols(c0, G) = (H.middleCols(c0, G) * P[j].transpose()).eval();
    }
  }
  // Dead inputs (never non-zero in the data): nothing to compensate, the weight quantized as it is.
  for (Eigen::Index c = 0; c < C; ++c)
    if (H(c, c) == 0) H(c, c) = 1;
  H.diagonal().array() += o.damp * H.diagonal().mean();
  std::vector<Eigen::Index> order(static_cast<std::size_t>(C));
  std::iota(order.begin(), order.end(), Eigen::Index{0});
  if (o.act_order)
    std::stable_sort(order.begin(), order.end(), [&](Eigen::Index a, Eigen::Index b) { return H(a, a) > H(b, b); });
  Eigen::MatrixXd Hp(C, C), Wp(R, C);
  for (Eigen::Index i = 0; i < C; ++i) {
    Wp.col(i) = W.col(order[static_cast<std::size_t>(i)]);
    for (Eigen::Index k = 0; k < C; ++k) Hp(i, k) = H(order[static_cast<std::size_t>(i)], order[static_cast<std::size_t>(k)]);
  }
  // U: the upper Cholesky factor of H⁻¹ (H⁻¹ = Uᵀ U); its row i holds what column i's error feeds to the later columns.
  const Eigen::MatrixXd U = inverse_hessian_factor(Hp);

  // The grid: per (row, group) a and b of x̂ = a·lut[code] + b. Static: the inner quantizer's on W, as it stands.
  // Dynamic (GPTQ's reference with groups): group j's grid is the inner quantizer's on the group's weights as the error
  // feedback has left them when its first column comes up, and `grid_source` keeps those weights (in W's own basis), so
  // that one more quantization of it stores every group's grid in Q's own format at the end.
  std::vector<double> A(s.a.begin(), s.a.end()), Bo(rows * groups, 0.0);
  if (!s.b.empty()) std::copy(s.b.begin(), s.b.end(), Bo.begin());
  std::vector<float> grid_source;
  std::vector<char> grid_ready(groups, o.dynamic_groups ? 0 : 1);
  std::vector<Eigen::Index> position(static_cast<std::size_t>(C));  // where each column sits in the processing order
  for (Eigen::Index i = 0; i < C; ++i) position[static_cast<std::size_t>(order[static_cast<std::size_t>(i)])] = i;
  if (o.dynamic_groups) grid_source.assign(w, w + rows * cols);
  // A rotated format's grid of group j, from its rotated weights through the same quantizer without the rotation.
  const std::unique_ptr<Quantizer> unrotated = s.rotations.empty() ? nullptr : inner.without_rotation();
  // A format whose grids are set a span of groups at a time (a k-quant's super-block) fixes the span at its first column.
  const std::size_t span = s.grid_span;
  if (span < 1 || groups % span != 0 || (span > 1 && !s.rotations.empty())) throw unsupported("its grids span groups unevenly");
  const auto fix_grid = [&](std::size_t j_any) {
    const std::size_t j0 = j_any / span * span;
    // The span's current weights (in the codes' basis), and back in W's basis (v = w Πᵀ, so w = v Π).
    Eigen::MatrixXd v(R, G);
    for (std::size_t j = j0; j < j0 + span; ++j) {
      for (Eigen::Index k = 0; k < G; ++k) v.col(k) = Wp.col(position[j * g + static_cast<std::size_t>(k)]);
      const Eigen::MatrixXd back = s.rotations.empty() ? v : Eigen::MatrixXd(v * dense_rotation(*s.rotations[j], g));
      for (Eigen::Index r = 0; r < R; ++r)
        for (Eigen::Index k = 0; k < G; ++k)
          grid_source[static_cast<std::size_t>(r) * cols + j * g + static_cast<std::size_t>(k)] = static_cast<float>(back(r, k));
    }
    // A group's grid depends on its own weights (its span's) only: unrotated, Q on the span alone; rotated, Q without its
    // rotation on the rotated group; a rotated Q without that twin, Q on the columns up to the group's end (its rotation
    // is the seed's j-th whatever the width; cost quadratic in the groups).
    std::size_t width = span * g;
    std::vector<float> part(rows * width);
    const Quantizer* q_part = &inner;
    if (unrotated) {
      for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t k = 0; k < g; ++k) part[r * g + k] = static_cast<float>(v(static_cast<Eigen::Index>(r), static_cast<Eigen::Index>(k)));
      q_part = unrotated.get();
    } else {
      const std::size_t first = s.rotations.empty() ? j0 * g : 0;
      width = (j0 + span) * g - first;
      part.resize(rows * width);
      for (std::size_t r = 0; r < rows; ++r) std::copy_n(grid_source.data() + r * cols + first, width, part.data() + r * width);
    }
    const DecodePass ps = q_part->search_grid(q_part->quantize(part.data(), rows, width, seed));
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t k = 0; k < span; ++k) {
        const std::size_t from = r * ps.groups + ps.groups - span + k;
        A[r * groups + j0 + k] = ps.a[from];
        Bo[r * groups + j0 + k] = ps.b.empty() ? 0.0 : ps.b[from];
      }
    for (std::size_t j = j0; j < j0 + span; ++j) grid_ready[j] = 1;
  };

  std::vector<std::uint8_t> codes(rows * cols);
  const std::size_t levels = s.lut.size();
  const Eigen::Index B = o.block;
  for (Eigen::Index i1 = 0; i1 < C; i1 += B) {
    const Eigen::Index i2 = std::min(i1 + B, C), n = i2 - i1;
    Eigen::MatrixXd err(R, n);
    for (Eigen::Index i = i1; i < i2; ++i) {
      const Eigen::Index col = order[static_cast<std::size_t>(i)];
      const std::size_t j = static_cast<std::size_t>(col) / g;
      if (!grid_ready[j]) fix_grid(j);
      const double d = U(i, i);
      for (Eigen::Index r = 0; r < R; ++r) {
        const std::size_t at = static_cast<std::size_t>(r) * groups + j;
        const double a = A[at], b = Bo[at], x = Wp(r, i);
        std::size_t best = 0;
        double best_d = INFINITY;
        for (std::size_t c = 0; c < levels; ++c)
          if (const double dd = std::fabs(a * s.lut[c] + b - x); dd < best_d) {
            best_d = dd;
            best = c;
          }
        codes[static_cast<std::size_t>(r) * cols + static_cast<std::size_t>(col)] = static_cast<std::uint8_t>(best);
        err(r, i - i1) = (x - (a * s.lut[best] + b)) / d;
      }
      // Within the batch: the later columns take this column's error at once.
      Wp.middleCols(i, i2 - i).noalias() -= err.col(i - i1) * U.row(i).segment(i, i2 - i);
    }
    // After it: the batch's errors in one product (the lazy update).
    if (i2 < C) Wp.rightCols(C - i2).noalias() -= err * U.block(i1, i2, n, C - i2);
  }
  if (o.dynamic_groups) {
    // Q's own storage of the grids just used: Q on the weights each group had when its grid was fixed.
    q = inner.quantize(grid_source.data(), rows, cols, seed);
    const DecodePass stored = inner.search_grid(q);
    // Exactly the grids used, or (through the unrotated twin: the rotation's float rounding) within a few units of the
    // scale format's last place.
    const double tolerance = unrotated ? 2e-3 : 0.0;
    const auto differs = [&](double stored, double used) { return std::fabs(stored - used) > tolerance * std::fabs(used); };
    for (std::size_t at = 0; at < rows * groups; ++at)
      if (differs(stored.a[at], static_cast<float>(A[at])) || (!stored.b.empty() && differs(stored.b[at], static_cast<float>(Bo[at]))))
        throw std::logic_error(fmt::format("gptq({}): a group's grid depends on more than its own weights (row {}, group {})", inner.name(),
                                           at / groups, at % groups));
  }
  inner.set_grid_codes(q, codes.data());
  return q;
}

namespace {

class Gptq final : public CalibratedModifier {
 public:
  Gptq(const ParamSchema& schema, const Params& p, std::unique_ptr<Quantizer> inner)
      : CalibratedModifier("gptq", schema, p, std::move(inner)) {
    options_.damp = std::get<double>(p.at("damp"));
    options_.block = static_cast<int>(std::get<std::int64_t>(p.at("block")));
    options_.act_order = get_str(p, "act_order") == "on";
    options_.dynamic_groups = get_str(p, "groups") == "dynamic";
  }
  std::uint64_t storage_bytes(std::size_t rows, std::size_t cols) const override { return inner_->storage_bytes(rows, cols); }
  // The inner quantizer's, and the cols × cols Hessian with its inverse and factor (doubles) and the weights in double.
  std::uint64_t working_bytes(std::size_t rows, std::size_t cols) const override {
    return inner_->working_bytes(rows, cols) + 5 * std::uint64_t{cols} * cols * 8 + 2 * std::uint64_t{rows} * cols * 8;
  }
  QuantizedMatrix quantize_calibrated(const float* w, std::size_t rows, std::size_t cols, std::uint64_t seed,
                                      const InputStatistics& inputs) const override {
    QuantizedMatrix q = gptq_quantize(*inner_, w, rows, cols, inputs.hessian, seed, options_);
    q.format = name();
    return q;
  }
  QuantizedMatrix zero_layout(std::size_t rows, std::size_t cols, std::uint64_t seed) const override {
    QuantizedMatrix q = inner_->zero_layout(rows, cols, seed);  // gptq moves codes, never sizes
    q.format = name();
    return q;
  }
  void dequantize(const QuantizedMatrix& q, float* out) const override { inner_->dequantize(q, out); }
  std::vector<PassForm> decode_form() const override { return inner_->decode_form(); }
  void describe_decode(const QuantizedMatrix& q, std::vector<DecodePass>& out) const override { inner_->describe_decode(q, out); }

 private:
  GptqOptions options_;
};

}  // namespace

QuantizerFamily gptq_family() {
  using K = ParamSpec::Kind;
  const ParamSchema schema({
      {.name = "quantizer", .kind = K::text, .default_value = std::string("rtn"),
       .description = "the quantizer whose grid GPTQ chooses codes on (a one-line name; may be given first without its key: "
                      "gptq(rtn(bits=4,group=128)))"},
      {.name = "damp", .kind = K::real, .default_value = 0.01, .description = "fraction of mean(diag H) added to H's diagonal",
       .min = 1e-6, .max = 1.0},
      {.name = "block", .kind = K::integer, .default_value = std::int64_t{128},
       .description = "columns per lazy batch (speed only: the result does not depend on it)", .min = 1, .max = 65536},
      {.name = "act_order", .kind = K::choice, .default_value = std::string("off"),
       .description = "on: quantize columns in order of decreasing diag(H) (desc_act)", .choices = {"off", "on"}},
      {.name = "groups", .kind = K::choice, .default_value = std::string("dynamic"),
       .description = "dynamic: a group's grid (scale, norm, offset) from its weights as updated when GPTQ reaches it; static: from "
                      "the unmodified weights (static_groups)", .choices = {"dynamic", "static"}},
  });
  return {"gptq", "GPTQ's error feedback (Frantar et al. 2022) on any one-pass per-group grid quantizer; needs a model's calibration",
          schema, [schema](const Params& given) -> std::unique_ptr<Quantizer> {
            Params p = given;
            auto inner = parse_quantizer(get_str(p, "quantizer"));
            const auto form = inner->search_form();
            if (form.size() != 1 || form.front().transform == GroupTransform::gaussian_projection)
              throw InputError(fmt::format("gptq({}): gptq wraps a quantizer of one pass of per-group codes on a grid (rtn, turboquant, "
                                           "rotated(rtn), llama.cpp's block formats); {} is not one{}", inner->name(), inner->family(),
                                           inner->family() == "awq" ? " (compose the other way round: awq(gptq(Q)))" : ""));
            p["quantizer"] = inner->name();
            return std::make_unique<Gptq>(schema, p, std::move(inner));
          }};
}

}  // namespace tqb
