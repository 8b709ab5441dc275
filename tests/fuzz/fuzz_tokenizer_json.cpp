// libFuzzer target with structure-aware mutation (json_mutator.hpp): a Hugging Face tokenizer.json
// (byte-level BPE, added tokens, normalizer, pre-tokenizer Sequences, decoder), then encode and decode
// of a fixed text. Seed: tests/fuzz/seeds/tokenizer.json (scripts/fuzz.sh).
#include <cstddef>
#include <cstdint>
#include <filesystem>

#include "fuzz_input.hpp"
#include "json_mutator.hpp"
#include "models/tokenizer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::filesystem::path dir = [] {
    const auto d = tqb::fuzz::scratch_dir() / "tok";
    std::filesystem::create_directories(d);
    return d;
  }();
  tqb::fuzz::write_file(dir / "tokenizer.json", data, size);
  tqb::fuzz::expect_clean([&] {
    const auto tok = tqb::make_hf_tokenizer(dir.string());
    const std::vector<int> ids = tok->encode("Hello, world! 123 \xc3\xa9t\xc3\xa9 \xe2\x82\xac  \n\tdon't");
    (void)tok->decode(ids);
    std::vector<int> all;
    for (int i = 0; i < std::min(tok->vocab_size(), 4096); ++i) all.push_back(i);
    (void)tok->decode(all);
  });
  return 0;
}
