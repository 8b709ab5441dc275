#include "eval/llamacpp_kld.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/atomic_file.hpp"
#include "common/error.hpp"
#include "models/mapped_file.hpp"

namespace tqb {
namespace {

constexpr char kMagic[8] = {'_', 'l', 'o', 'g', 'i', 't', 's', '_'};
constexpr float kWindow = 16.0f;  // log-probabilities kept within 16 nats of the largest

std::size_t record_words(std::size_t vocab) { return 2 * ((vocab + 1) / 2) + 4; }

// Round to nearest, ties to even, as llama.cpp's nearest_int.
std::uint16_t round_u16(float v) { return static_cast<std::uint16_t>(static_cast<int>(std::nearbyint(v))); }

}  // namespace

void write_llamacpp_kld_base(const std::string& path, const std::vector<int>& stream, std::uint32_t ctx, std::size_t chunks,
                             const BaselineLogProbs& base) {
  AtomicFile out(path);
  write_llamacpp_kld_base(out, stream, ctx, chunks, base);
}

void write_llamacpp_kld_base(AtomicFile& out, const std::vector<int>& stream, std::uint32_t ctx, std::size_t chunks,
                             const BaselineLogProbs& base) {
  const std::string& path = out.path();
  const std::size_t first = ctx / 2, scored = ctx - 1 - first, vocab = base.vocab, nv = record_words(vocab);
  if (stream.size() < chunks * ctx || base.data.size() != chunks * scored * vocab)
    throw RunError(fmt::format("{}: internal error: {} chunks of {} need {} tokens and {} log-probabilities, have {} and {}", path,
                               chunks, ctx, chunks * ctx, chunks * scored * vocab, stream.size(), base.data.size()));
  out.write(kMagic, 8);
  const std::int32_t n_vocab = static_cast<std::int32_t>(vocab), n_chunk = static_cast<std::int32_t>(chunks);
  out.write(&ctx, 4);
  out.write(&n_vocab, 4);
  out.write(&n_chunk, 4);
  const std::vector<std::int32_t> tokens(stream.begin(), stream.begin() + static_cast<long>(chunks * ctx));
  out.write(tokens.data(), tokens.size() * 4);
  std::vector<std::uint16_t> record(nv, 0);
  for (std::size_t r = 0; r < chunks * scored; ++r) {
    const float* lp = base.data.data() + r * vocab;
    const float mx = *std::max_element(lp, lp + vocab);
    const float mn = std::max(*std::min_element(lp, lp + vocab), mx - kWindow);
    const float scale = (mx - mn) / 65535.0f;
    std::fill(record.begin(), record.end(), std::uint16_t{0});
    std::memcpy(record.data(), &scale, 4);
    std::memcpy(record.data() + 2, &mn, 4);
    if (scale > 0) {
      const float inv = 1 / scale;
      for (std::size_t v = 0; v < vocab; ++v) record[4 + v] = lp[v] > mn ? round_u16(inv * (lp[v] - mn)) : 0;
    }
    out.write(record.data(), nv * 2);
  }
  out.commit();
}

LlamacppKldBase read_llamacpp_kld_base(const std::string& path, std::size_t vocab) {
  const MappedFile file(path);
  auto fail = [&](const std::string& what) -> ModelFileError {
    return ModelFileError(fmt::format("{}: error: not a llama.cpp KL-divergence base file: {}", path, what));
  };
  const std::uint8_t* p = file.data();
  if (file.size() < 20 || std::memcmp(p, kMagic, 8) != 0) throw fail("it does not start with '_logits_'");
  LlamacppKldBase b;
  std::int32_t n_vocab = 0, n_chunk = 0;
  std::memcpy(&b.ctx, p + 8, 4);
  std::memcpy(&n_vocab, p + 12, 4);
  std::memcpy(&n_chunk, p + 16, 4);
  if (b.ctx < 8 || b.ctx > (1u << 20)) throw fail(fmt::format("n_ctx {} (8 to 2^20 are valid)", b.ctx));
  if (n_vocab <= 0 || static_cast<std::size_t>(n_vocab) != vocab)
    throw fail(fmt::format("its vocabulary has {} entries, the model {}", n_vocab, vocab));
  if (n_chunk <= 0 || n_chunk > (1 << 24)) throw fail(fmt::format("n_chunk {} is not a positive count", n_chunk));
  b.chunks = static_cast<std::size_t>(n_chunk);
  const std::size_t first = b.ctx / 2, scored = b.ctx - 1 - first, nv = record_words(vocab);
  const std::size_t tokens_bytes = b.chunks * b.ctx * 4, records = b.chunks * scored;
  const std::size_t expect = 20 + tokens_bytes + records * nv * 2;
  if (file.size() != expect)
    throw fail(fmt::format("{} bytes, but {} chunks of {} tokens over {} entries need {}", file.size(), b.chunks, b.ctx, vocab, expect));
  b.tokens.resize(b.chunks * b.ctx);
  std::vector<std::int32_t> raw(b.tokens.size());
  std::memcpy(raw.data(), p + 20, tokens_bytes);
  for (std::size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] < 0 || static_cast<std::size_t>(raw[i]) >= vocab)
      throw fail(fmt::format("token {} is {}, outside the vocabulary (0..{})", i, raw[i], vocab - 1));
    b.tokens[i] = raw[i];
  }
  b.log_probs.vocab = vocab;
  b.log_probs.floor = -kWindow;
  b.log_probs.data.resize(records * vocab);
  const std::uint8_t* rec = p + 20 + tokens_bytes;
  std::vector<std::uint16_t> q(nv);
  for (std::size_t r = 0; r < records; ++r, rec += nv * 2) {
    std::memcpy(q.data(), rec, nv * 2);
    float scale, mn;
    std::memcpy(&scale, q.data(), 4);
    std::memcpy(&mn, q.data() + 2, 4);
    if (!std::isfinite(scale) || !std::isfinite(mn) || scale < 0)
      throw fail(fmt::format("record {} has scale {} and minimum {}", r, scale, mn));
    float* out = b.log_probs.data.data() + r * vocab;
    double mass = 0;
    for (std::size_t v = 0; v < vocab; ++v) {
      out[v] = scale * static_cast<float>(q[4 + v]) + mn;
      mass += std::exp(static_cast<double>(out[v]));
    }
    // Each record is a log-softmax row: its probabilities sum to 1, up to the 16-bit rounding (1e-4 relative) and
    // the entries below the 16-nat window (at most vocab · e^-16). Anything else would give KLDs of 1e24 (issue 28).
    if (!(mass > 0.95 && mass < 1.05))
      throw fail(fmt::format("record {} is not a probability distribution: its probabilities sum to {:.6g} (a base file's records "
                             "are log-softmax rows, summing to 1)", r, mass));
  }
  return b;
}

}  // namespace tqb
