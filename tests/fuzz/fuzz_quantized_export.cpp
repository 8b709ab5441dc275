// libFuzzer target with structure-aware mutation (json_mutator.hpp): the `tqbench.quantized` metadata of a quantized
// safetensors export (models/quantized_safetensors.hpp) put in front of the real tensors of a small export made at
// start-up (TurboQuant, a residual stack, QJL, RTN and a dense vector), read as `tqbench perplexity --model` reads
// it, and every matrix that loads dequantized. The digest binds each record to its bytes, so most edits stop
// there; inputs of odd length are read with their digests removed (as files from before the digest are), so that
// nesting, sizes (rows x cols x code_bits at 0, 2^31, 2^32, 2^63, negative), names and side formats reach the
// checks behind it. Seed: written by this target (TQB_FUZZ_WRITE_SEED=FILE, scripts/fuzz.sh).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "fuzz_input.hpp"
#include "json_mutator.hpp"
#include "models/quantized_safetensors.hpp"
#include "quantizers/registry.hpp"

namespace {

using nlohmann::json;

struct Export {
  json header;       // the safetensors header, metadata included
  std::string data;  // the tensor bytes after it
};

const Export& seed_export() {
  static const Export e = [] {
    tqb::QuantizedModelFile m;
    std::mt19937 rng(7);
    std::normal_distribution<float> normal;
    std::vector<float> w(16 * 64);
    for (auto& x : w) x = normal(rng);
    for (const char* q : {"turboquant(bits=3,group=32)", "residual(stack=4+2,group=32)", "qjl(sketch=d,group=32)", "rtn(bits=4,group=32)"})
      m.quantized.emplace(std::string("blk.") + q, tqb::parse_quantizer(q)->quantize(w.data(), 16, 64, 11));
    m.dense.emplace("norm", tqb::Matrix::Constant(64, 1, 1.0f));
    m.dense_rank["norm"] = 1;
    const std::string path = (tqb::fuzz::scratch_dir() / "seed.safetensors").string();
    tqb::write_quantized_safetensors(path, m);
    std::ifstream in(path, std::ios::binary);
    std::uint64_t n = 0;
    in.read(reinterpret_cast<char*>(&n), 8);
    std::string text(n, '\0');
    in.read(text.data(), static_cast<std::streamsize>(n));
    Export x;
    x.header = json::parse(text);
    x.data.assign(std::istreambuf_iterator<char>(in), {});
    return x;
  }();
  return e;
}

void strip_digests(json& j, int depth = 0) {
  if (depth > 64 || !j.is_structured()) return;  // the reader's depth limit is far below this
  if (j.is_object()) j.erase("digest");
  for (auto& child : j) strip_digests(child, depth + 1);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (const char* seed = std::getenv("TQB_FUZZ_WRITE_SEED")) {
    std::ofstream(seed) << seed_export().header.at("__metadata__").at("tqbench.quantized").get<std::string>();
    std::exit(0);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const Export& e = seed_export();
  std::string records(reinterpret_cast<const char*>(data), size);
  if (size % 2 == 1) {
    json doc = json::parse(records, nullptr, false);
    if (!doc.is_discarded()) {
      strip_digests(doc);
      records = doc.dump(-1, ' ', false, json::error_handler_t::replace);
    }
  }
  json header = e.header;
  header["__metadata__"]["tqbench.quantized"] = records;
  std::string text = header.dump(-1, ' ', false, json::error_handler_t::replace);
  while (text.size() % 8 != 0) text += ' ';
  const std::uint64_t n = text.size();
  const std::string path = (tqb::fuzz::scratch_dir() / "input.safetensors").string();
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(&n), 8);
    out << text << e.data;
  }
  tqb::fuzz::expect_clean([&] {
    const tqb::QuantizedModelFile m = tqb::read_quantized_safetensors(path);
    for (const auto& [name, q] : m.quantized) {
      std::vector<float> out(q.rows * q.cols);
      tqb::parse_quantizer(q.format)->dequantize(q, out.data());
    }
  });
  return 0;
}
