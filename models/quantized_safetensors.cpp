#include "models/quantized_safetensors.hpp"

#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>

#include "common/atomic_file.hpp"
#include "common/bounded_json.hpp"
#include "common/error.hpp"
#include "common/float_format.hpp"
#include "common/fnv1a.hpp"
#include "models/safetensors.hpp"
#include "quantizers/registry.hpp"

namespace tqb {
namespace {

using nlohmann::json;

struct Blob {
  std::string name, dtype;
  std::vector<std::uint64_t> shape;
  const std::uint8_t* data;
  std::size_t bytes;
};

// What ties a record's metadata to its parts: FNV-1a over the name, seed, shape, code width, side format and every
// stored byte, passes included. A seed or rotation edited in the metadata (another model, silently, before) or a
// changed byte of the codes no longer matches.
std::uint64_t digest(const QuantizedMatrix& q) {
  const std::string head = fmt::format("{}|{}|{}|{}|{}|{}", q.format, q.seed, q.rows, q.cols, q.code_bits, to_string(q.side_format));
  std::uint64_t h = fnv1a(head.data(), head.size());
  for (const auto* part : {&q.codes, &q.scales, &q.zeros}) {
    const std::uint64_t n = part->size();
    h = fnv1a(part->data(), part->size(), fnv1a(&n, sizeof n, h));
  }
  h = fnv1a(q.codebook.data(), q.codebook.size() * sizeof(float), h);
  for (const auto& p : q.passes) {
    const std::uint64_t d = digest(p);
    h = fnv1a(&d, sizeof d, h);
  }
  return h;
}

// The tensors and the metadata record of one quantized matrix (and, recursively, its passes).
json describe(const std::string& prefix, const QuantizedMatrix& q, std::vector<Blob>& blobs) {
  auto bytes = [&](const char* part, const std::vector<std::uint8_t>& v) {
    if (!v.empty()) blobs.push_back({prefix + "." + part, "U8", {v.size()}, v.data(), v.size()});
  };
  bytes("codes", q.codes);
  bytes("scales", q.scales);
  bytes("zeros", q.zeros);
  if (!q.codebook.empty())
    blobs.push_back({prefix + ".codebook", "F32", {q.codebook.size()}, reinterpret_cast<const std::uint8_t*>(q.codebook.data()),
                     q.codebook.size() * 4});
  json passes = json::array();
  for (std::size_t i = 0; i < q.passes.size(); ++i) passes.push_back(describe(prefix + ".pass" + std::to_string(i), q.passes[i], blobs));
  // The seed as text: JSON readers commonly hold numbers as doubles, which lose a 64-bit seed.
  return {{"quantizer", q.format}, {"seed", std::to_string(q.seed)}, {"rows", q.rows}, {"cols", q.cols},
          {"code_bits", q.code_bits}, {"side_format", to_string(q.side_format)}, {"passes", passes},
          {"digest", fmt::format("{:016x}", digest(q))}};
}

}  // namespace

void write_quantized_safetensors(const std::string& path, const QuantizedModelFile& m) {
  std::vector<Blob> blobs;
  json records = json::object();
  for (const auto& [name, q] : m.quantized) records[name] = describe(name, q, blobs);
  for (const auto& [name, w] : m.dense) {
    const auto rank = m.dense_rank.count(name) ? m.dense_rank.at(name) : 2;
    std::vector<std::uint64_t> shape = rank == 1 ? std::vector<std::uint64_t>{static_cast<std::uint64_t>(w.size())}
                                                 : std::vector<std::uint64_t>{static_cast<std::uint64_t>(w.rows()),
                                                                              static_cast<std::uint64_t>(w.cols())};
    blobs.push_back({name, "F32", shape, reinterpret_cast<const std::uint8_t*>(w.data()), static_cast<std::size_t>(w.size()) * 4});
  }
  json header = json::object();
  json meta = json::object();
  for (const auto& [k, v] : m.metadata) meta[k] = v;
  meta["tqbench.layout"] = kQuantizedSafetensorsLayout;
  meta["tqbench.quantized"] = records.dump();
  header["__metadata__"] = meta;
  std::uint64_t offset = 0;
  for (const auto& b : blobs) {
    if (header.contains(b.name))
      throw RunError(fmt::format("{}: tensor name '{}' is used twice (a dense tensor named like a quantized part)", path, b.name));
    header[b.name] = {{"dtype", b.dtype}, {"shape", b.shape}, {"data_offsets", {offset, offset + b.bytes}}};
    offset += b.bytes;
  }
  std::string text = header.dump();
  while ((8 + text.size()) % 8 != 0) text += ' ';  // data starts 8-byte aligned
  AtomicFile out(path);
  const std::uint64_t n = text.size();
  out.write(&n, 8);
  out.write(text.data(), text.size());
  // Blobs in header order: nlohmann's object sorts keys, so emit data in the order the offsets were given.
  for (const auto& b : blobs) out.write(b.data, b.bytes);
  out.commit();
}

namespace {

struct Reader {
  const SafetensorsFile& file;
  [[noreturn]] void fail(const std::string& what) const {
    throw ModelFileError(fmt::format("{}: error: {}", file.path(), what));
  }
  std::vector<std::uint8_t> bytes(const std::string& name, bool required) const {
    auto it = file.tensors().find(name);
    if (it == file.tensors().end()) {
      if (required) fail(fmt::format("tensor '{}' is missing", name));
      return {};
    }
    if (it->second.dtype != "U8") fail(fmt::format("tensor '{}' is {}, expected U8", name, it->second.dtype));
    const std::uint8_t* p = file.bytes(it->second);
    return {p, p + it->second.bytes};
  }
  QuantizedMatrix matrix(const std::string& prefix, const json& r) const {
    auto field = [&](const char* key) -> const json& {
      if (!r.is_object() || !r.contains(key)) fail(fmt::format("tensor '{}': the record has no '{}'", prefix, key));
      return r.at(key);
    };
    QuantizedMatrix q;
    try {
      q.format = field("quantizer").get<std::string>();
      q.seed = std::stoull(field("seed").get<std::string>());
      // Sizes as non-negative integers first: get<size_t> of -1 wraps, of 1e308 is undefined (found by fuzz_quantized_export).
      for (auto [key, out] : {std::pair{"rows", &q.rows}, std::pair{"cols", &q.cols}}) {
        const json& v = field(key);
        if (!v.is_number_unsigned()) fail(fmt::format("tensor '{}': {} is {} (a positive integer is valid)", prefix, key, v.dump()));
        *out = v.get<std::size_t>();
      }
      // As a 64-bit integer first: get<int> of 2^40 + 4 wrapped to 4 (issue 28).
      const json& bits = field("code_bits");
      if (!bits.is_number_integer() || bits.get<std::int64_t>() < 0 || bits.get<std::int64_t>() > 8)
        fail(fmt::format("tensor '{}': code_bits {} (0 to 8 are valid)", prefix, bits.dump()));
      q.code_bits = static_cast<int>(bits.get<std::int64_t>());
      const auto side = parse_float_format(field("side_format").get<std::string>());
      if (!side) fail(fmt::format("tensor '{}': side_format is not one of fp32, fp16, bf16", prefix));
      q.side_format = *side;
    } catch (const json::exception& e) {
      fail(fmt::format("tensor '{}': the record has a value of the wrong type: {}", prefix, e.what()));
    } catch (const std::logic_error&) {
      fail(fmt::format("tensor '{}': seed is not an unsigned integer", prefix));
    }
    const json& passes = field("passes");
    if (!passes.is_array()) fail(fmt::format("tensor '{}': passes is not an array", prefix));
    // A composite (residual stack) stores its codes in its passes and has none itself.
    if (q.code_bits < (passes.empty() ? 1 : 0) || q.code_bits > 8)
      fail(fmt::format("tensor '{}': code_bits {} ({} to 8 are valid)", prefix, q.code_bits, passes.empty() ? 1 : 0));
    // Each side at most 2^32 and the product at most 2^36 weights (the largest projections of released models,
    // a 405B model's head, hold 2.1e9): 2^32 x 2^32 wrapped to 0 before (issue 28).
    if (q.rows == 0 || q.cols == 0 || q.rows > (std::size_t{1} << 32) || q.cols > (std::size_t{1} << 32) ||
        q.rows > (std::size_t{1} << 36) / q.cols)
      fail(fmt::format("tensor '{}': {} x {} is not a valid shape (at most 2^36 weights)", prefix, q.rows, q.cols));
    q.codes = bytes(prefix + ".codes", passes.empty());
    q.scales = bytes(prefix + ".scales", false);
    q.zeros = bytes(prefix + ".zeros", false);
    if (auto it = file.tensors().find(prefix + ".codebook"); it != file.tensors().end()) {
      if (it->second.dtype != "F32") fail(fmt::format("tensor '{}.codebook' is {}, expected F32", prefix, it->second.dtype));
      q.codebook.resize(it->second.bytes / 4);
      std::memcpy(q.codebook.data(), file.bytes(it->second), q.codebook.size() * 4);
    }
    for (std::size_t i = 0; i < passes.size(); ++i) q.passes.push_back(matrix(prefix + ".pass" + std::to_string(i), passes[i]));
    // Side data that is not finite gives a model whose perplexity is NaN: refused here, naming the part.
    for (const auto& [part, v] : {std::pair{"scales", &q.scales}, std::pair{"zeros", &q.zeros}}) {
      if (v->size() % bytes_of(q.side_format) != 0)
        fail(fmt::format("tensor '{}.{}': {} bytes are not whole {} values", prefix, part, v->size(), to_string(q.side_format)));
      const std::vector<float> f = load_floats(q.side_format, *v);
      for (std::size_t i = 0; i < f.size(); ++i)
        if (!std::isfinite(f[i])) fail(fmt::format("tensor '{}.{}': value {} is {} (side data must be finite)", prefix, part, i, f[i]));
    }
    for (std::size_t i = 0; i < q.codebook.size(); ++i)
      if (!std::isfinite(q.codebook[i]))
        fail(fmt::format("tensor '{}.codebook': value {} is {} (a codebook must be finite)", prefix, i, q.codebook[i]));
    // Files written before the digest have none: read as they were.
    if (r.is_object() && r.contains("digest")) {
      const json& d = r.at("digest");
      const std::string want = fmt::format("{:016x}", digest(q));
      if (!d.is_string() || d.get<std::string>() != want)
        fail(fmt::format("tensor '{}': its metadata or stored bytes were changed after export (digest {} recorded, {} computed); "
                         "re-export it", prefix, d.dump(), want));
    }
    return q;
  }
};

void check_sizes(const Reader& r, const std::string& name, const QuantizedMatrix& got, const QuantizedMatrix& want) {
  auto same = [&](const char* part, std::size_t a, std::size_t b) {
    if (a != b) r.fail(fmt::format("tensor '{}': {} has {} entries, but {} writes {} for {} x {}", name, part, a, want.format, b, want.rows, want.cols));
  };
  same("codes", got.codes.size(), want.codes.size());
  same("scales", got.scales.size(), want.scales.size());
  same("zeros", got.zeros.size(), want.zeros.size());
  same("codebook", got.codebook.size(), want.codebook.size());
  same("passes", got.passes.size(), want.passes.size());
  if (got.code_bits != want.code_bits || got.side_format != want.side_format)
    r.fail(fmt::format("tensor '{}': code_bits/side_format {}/{} differ from {}'s {}/{}", name, got.code_bits,
                       to_string(got.side_format), want.format, want.code_bits, to_string(want.side_format)));
  for (std::size_t i = 0; i < got.passes.size(); ++i) {
    // A pass's own name, seed and shape are what dequantizing it reads: they must be what the stack writes there, or a
    // pass recorded as 16 x 2^31 over 16 x 64's codes reads past them (found by fuzz_quantized_export).
    const QuantizedMatrix &g = got.passes[i], &w = want.passes[i];
    const std::string pass = name + ".pass" + std::to_string(i);
    if (g.format != w.format || g.seed != w.seed || g.rows != w.rows || g.cols != w.cols)
      r.fail(fmt::format("tensor '{}': recorded as {} (seed {}, {} x {}), but {} writes {} (seed {}, {} x {}) there", pass, g.format,
                         g.seed, g.rows, g.cols, want.format, w.format, w.seed, w.rows, w.cols));
    check_sizes(r, pass, g, w);
  }
}

}  // namespace

QuantizedModelFile read_quantized_safetensors(const std::string& path) {
  SafetensorsFile file(path);
  Reader r{file};
  const auto& meta = file.metadata();
  auto layout = meta.find("tqbench.layout");
  if (layout == meta.end() || layout->second != kQuantizedSafetensorsLayout)
    r.fail(fmt::format("not a tqbench quantized model (__metadata__ 'tqbench.layout' is not '{}')", kQuantizedSafetensorsLayout));
  json records;
  try {
    records = parse_json(meta.at("tqbench.quantized"), "__metadata__ 'tqbench.quantized'");
  } catch (const std::exception& e) {
    r.fail(std::string("__metadata__ 'tqbench.quantized' is missing or not a JSON object: ") + e.what());
  }
  if (!records.is_object()) r.fail("__metadata__ 'tqbench.quantized' is not a JSON object");
  QuantizedModelFile m;
  for (const auto& [k, v] : meta)
    if (k != "tqbench.quantized") m.metadata[k] = v;
  for (const auto& item : records.items()) {
    QuantizedMatrix q = r.matrix(item.key(), item.value());
    // Every stored part must have the size the named quantizer writes for this shape, or dequantization
    // would read past it: the sizes come from quantizing a zero matrix of that shape with that quantizer.
    std::unique_ptr<Quantizer> qz;
    try {
      qz = parse_quantizer(q.format);
    } catch (const InputError& e) {
      r.fail(fmt::format("tensor '{}': quantizer '{}': {}", item.key(), q.format, e.what()));
    }
    if (const ShapeProblem p = qz->check_shape(q.rows, q.cols); !p.message.empty())
      r.fail(fmt::format("tensor '{}': {} cannot hold a {} x {} matrix: {}", item.key(), q.format, q.rows, q.cols, p.message));
    // The stored parts must be about what the quantizer writes for this shape before a zero matrix of it is
    // quantized to check them exactly: a forged 65536 x 65536 with a few bytes of codes would take 17 GB there.
    std::uint64_t stored = 0;
    for (const auto& [name, info] : file.tensors())
      if (name.size() > item.key().size() && name.compare(0, item.key().size() + 1, item.key() + ".") == 0) stored += info.bytes;
    if (const std::uint64_t need = qz->storage_bytes(q.rows, q.cols); need > 2 * stored + 4096)
      r.fail(fmt::format("tensor '{}': {} of {} x {} stores {} bytes, but the file holds {} for it", item.key(), q.format, q.rows, q.cols,
                         need, stored));
    check_sizes(r, item.key(), q, qz->zero_layout(q.rows, q.cols, q.seed));
    m.quantized.emplace(item.key(), std::move(q));
  }
  for (const auto& [name, info] : file.tensors()) {
    bool is_part = false;
    for (const auto& [qname, q] : m.quantized)
      if (name.size() > qname.size() && name.compare(0, qname.size() + 1, qname + ".") == 0) is_part = true;
    if (is_part) continue;
    m.dense.emplace(name, file.tensor(info));
    m.dense_rank[name] = info.shape.size() == 1 ? 1 : 2;
  }
  return m;
}

}  // namespace tqb
