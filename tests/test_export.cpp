// tqbench export: GGUF files with llama.cpp's types (metadata copied exactly, the bytes the quantizer made,
// the fallback type for narrow rows) and tqbench's safetensors layout, read back bit-exactly; the errors a
// user meets. llama.cpp itself runs exported files in bench/peers/check_ggml_formats.py.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <tuple>
#include <fstream>

#include "common/error.hpp"
#include "common/float_format.hpp"
#include "models/export.hpp"
#include "models/quantized_safetensors.hpp"
#include "models/checkpoint.hpp"
#include "models/ggml_types.hpp"
#include "models/gguf.hpp"
#include "quantizers/registry.hpp"
#include "gguf_writer.hpp"
#include "test_util.hpp"

using namespace tqb;

namespace {

std::vector<float> values(std::size_t n, std::uint64_t seed) {
  const Matrix m = test::random_normal_matrix(1, n, seed);
  return {m.data(), m.data() + n};
}

// A GGUF without a model architecture tqbench runs: export needs none (it copies what it does not quantize).
std::string synthetic_gguf(const test::TempDir& dir) {
  test::GgufWriter g;
  g.kv_string("general.architecture", "synthetic");
  g.kv_u32("general.file_type", 0);
  g.kv_f32("synthetic.norm_eps", 1e-5f);
  g.kv_strings("tokenizer.ggml.tokens", {"<s>", "a", "b"});
  g.kv_bool("synthetic.flag", true);
  g.tensor_f32("token_embd.weight", {64, 10}, values(640, 1));
  g.tensor_f32("blk.0.ffn_down.weight", {512, 8}, values(4096, 2));  // whole super-blocks
  g.tensor_f32("blk.0.attn_q.weight", {96, 4}, values(384, 3));      // 96 = 3 blocks of 32: the fallback
  g.tensor_f32("output_norm.weight", {64}, values(64, 4));
  const std::string path = dir.file("synthetic.gguf");
  std::ofstream(path, std::ios::binary) << g.bytes();
  return path;
}

}  // namespace

TEST_CASE("export to GGUF: llama.cpp's types, the quantizer's bytes, metadata copied, the rest untouched") {
  test::TempDir dir;
  const std::string src_path = synthetic_gguf(dir);
  const GgufFile src(src_path);
  ExportRequest r;
  r.model = src_path;
  r.quantizer = "q4_K";
  r.output = dir.file("out.gguf");
  r.seed = 5;
  std::ostringstream log;
  export_model(r, log);
  CHECK(log.str().find("2 of 4 tensors quantized with q4_K(fallback=q5_0)") != std::string::npos);
  const GgufFile out(r.output);
  // Metadata: every source entry but general.file_type, with its type; tqbench's provenance added.
  CHECK(out.get_string("general.architecture") == "synthetic");
  CHECK(out.get_strings("tokenizer.ggml.tokens") == std::vector<std::string>{"<s>", "a", "b"});
  CHECK(out.get_float("synthetic.norm_eps") == doctest::Approx(1e-5));
  CHECK(out.get_bool("synthetic.flag"));
  CHECK(!out.has("general.file_type"));
  CHECK(out.get_string("tqbench.quantizer") == "q4_K(fallback=q5_0)");
  CHECK(out.get_uint("tqbench.seed") == 5);
  // Tensors: the selected ones in their ggml type with exactly the quantizer's bytes; the rest as stored.
  const auto q = parse_quantizer("q4_K");
  for (const auto& t : src.tensors()) {
    CAPTURE(t.name);
    const GgufTensorInfo* o = out.find_tensor(t.name);
    REQUIRE(o != nullptr);
    CHECK(o->dims == t.dims);
    if (t.name.rfind("blk.", 0) == 0) {
      const QuantizedLayer ql = quantize_layer(*q, t.name, src.tensor(t), r.seed, r.group_fallback);
      CHECK(o->type == (t.dims[0] % 256 == 0 ? kGgmlQ4_K : kGgmlQ5_0));
      REQUIRE(o->bytes == ql.matrix.codes.size());
      CHECK(std::equal(ql.matrix.codes.begin(), ql.matrix.codes.end(), out.tensor_bytes(*o)));
      // The reader dequantizes it as the quantizer does.
      Matrix back(static_cast<Eigen::Index>(t.dims[1]), static_cast<Eigen::Index>(t.dims[0]));
      ql.quantizer->dequantize(ql.matrix, back.data());
      CHECK(out.tensor(*o) == back);
    } else {
      CHECK(o->type == t.type);
      CHECK(std::equal(src.tensor_bytes(t), src.tensor_bytes(t) + t.bytes, out.tensor_bytes(*o)));
    }
  }
  // An exported file exports again (its tqbench keys are replaced, not repeated).
  r.model = r.output;
  r.output = dir.file("again.gguf");
  r.quantizer = "q8_0";
  r.include = "token_embd.weight";
  export_model(r, log);
  const GgufFile again(r.output);
  CHECK(again.get_string("tqbench.quantizer") == "q8_0()");
  CHECK(again.find_tensor("token_embd.weight")->type == kGgmlQ8_0);
  CHECK(again.find_tensor("blk.0.ffn_down.weight")->type == kGgmlQ4_K);
}

TEST_CASE("export: a format GGUF cannot hold, a bad extension, a pattern that selects nothing, a folder source") {
  test::TempDir dir;
  const std::string src = synthetic_gguf(dir);
  auto export_cli = [&](const std::string& args) { return test::run_tqbench("export --model '" + src + "' " + args); };
  auto r = export_cli("--quantizer 'turboquant(bits=4,group=32)' -o '" + dir.file("t.gguf") + "'");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("GGUF has no tensor type for turboquant") != std::string::npos);
  CHECK(r.output.find("OUT.safetensors") != std::string::npos);
  r = export_cli("--quantizer q4_0 -o '" + dir.file("t.bin") + "'");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("must end in .gguf") != std::string::npos);
  r = export_cli("--quantizer q4_0 --include 'nothing' -o '" + dir.file("t.gguf") + "'");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("selects no 2-D tensor") != std::string::npos);
  r = export_cli("--quantizer 'q4_K(fallback=none)' -o '" + dir.file("t.gguf") + "'");
  CHECK(r.exit_code != 0);
  CHECK(r.output.find("fallback=none") != std::string::npos);
  CHECK(!std::filesystem::exists(dir.file("t.gguf")));  // nothing half-written
  r = test::run_tqbench("export --model '" + dir.path.string() + "' --quantizer q4_0 -o '" + dir.file("t.gguf") + "'");
  CHECK(r.exit_code == 2);
}

TEST_CASE("export to safetensors: tqbench's layout reads back bit-exactly, residual passes included") {
  const std::string model = (std::filesystem::path(shared_dir()) / "models/stories260K/stories260K.gguf").string();
  if (!std::filesystem::exists(model)) {
    MESSAGE("SKIPPED: stories260K (../shared) is not there");
    return;
  }
  test::TempDir dir;
  ExportRequest r;
  r.model = model;
  r.quantizer = "residual(stack=4+2,group=32)";
  r.output = dir.file("out.safetensors");
  r.seed = 9;
  r.group_fallback = GroupFallback::halve;  // stories260K's 172-wide down projections
  std::ostringstream log;
  export_model(r, log);
  const QuantizedModelFile m = read_quantized_safetensors(r.output);
  const Checkpoint ck = load_checkpoint(model);
  const auto q = parse_quantizer(r.quantizer);
  CHECK(m.metadata.at("tqbench.quantizer") == q->name());
  CHECK(m.quantized.size() == 7 * static_cast<std::size_t>(ck.config.n_layers));
  std::function<void(const QuantizedMatrix&, const QuantizedMatrix&)> same = [&](const QuantizedMatrix& a, const QuantizedMatrix& b) {
    CHECK(a.format == b.format);
    CHECK(a.seed == b.seed);
    CHECK(a.rows == b.rows);
    CHECK(a.cols == b.cols);
    CHECK(a.code_bits == b.code_bits);
    CHECK(a.side_format == b.side_format);
    CHECK(a.codes == b.codes);
    CHECK(a.scales == b.scales);
    CHECK(a.zeros == b.zeros);
    CHECK(a.codebook == b.codebook);
    REQUIRE(a.passes.size() == b.passes.size());
    for (std::size_t i = 0; i < a.passes.size(); ++i) same(a.passes[i], b.passes[i]);
  };
  for (const auto& [name, qm] : m.quantized) {
    CAPTURE(name);
    const QuantizedLayer expect = quantize_layer(*q, name, ck.tensor(name), r.seed, r.group_fallback);
    CHECK(expect.matrix.passes.size() == 2);
    same(qm, expect.matrix);
  }
  for (const auto& [name, w] : m.dense) CHECK(w == ck.tensor(name));
  CHECK(m.dense.size() + m.quantized.size() == ck.tensors.size());

  // The exported layers run in the model: the same perplexity as quantizing in memory with the same seed.
  auto ppl_of = [](const std::string& args) {
    const auto r = test::run_tqbench("perplexity --model stories260k --ctx 128 --chunks 3 " + args);
    REQUIRE_MESSAGE(r.exit_code == 0, r.output);
    return r.output.substr(r.output.find("perplexity: "), 30);
  };
  CHECK(ppl_of("--quantized '" + r.output + "'") == ppl_of("--quantizer '" + r.quantizer + "' --group-fallback halve --seed 9"));
  auto refused = test::run_tqbench("perplexity --model stories260k --quantized '" + model + "'");  // a GGUF, not the layout
  CHECK(refused.exit_code == 2);
  CHECK(refused.output.find(model + ": error") != std::string::npos);
  refused = test::run_tqbench("perplexity --model stories260k --quantized '" + r.output + "' --quantizer q8_0");
  CHECK(refused.exit_code == 2);
  CHECK(refused.output.find("--quantized and --quantizer: give one") != std::string::npos);

  // A part whose size does not fit the named quantizer is refused, naming the tensor.
  QuantizedModelFile bad = m;
  auto& victim = bad.quantized.begin()->second;
  victim.passes[0].codes.pop_back();
  write_quantized_safetensors(dir.file("bad.safetensors"), bad);
  const std::string expected = bad.quantized.begin()->first + ".pass0': codes has";
  CHECK_THROWS_WITH_AS(read_quantized_safetensors(dir.file("bad.safetensors")), doctest::Contains(expected.c_str()), ModelFileError);
  bad = m;
  bad.quantized.begin()->second.format = "nonsense(bits=4)";
  write_quantized_safetensors(dir.file("bad2.safetensors"), bad);
  CHECK_THROWS_WITH_AS(read_quantized_safetensors(dir.file("bad2.safetensors")), doctest::Contains("quantizer 'nonsense(bits=4)'"),
                       ModelFileError);
  // Forged shapes and sizes are refused before anything of their size is allocated (issue 28): 2^32 x 2^32 (the
  // product wrapped to 0), 65536 x 65536 with a few bytes of codes (17 GB of zeros to check them), code_bits 2^40 + 4
  // (wrapped to 4 by a 32-bit read).
  for (const auto& [rows, cols, what] : {std::tuple{std::size_t{1} << 32, std::size_t{1} << 32, "is not a valid shape"},
                                         std::tuple{std::size_t{65536}, std::size_t{65536}, "but the file holds"}}) {
    bad = m;
    bad.quantized.begin()->second.rows = rows;
    bad.quantized.begin()->second.cols = cols;
    write_quantized_safetensors(dir.file("bad3.safetensors"), bad);
    CHECK_THROWS_WITH_AS(read_quantized_safetensors(dir.file("bad3.safetensors")), doctest::Contains(what), ModelFileError);
  }
  // The file's header with `key`'s first value (digits after it) replaced, written to `to`.
  auto patched = [&](const std::string& key, const std::string& value, const std::string& to) {
    std::ifstream in(r.output, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::uint64_t n = 0;
    std::memcpy(&n, bytes.data(), 8);
    std::string header = bytes.substr(8, n);
    const std::size_t at = header.find(key);
    REQUIRE(at != std::string::npos);
    const std::size_t digit = header.find_first_of("0123456789", at), end = header.find_first_not_of("0123456789", digit);
    header.replace(digit, end - digit, value);
    const std::uint64_t size = header.size();
    std::ofstream out(dir.file(to), std::ios::binary);
    out.write(reinterpret_cast<const char*>(&size), 8);
    out << header << bytes.substr(8 + n);
    return dir.file(to);
  };
  CHECK_THROWS_WITH_AS(read_quantized_safetensors(patched("code_bits", "1099511627780", "bad4.safetensors")),
                       doctest::Contains("code_bits 1099511627780"), ModelFileError);
  // Metadata tied to the codes: a seed edited after export (which would silently rotate into another model).
  CHECK_THROWS_WITH_AS(read_quantized_safetensors(patched("seed", "10", "bad5.safetensors")), doctest::Contains("were changed after export"),
                       ModelFileError);
  // Found by fuzz_quantized_export (issue 28): a residual pass recorded with another shape than its stack writes there
  // (16 x 2^31 over the codes of a smaller pass, its digest matching) read past its codes when dequantized; rows that are
  // not a non-negative integer (1e308 was an undefined conversion, -1 a wrap).
  bad = m;
  bad.quantized.begin()->second.passes[1].cols = std::size_t{1} << 31;
  write_quantized_safetensors(dir.file("bad7.safetensors"), bad);
  CHECK_THROWS_WITH_AS(read_quantized_safetensors(dir.file("bad7.safetensors")), doctest::Contains(".pass1': recorded as"), ModelFileError);
  for (const auto& [rows, shown] : {std::pair{"1e308", "1e+308"}, std::pair{"-1", "-1"}}) {
    const std::string want = std::string("rows is ") + shown + " (a positive integer is valid)";
    CHECK_THROWS_WITH_AS(read_quantized_safetensors(patched("rows\\\"", rows, "bad8.safetensors")), doctest::Contains(want.c_str()),
                         ModelFileError);
  }
  // Side data that is not finite.
  bad = m;
  auto& first = bad.quantized.begin()->second.passes[0];
  const float nan = std::nanf("");
  store_float(first.side_format, nan, first.scales.data());
  write_quantized_safetensors(dir.file("bad6.safetensors"), bad);
  CHECK_THROWS_WITH_AS(read_quantized_safetensors(dir.file("bad6.safetensors")), doctest::Contains("scales': value 0 is nan"), ModelFileError);
}
