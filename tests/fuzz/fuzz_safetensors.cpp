// libFuzzer target: one safetensors file, its header checks and every tensor converted to fp32.
// Seed: ../shared/models/stories260K/hf/model.safetensors (scripts/fuzz.sh).
#include <cstddef>
#include <cstdint>

#include "fuzz_input.hpp"
#include "models/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const tqb::fuzz::MemFile file(data, size);
  tqb::fuzz::expect_clean([&] {
    const tqb::SafetensorsFile f(file.path());
    for (const auto& [name, info] : f.tensors()) (void)f.tensor(info);
  });
  return 0;
}
