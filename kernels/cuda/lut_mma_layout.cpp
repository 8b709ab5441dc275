#include "kernels/cuda/lut_mma_layout.hpp"

#include <cmath>
#include <cstring>
#include <stdexcept>

#include "kernels/lut_plan.hpp"
#include "quantizers/quantizer.hpp"
#include "quantizers/bitpack.hpp"

namespace tqb {

namespace {

std::string pass_problem(const PassForm& f) {
  if (f.transform == GroupTransform::gaussian_projection)
    return "the CUDA lut_mma kernels read codes with a scalar lookup table, not sign sketches of a projection (qjl)";
  if (f.bits < 2 || f.bits > 4) return "the CUDA lut_mma kernels read 2-, 3- and 4-bit codes, not " + std::to_string(f.bits) + "-bit";
  if (f.group < 32 || f.group > 256 || (f.group & (f.group - 1)) != 0) return "the CUDA lut_mma kernels need groups of 32, 64, 128 or 256 columns";
  if (f.transform == GroupTransform::haar)
    return "the CUDA lut_mma kernels rotate activations with the randomized Hadamard transform; a Haar rotation is a dense g×g product per group";
  return "";
}

}  // namespace

std::string lut_mma_supports(const Quantizer& quantizer) {
  const auto form = quantizer.decode_form();
  if (form.empty())
    return "the CUDA lut_mma kernels read formats with a per-group decode description (rtn, turboquant, rotated, their "
           "residual stacks), not " + undescribed_family(quantizer);
  if (form.size() > 2) return "the CUDA lut_mma kernels read stacks of at most two passes";
  for (const PassForm& f : form)
    if (auto why = pass_problem(f); !why.empty()) return why;
  return "";
}

std::size_t LutMmaLayout::bytes() const {
  std::size_t n = 0;
  for (const auto& p : passes) n += 4 * (p.codes.size() + p.scales.size() + p.offsets.size() + p.signs.size() + p.pair_lut.size());
  return n;
}

LutMmaLayout make_lut_mma_layout(const Quantizer& quantizer, const QuantizedMatrix& q) {
  if (auto why = lut_mma_supports(quantizer); !why.empty()) throw std::invalid_argument(why);
  if (const ShapeProblem sp = quantizer.check_shape(q.rows, q.cols); !sp.message.empty())
    throw std::invalid_argument("lut_mma: " + quantizer.name() + " cannot hold a " + std::to_string(q.rows) + "x" + std::to_string(q.cols) +
                                " matrix: " + sp.message);
  const std::vector<DecodePass> plan = decode_passes(quantizer, q);
  LutMmaLayout L;
  L.rows = q.rows;
  L.cols = q.cols;
  L.stripes = (q.rows + 15) / 16;
  L.ktiles = (q.cols + 63) / 64;
  std::vector<std::uint8_t> codes(q.rows * q.cols);
  for (const DecodePass& s : plan) {
    LutMmaPass P;
    P.bits = s.bits;
    P.log2_group = __builtin_ctzll(s.g);
    P.rotated = s.transform == GroupTransform::hadamard;
    P.has_offset = !s.b.empty();
    const int B = s.bits;
    const std::size_t groups = L.groups_alloc(P);
    unpack_codes(s.codes, q.rows * q.cols, B, codes.data());
    auto code_at = [&](std::size_t r, std::size_t k) -> std::uint32_t {
      return (r < q.rows && k < q.cols) ? codes[r * q.cols + k] : 0u;
    };
    // Codes: lane L's pair i = 4s + r at bit 2B·i of its B words (the header's layout).
    P.codes.assign(L.stripes * L.ktiles * 32 * B, 0u);
    for (std::size_t st = 0; st < L.stripes; ++st)
      for (std::size_t kt = 0; kt < L.ktiles; ++kt)
        for (int lane = 0; lane < 32; ++lane) {
          std::uint32_t* w = P.codes.data() + ((st * L.ktiles + kt) * 32 + lane) * B;
          const int gid = lane / 4, tid = lane % 4;
          for (int i = 0; i < 16; ++i) {
            const int sub = i / 4, reg = i % 4;
            const std::size_t row = 16 * st + gid + 8 * (reg & 1);
            const std::size_t k = 64 * kt + 16 * sub + 2 * tid + 8 * (reg >> 1);
            const std::uint64_t field = code_at(row, k) | (code_at(row, k + 1) << B);
            const int bit = 2 * B * i;
            const std::uint64_t shifted = field << (bit & 31);
            w[bit >> 5] |= static_cast<std::uint32_t>(shifted);
            if ((bit & 31) + 2 * B > 32) w[(bit >> 5) + 1] |= static_cast<std::uint32_t>(shifted >> 32);
          }
        }
    // Scales and offsets: bf16 pairs (row gid, row gid + 8) per (stripe, group, gid).
    auto side_words = [&](const std::vector<float>& v) {
      std::vector<std::uint32_t> out(L.stripes * groups * 8, 0u);
      for (std::size_t st = 0; st < L.stripes; ++st)
        for (std::size_t j = 0; j < s.groups; ++j)
          for (int gid = 0; gid < 8; ++gid) {
            const std::size_t r0 = 16 * st + gid, r1 = r0 + 8;
            const std::uint32_t lo = r0 < q.rows ? to_bf16_bits(v[r0 * s.groups + j]) : 0u;
            const std::uint32_t hi = r1 < q.rows ? to_bf16_bits(v[r1 * s.groups + j]) : 0u;
            out[(st * groups + j) * 8 + gid] = lo | (hi << 16);
          }
      return out;
    };
    P.scales = side_words(s.a);
    if (P.has_offset) P.offsets = side_words(s.b);
    // Signs of the per-group randomized Hadamard rotations, one bit per column.
    P.signs.assign(L.cols_pad() / 32, 0u);
    if (P.rotated)
      for (std::size_t j = 0; j < s.groups; ++j) {
        const HadamardPlan* h = s.rotations[j]->hadamard_plan();
        if (h == nullptr || h->blocks.size() != 1) throw std::invalid_argument("lut_mma: expected a one-block Hadamard rotation per group");
        for (std::size_t i = 0; i < s.g; ++i)
          if (h->signs[i] < 0) P.signs[(j * s.g + i) / 32] |= 1u << ((j * s.g + i) % 32);
      }
    // The pair table.
    const std::uint32_t codes_per = 1u << B;
    P.pair_lut.resize(codes_per * codes_per);
    for (std::uint32_t idx = 0; idx < P.pair_lut.size(); ++idx)
      P.pair_lut[idx] = to_bf16_bits(s.lut[idx & (codes_per - 1)]) | (static_cast<std::uint32_t>(to_bf16_bits(s.lut[idx >> B])) << 16);
    L.passes.push_back(std::move(P));
  }
  return L;
}

namespace {

float bf16_round(float x) { return from_bf16_bits(to_bf16_bits(x)); }

// One rounding of an exact double to bf16 (as fma.rn.bf16x2 does), avoiding the double rounding of
// double → float → bf16: only a float that lands on a bf16 tie needs the exact value to break it.
float bf16_round_exact(double v) {
  const float f = static_cast<float>(v);
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0xffffu) == 0x8000u && static_cast<double>(f) != v) {
    const bool away = std::fabs(v) > std::fabs(static_cast<double>(f));  // the tie is broken by the lost bits
    const std::uint32_t t = (u & 0xffff0000u) + (away ? 0x10000u : 0u);
    float r;
    std::memcpy(&r, &t, 4);
    return r;
  }
  return bf16_round(f);
}

template <int B>
void emulate_pass(const LutMmaLayout& L, const LutMmaPass& P, const std::vector<float>& xr, std::size_t n, std::vector<double>& acc,
                  std::vector<double>& mag, LutMmaArith arith) {
  const std::size_t groups = L.groups_alloc(P), cols_pad = L.cols_pad(), rows_pad = L.rows_pad();
  for (std::size_t st = 0; st < L.stripes; ++st)
    for (std::size_t kt = 0; kt < L.ktiles; ++kt)
      for (int lane = 0; lane < 32; ++lane) {
        const std::uint32_t* w = P.codes.data() + ((st * L.ktiles + kt) * 32 + lane) * B;
        const int gid = lane / 4, tid = lane % 4;
        for (int i = 0; i < 16; ++i) {
          const int sub = i / 4, reg = i % 4;
          const std::size_t row = 16 * st + gid + 8 * (reg & 1);
          const std::size_t k = 64 * kt + 16 * sub + 2 * tid + 8 * (reg >> 1);
          const std::size_t j = k >> P.log2_group;
          const std::uint32_t entry = P.pair_lut[lut_mma_pair_field<B>(w, i)];
          const std::uint32_t sw = P.scales[(st * groups + j) * 8 + gid];
          const float a = from_bf16_bits(static_cast<std::uint16_t>((reg & 1) ? sw >> 16 : sw));
          float b = 0;
          if (P.has_offset) {
            const std::uint32_t ow = P.offsets[(st * groups + j) * 8 + gid];
            b = from_bf16_bits(static_cast<std::uint16_t>((reg & 1) ? ow >> 16 : ow));
          }
          for (int h = 0; h < 2; ++h) {  // the two weights of the pair
            const double lut = from_bf16_bits(static_cast<std::uint16_t>(h ? entry >> 16 : entry));
            // bf16_decode: one bf16 rounding of lut·a + b; group_scale: a·lut + b with bf16 a, lut, b, unrounded
            const double wt = arith == LutMmaArith::bf16_decode ? static_cast<double>(bf16_round_exact(lut * a + b)) : lut * a + b;
            const double m = std::fabs(lut * a) + std::fabs(b);
            for (std::size_t t = 0; t < n; ++t) {
              acc[t * rows_pad + row] += static_cast<double>(wt) * xr[t * cols_pad + k + h];
              mag[t * rows_pad + row] += m * std::fabs(xr[t * cols_pad + k + h]);
            }
          }
        }
      }
}

}  // namespace

void lut_mma_emulate(const LutMmaLayout& L, const float* x, std::size_t n, float* y, float* magnitude, LutMmaArith arith) {
  const std::size_t cols_pad = L.cols_pad(), rows_pad = L.rows_pad();
  std::vector<double> acc(n * rows_pad, 0.0), mag(n * rows_pad, 0.0);
  std::vector<float> xr(n * cols_pad);
  for (const LutMmaPass& P : L.passes) {
    const std::size_t g = std::size_t{1} << P.log2_group;
    std::fill(xr.begin(), xr.end(), 0.0f);
    for (std::size_t t = 0; t < n; ++t) {
      float* v = xr.data() + t * cols_pad;
      for (std::size_t k = 0; k < L.cols; ++k) v[k] = bf16_round(x[t * L.cols + k]);  // the kernels take bf16 activations
      if (P.rotated)
        for (std::size_t j0 = 0; j0 < L.cols; j0 += g) {
          for (std::size_t i = 0; i < g; ++i)
            if ((P.signs[(j0 + i) / 32] >> ((j0 + i) % 32)) & 1u) v[j0 + i] = -v[j0 + i];
          for (std::size_t h = 1; h < g; h *= 2)
            for (std::size_t i = 0; i < g; i += 2 * h)
              for (std::size_t m = i; m < i + h; ++m) {
                const float a = v[j0 + m], b = v[j0 + m + h];
                v[j0 + m] = a + b;
                v[j0 + m + h] = a - b;
              }
          const float s = 1.0f / std::sqrt(static_cast<float>(g));
          for (std::size_t i = 0; i < g; ++i) v[j0 + i] *= s;
        }
      for (std::size_t k = 0; k < cols_pad; ++k) v[k] = bf16_round(v[k]);
    }
    switch (P.bits) {
      case 2: emulate_pass<2>(L, P, xr, n, acc, mag, arith); break;
      case 3: emulate_pass<3>(L, P, xr, n, acc, mag, arith); break;
      case 4: emulate_pass<4>(L, P, xr, n, acc, mag, arith); break;
      default: throw std::invalid_argument("lut_mma: bits must be 2, 3 or 4");
    }
  }
  for (std::size_t t = 0; t < n; ++t)
    for (std::size_t r = 0; r < L.rows; ++r) {
      y[t * L.rows + r] = static_cast<float>(acc[t * rows_pad + r]);
      if (magnitude != nullptr) magnitude[t * L.rows + r] = static_cast<float>(mag[t * rows_pad + r]);
    }
}

}  // namespace tqb
