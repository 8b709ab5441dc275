// libFuzzer target: a GGUF file read the way `tqbench perplexity --model FILE` reads it: metadata, every
// tensor dequantized, the checkpoint's config and shape checks, the tokenizer, then a forward pass over
// the encoded prompt. Seed: ../shared/models/stories260K/stories260K.gguf (scripts/fuzz.sh).
#include <cstddef>
#include <cstdint>

#include "fuzz_input.hpp"
#include "models/checkpoint.hpp"
#include "models/gguf.hpp"
#include "models/llama.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const tqb::fuzz::MemFile file(data, size);
  tqb::fuzz::expect_clean([&] {
    const tqb::GgufFile g(file.path());
    for (const auto& t : g.tensors()) (void)g.tensor(t);
  });
  tqb::fuzz::expect_clean([&] {
    const tqb::Checkpoint ck = tqb::load_checkpoint(file.path());
    if (ck.config.dim > 4096 || ck.config.n_layers > 64) return;  // a forward pass of a large model is slow, not a finding
    const tqb::LlamaModel model(ck);
    std::vector<int> tokens = ck.tokenizer->encode("Once upon a time, a fuzzer");
    tokens.insert(tokens.begin(), ck.tokenizer->bos());
    tokens.resize(std::min<std::size_t>(tokens.size(), 8));
    tqb::KvCache cache = model.new_cache(tokens.size());
    (void)model.forward(tokens, cache);
    (void)ck.tokenizer->decode(tokens);
  });
  return 0;
}
