// KV-cache quantization (models/kv_quant.hpp) on the tiny Llama fixture (head_dim 16): the estimator path
// equals the dequantized one, exact bytes, per-token quantization is the same in one piece or two, KIVI's
// unfinished block stays fp32, outliers, and the errors a spec can make.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "common/error.hpp"
#include "harness/store.hpp"
#include "models/checkpoint.hpp"
#include "models/llama.hpp"
#include "test_util.hpp"

using namespace tqb;

namespace {

const std::string kLlama = test::kSourceDir + "/tests/fixtures/hf/llama";
const std::vector<int> kTokens{1, 17, 42, 5, 63, 8, 23, 23, 0, 51, 12, 30, 9, 44, 2, 60, 33, 7, 19, 48};

Matrix run(const Checkpoint& ck, const KvQuantSpec* spec, std::uint64_t seed = 3, std::size_t split = 0,
           KvAttentionError* probe = nullptr) {
  LlamaModel model(ck);
  if (spec) model.set_kv_quantizer(std::make_shared<KvQuantizer>(*spec, ck.config, seed));
  if (probe) model.set_kv_probe(probe);
  KvCache cache = model.new_cache(kTokens.size());
  if (split == 0) return model.forward(kTokens, cache);
  model.forward(std::vector<int>(kTokens.begin(), kTokens.begin() + static_cast<long>(split)), cache);
  return model.forward(std::vector<int>(kTokens.begin() + static_cast<long>(split), kTokens.end()), cache);
}

double rel(const Matrix& a, const Matrix& b) { return static_cast<double>((a - b).cwiseAbs().maxCoeff() / b.cwiseAbs().maxCoeff()); }

}  // namespace

TEST_CASE("KV cache: the estimator (scores from key codes) equals attention on the dequantized cache") {
  const Checkpoint ck = load_checkpoint(kLlama);
  const Matrix exact = run(ck, nullptr);
  for (const std::string key : {"qjl(sketch=d,group=row)", "turboquant_prod(bits=3,group=row)", "turboquant(bits=3,group=row,rotation=haar)"}) {
    CAPTURE(key);
    KvQuantSpec spec;
    spec.key = key;
    const Matrix dequantized = run(ck, &spec);
    spec.scores = "estimator";
    const Matrix estimated = run(ck, &spec);
    CHECK(rel(estimated, dequantized) < 1e-4);  // the same estimator, in another order of float operations
    CHECK(rel(dequantized, exact) > 1e-3);       // and quantization does change the logits
    // Fed in two pieces, the estimator sees the first piece's codes as a separate chunk: same logits.
    CHECK(rel(run(ck, &spec, 3, 7).bottomRows(13), estimated.bottomRows(13)) < 1e-4);
  }
}

TEST_CASE("KV cache: none is the fp32 cache, per-token quantization is the same in one piece or two, seeds matter") {
  const Checkpoint ck = load_checkpoint(kLlama);
  KvQuantSpec none;
  CHECK(!none.active());
  KvQuantSpec spec;
  spec.key = "turboquant(bits=3,group=row,rotation=haar)";
  spec.value = "rtn(bits=4,group=row)";
  const Matrix whole = run(ck, &spec), pieces = run(ck, &spec, 3, 9);
  CHECK(rel(pieces, whole.bottomRows(pieces.rows())) < 1e-5);
  CHECK(rel(run(ck, &spec, 4), whole) > 1e-4);  // another seed, another rotation
}

TEST_CASE("KV cache: exact bits per coordinate and bytes per token, outliers included") {
  const Checkpoint ck = load_checkpoint(kLlama);
  const ModelConfig& c = ck.config;  // head_dim 16, 2 kv heads, 2 layers
  REQUIRE(c.head_dim == 16);
  KvQuantSpec spec;
  spec.key = "turboquant(bits=3,group=row)";  // 16·3 bits of codes + a 32-bit norm per vector = 80 bits
  spec.value = "none";
  KvQuantizer a(spec, c, 1);
  CHECK(a.key_bits() == 80.0 / 16);
  CHECK(a.value_bits() == 32.0);
  CHECK(a.bytes_per_token() == (5.0 + 32.0) * 16 * 2 * 2 / 8);
  // Mixed precision: 4 outlier channels at 4 bits (16 + 32 bits) and 12 at 2 bits (24 + 32 bits) = 104 bits.
  spec.value = "turboquant(bits=2,group=row)";
  spec.key = "turboquant(bits=2,group=row)";
  spec.outliers = 4;
  spec.outlier_key = spec.outlier_value = "turboquant(bits=4,group=row)";
  KvQuantizer b(spec, c, 1);
  CHECK(b.key_bits() == 104.0 / 16);
  spec.layers = "blk\\.0";  // one layer quantized, the other fp32
  KvQuantizer one(spec, c, 1);
  CHECK(one.bytes_per_token() == (2 * 104.0 / 16 + 64.0) * 16 * 2 / 8);
  // The outlier channels are chosen on the first chunk and recorded.
  auto kvq = std::make_shared<KvQuantizer>(spec, c, 1);
  LlamaModel model(ck);
  model.set_kv_quantizer(kvq);
  KvCache cache = model.new_cache(kTokens.size());
  model.forward(kTokens, cache);
  CHECK(kvq->outlier_json().find("\"blk.0\": {\"k\": [[") != std::string::npos);
  CHECK(kvq->outlier_json().find("blk.1") == std::string::npos);
}

TEST_CASE("KV cache: KIVI keys per channel over blocks, the unfinished block stays fp32") {
  const Checkpoint ck = load_checkpoint(kLlama);
  KvQuantSpec spec;
  spec.key = "rtn(bits=2,group=row,mode=asym)";
  spec.key_axis = "channel";
  spec.block = 8;
  auto kvq = std::make_shared<KvQuantizer>(spec, ck.config, 1);
  CHECK(kvq->key_bits() == doctest::Approx((8 * 2 + 2 * 16) / 8.0));  // per channel: 8 two-bit codes, fp16 scale and zero
  LlamaModel quantized(ck), exact(ck);
  quantized.set_kv_quantizer(kvq);
  KvCache a = quantized.new_cache(kTokens.size()), b = exact.new_cache(kTokens.size());
  quantized.forward(kTokens, a);
  exact.forward(kTokens, b);
  // Layer 0's keys depend only on the embeddings: blocks [0, 16) quantized, positions 16..19 fp32.
  CHECK(a.keys_quantized[0] == 16);
  CHECK((a.k[0].topRows(16) - b.k[0].topRows(16)).cwiseAbs().maxCoeff() > 1e-3f);
  CHECK((a.k[0].middleRows(16, 4) - b.k[0].middleRows(16, 4)).cwiseAbs().maxCoeff() == 0.0f);
}

TEST_CASE("KV cache: the attention probe measures bias, RMSE, D_prod and attention errors, zero without quantization") {
  const Checkpoint ck = load_checkpoint(kLlama);
  KvQuantSpec spec;
  spec.key = "turboquant_prod(bits=3,group=row)";
  KvAttentionError e;
  run(ck, &spec, 3, 0, &e);
  CHECK(e.done);
  CHECK(e.pairs == doctest::Approx(2 * 4 * kTokens.size() * (kTokens.size() + 1) / 2));  // layers · heads · causal pairs
  CHECK(e.ip_rmse() > 0);
  CHECK(e.dprod() > 0);
  CHECK(e.weight_tv() > 0);
  CHECK(e.out_rel() > 0);
  CHECK(std::fabs(e.ip_bias()) < e.ip_rmse());
  KvQuantSpec values_only;
  values_only.value = "rtn(bits=4,group=row)";
  KvAttentionError f;
  run(ck, &values_only, 3, 0, &f);
  CHECK(f.ip_rmse() == 0);  // keys exact: scores exact
  CHECK(f.weight_tv() == 0);
  CHECK(f.out_rel() > 0);
}

TEST_CASE("KV cache: combinations that cannot work are refused naming the parameter") {
  const Checkpoint ck = load_checkpoint(kLlama);
  auto refused = [&](KvQuantSpec s, const char* expect) {
    CAPTURE(expect);
    CHECK_THROWS_WITH_AS(KvQuantizer(s, ck.config, 1), doctest::Contains(expect), InputError);
  };
  KvQuantSpec s;
  s.key = "turboquant(bits=3,group=row)";
  s.outliers = 16;
  refused(s, "kv_outliers 16: must be 0 to head_dim - 1 = 15");
  s.outliers = 0;
  s.key = "turboquant(bits=3,group=32)";
  refused(s, "cannot quantize a key vector (1 x 16): group size 32 does not divide the 16 columns");
  s.key = "q4_0";
  s.scores = "estimator";
  refused(s, "kv_scores estimator with kv_key 'q4_0()'");
  s.key = "rtn(bits=2,group=row)";
  s.key_axis = "channel";
  refused(s, "kv_scores estimator: only with kv_key_axis token");
  s.scores = "dequantized";
  s.outliers = 2;
  refused(s, "kv_outliers with kv_key_axis channel");
  KvQuantSpec bad;
  bad.value = "nonsense(bits=2)";
  refused(bad, "kv_value 'nonsense(bits=2)'");
  // A cache quantized nowhere would report bits it does not store (issue 28).
  KvQuantSpec nowhere;
  nowhere.key = "rtn(bits=4,group=row)";
  nowhere.layers = "blk\\.99";
  refused(nowhere, "kv_layers 'blk\\.99' matches none of this model's layers");
}

TEST_CASE("KV cache in a spec: sweeps beside weight quantizers, records bits and channels, refuses bad combinations") {
  const std::string stories = test::kSourceDir + "/../shared/models/stories260K/stories260K.gguf";
  if (!std::filesystem::exists(stories)) {
    MESSAGE("SKIPPED: stories260K (../shared) is not there");
    return;
  }
  test::TempDir dir;
  const std::string spec = dir.file("kv.yaml"), out = dir.file("kv.h5");
  // stories260K: head_dim 8.
  std::ofstream(spec) << "experiment: kv\ndata: {source: model, model: stories260k, ctx: 64, chunks: 2, group_fallback: halve, "
                         "kv_key: [none, 'turboquant(bits=3,group=row)'], kv_value: key, kv_outliers: [0, 2], "
                         "kv_outlier_key: 'rtn(bits=8,group=row)'}\n"
                         "quantizers: [none, 'turboquant(bits=4,group=32,rotation=hadamard)']\n"
                         "metrics: [perplexity, kld_mean, kv_key_bits, kv_bits, kv_bytes_per_token, kv_dprod]\n";
  auto r = test::run_tqbench("run '" + spec + "' -o '" + out + "'");
  REQUIRE_MESSAGE(r.exit_code == 0, r.output);
  const ResultTable t = read_result_file(out);
  REQUIRE(t.rows.size() == 8);  // 2 caches x 2 outlier settings x 2 weight quantizers
  const int key = t.column_index("data.kv_key"), outliers = t.column_index("data.kv_outliers"), bits = t.column_index("kv_key_bits"),
            json = t.column_index("kv_cache");
  for (const auto& row : t.rows) {
    const bool quantized = cell_text(row[key], true) != "none";
    const bool split = std::get<std::int64_t>(row[outliers]) == 2;
    // turboquant 3-bit on 8 channels: 24 bits of codes + a 32-bit norm; with 2 outliers: 6 codes of 3 bits
    // in 3 whole bytes + the norm, and the outliers' 2 bytes + rtn's 16-bit scale.
    CHECK(std::get<double>(row[bits]) == (quantized ? (split ? (24.0 + 32 + 16 + 16) / 8 : 56.0 / 8) : 32.0));
    CHECK((cell_text(row[json], true).find("\"outlier_channels\": {\"blk.0\"") != std::string::npos) == (quantized && split));
  }
  std::ofstream(spec) << "experiment: kv\ndata: {source: model, model: stories260k, ctx: 64, chunks: 2, group_fallback: halve, "
                         "kv_key: 'turboquant(bits=3,group=row)', kv_outliers: 8}\nquantizers: [none]\n";
  r = test::run_tqbench("run '" + spec + "' -o '" + dir.file("bad.h5") + "'");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("kv_outliers 8: must be 0 to head_dim - 1 = 7") != std::string::npos);
  // KIVI blocks no shorter than the context: no key block ever completes, so none would be quantized.
  std::ofstream(spec) << "experiment: kv\ndata: {source: model, model: stories260k, ctx: 64, chunks: 2, group_fallback: halve, "
                         "kv_key: 'rtn(bits=2,group=row)', kv_key_axis: channel, kv_block: 64}\nquantizers: [none]\n";
  r = test::run_tqbench("run '" + spec + "' -o '" + dir.file("bad2.h5") + "'");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("kv_block 64 with kv_key_axis channel and ctx 64") != std::string::npos);
}

TEST_CASE("passkey: the prompt fills the context it is given, too long or too short a context is refused") {
  const std::string stories = test::kSourceDir + "/../shared/models/stories260K/stories260K.gguf";
  if (!std::filesystem::exists(stories)) {
    MESSAGE("SKIPPED: stories260K (../shared) is not there");
    return;
  }
  auto r = test::run_tqbench("passkey --model stories260k --ctx 480 --trials 2 --kv-key 'turboquant(bits=3,group=row)' --kv-value key");
  REQUIRE_MESSAGE(r.exit_code == 0, r.output);
  CHECK(r.output.find("/2 correct") != std::string::npos);
  const auto at = r.output.find(" at ");
  REQUIRE(at != std::string::npos);
  const int tokens = std::stoi(r.output.substr(at + 4));
  CHECK(tokens <= 480 - 8);  // room for the answer
  CHECK(tokens > 400);       // and filled
  r = test::run_tqbench("passkey --model stories260k --ctx 100000");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("exceeds the model's context length") != std::string::npos);
  r = test::run_tqbench("passkey --model stories260k --ctx 64");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("too short for the prompt") != std::string::npos);
}
