// Seeded mutation fuzzing of model files: mutate a real GGUF (or safetensors) file and read it the way
// tqbench does (metadata, tokenizer, every tensor). Each mutant must load or be rejected with an
// InputError; a crash, a hang or (under -DTQB_SANITIZE=ON) an out-of-bounds read is a bug.
//   fuzz_model_files FILE [MUTANTS=100000] [SEED=1]
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "common/error.hpp"
#include "common/rng.hpp"
#include "models/gguf.hpp"
#include "models/safetensors.hpp"
#include "models/tokenizer.hpp"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s FILE [MUTANTS=100000] [SEED=1]\n", argv[0]);
    return 2;
  }
  const std::string source = argv[1];
  const long mutants = argc > 2 ? std::atol(argv[2]) : 100000;
  tqb::Rng rng(argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 1);
  std::ifstream in(source, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string original = ss.str();
  if (original.empty()) {
    std::fprintf(stderr, "%s: cannot read\n", source.c_str());
    return 2;
  }
  const bool gguf = original.rfind("GGUF", 0) == 0;
  const std::string path = "/tmp/tqb-fuzz-" + std::to_string(::getpid()) + (gguf ? ".gguf" : ".safetensors");
  long loaded = 0, rejected = 0;
  const std::size_t header = std::min<std::size_t>(original.size(), 16 * 1024);
  for (long i = 0; i < mutants; ++i) {
    std::string m = original;
    switch (rng.next_u64() % 5) {
      case 0: m.resize(rng.next_u64() % m.size()); break;                             // truncate
      case 1: m[rng.next_u64() % header] = static_cast<char>(rng.next_u64()); break;  // one random byte
      case 2:                                                                          // a few bit flips
        for (int f = 0; f < 4; ++f) m[rng.next_u64() % header] ^= static_cast<char>(1 << (rng.next_u64() % 8));
        break;
      case 3: {  // a random 8-byte field set to an extreme value
        const std::size_t at = rng.next_u64() % (header - 8);
        const std::uint64_t v = (rng.next_u64() & 1) ? ~std::uint64_t{0} : (std::uint64_t{1} << (rng.next_u64() % 64));
        std::memcpy(m.data() + at, &v, 8);
        break;
      }
      default:  // splice: copy a random header range over another
      {
        const std::size_t a = rng.next_u64() % header, b = rng.next_u64() % header, n = rng.next_u64() % 64;
        for (std::size_t k = 0; k < n && a + k < m.size() && b + k < m.size(); ++k) m[a + k] = m[b + k];
      }
    }
    std::ofstream(path, std::ios::binary) << m;
    try {
      if (gguf) {
        tqb::GgufFile g(path);
        if (g.has("tokenizer.ggml.model")) tqb::make_gguf_tokenizer(g);
        for (const auto& t : g.tensors()) (void)g.tensor(t);
      } else {
        tqb::SafetensorsFile f(path);
        for (const auto& [name, t] : f.tensors()) (void)f.tensor(t);
      }
      ++loaded;
    } catch (const tqb::InputError&) {
      ++rejected;
    }
  }
  std::remove(path.c_str());
  std::printf("%ld mutants of %s: %ld loaded, %ld rejected with an error, 0 crashes\n", mutants, source.c_str(), loaded,
              rejected);
  return 0;
}
