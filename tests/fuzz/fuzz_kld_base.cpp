// libFuzzer target, structure-aware (generators.hpp): llama.cpp's KL-divergence base file (eval/llamacpp_kld.hpp),
// read as `tqbench perplexity --kl-divergence-base FILE` reads it. The input tampers with a real base file (written
// at start-up from log-softmax rows, vocabulary 33, ctx 16, 2 chunks): n_ctx, n_vocab and n_chunk set to hostile
// sizes (0, 2^31, 2^32, negative, ...), tokens outside the vocabulary, a record's scale and minimum set to NaN, inf
// or values that no longer make a distribution, bytes flipped, the file cut or grown. Findings: anything but a
// base read or an InputError.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <random>

#include "eval/llamacpp_kld.hpp"
#include "fuzz_input.hpp"
#include "generators.hpp"

namespace {

constexpr std::size_t kVocab = 33, kCtx = 16, kChunks = 2;

const std::string& seed_base() {
  static const std::string bytes = [] {
    std::mt19937 rng(5);
    std::normal_distribution<float> normal(0.0f, 3.0f);
    const std::size_t scored = kCtx - 1 - kCtx / 2;
    tqb::BaselineLogProbs base;
    base.vocab = kVocab;
    for (std::size_t r = 0; r < kChunks * scored; ++r) {
      std::vector<float> row(kVocab);
      double sum = 0;
      for (auto& x : row) sum += std::exp(x = normal(rng));
      for (auto x : row) base.data.push_back(x - static_cast<float>(std::log(sum)));
    }
    std::vector<int> stream(kChunks * kCtx);
    for (auto& t : stream) t = static_cast<int>(rng() % kVocab);
    const std::string path = (tqb::fuzz::scratch_dir() / "seed.kld").string();
    tqb::write_llamacpp_kld_base(path, stream, kCtx, kChunks, base);
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }();
  return bytes;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  std::string bytes = seed_base();
  const std::size_t tokens_end = 20 + kChunks * kCtx * 4;
  const int changes = in.ConsumeIntegralInRange(0, 4);
  for (int i = 0; i < changes; ++i) {
    switch (in.ConsumeIntegralInRange(0, 5)) {
      case 0: {  // a header field: n_ctx, n_vocab or n_chunk
        if (bytes.size() < 20) break;
        const auto v = static_cast<std::int32_t>(tqb::fuzz::hostile_int(in));
        std::memcpy(bytes.data() + 8 + 4 * in.ConsumeIntegralInRange(0, 2), &v, 4);
        break;
      }
      case 1: {  // a token
        if (bytes.size() < tokens_end) break;
        const auto v = static_cast<std::int32_t>(tqb::fuzz::hostile_int(in));
        std::memcpy(bytes.data() + 20 + 4 * in.ConsumeIntegralInRange<std::size_t>(0, kChunks * kCtx - 1), &v, 4);
        break;
      }
      case 2: {  // a record's scale or minimum
        if (bytes.size() < tokens_end) break;
        const std::size_t records = (bytes.size() - tokens_end) / (2 * (2 * ((kVocab + 1) / 2) + 4));
        if (records == 0) break;
        const std::size_t r = in.ConsumeIntegralInRange<std::size_t>(0, records - 1);
        const auto v = static_cast<float>(tqb::fuzz::hostile_real(in));
        std::memcpy(bytes.data() + tokens_end + r * 2 * (2 * ((kVocab + 1) / 2) + 4) + 4 * in.ConsumeIntegralInRange(0, 1), &v, 4);
        break;
      }
      case 3: {  // any 1, 4 or 8 bytes
        tqb::fuzz::tamper_bytes(in, bytes);
        break;
      }
      case 4:  // cut
        bytes.resize(in.ConsumeIntegralInRange<std::size_t>(0, bytes.size()));
        break;
      case 5:  // grown
        bytes += in.ConsumeBytesAsString(in.ConsumeIntegralInRange<std::size_t>(0, 256));
        break;
    }
  }
  const tqb::fuzz::MemFile file(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
  tqb::fuzz::expect_clean([&] { (void)tqb::read_llamacpp_kld_base(file.path(), kVocab); });
  return 0;
}
