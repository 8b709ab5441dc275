// libFuzzer target with structure-aware mutation (json_mutator.hpp): a Hugging Face config.json next to
// the real stories260K weights, loaded as `tqbench perplexity --model FOLDER` does (64-bit size checks,
// shape agreement), then a forward pass of a few tokens when it loads.
// Seed: ../shared/models/stories260K/hf/config.json (scripts/fuzz.sh).
#include <cstddef>
#include <cstdint>
#include <filesystem>

#include "fuzz_input.hpp"
#include "json_mutator.hpp"
#include "models/checkpoint.hpp"
#include "models/llama.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace fs = std::filesystem;
  static const fs::path dir = [] {
    const fs::path d = tqb::fuzz::scratch_dir() / "hf";
    fs::create_directories(d);
    std::error_code ec;
    fs::create_symlink(tqb::fuzz::shared_file("models/stories260K/hf/model.safetensors"), d / "model.safetensors", ec);
    return d;
  }();
  tqb::fuzz::write_file(dir / "config.json", data, size);
  tqb::fuzz::expect_clean([&] {
    const tqb::Checkpoint ck = tqb::load_checkpoint(dir.string());
    const tqb::LlamaModel model(ck);
    tqb::KvCache cache = model.new_cache(4);
    (void)model.forward({1, 2, 3, 4}, cache);
  });
  return 0;
}
