// Every architecture tqbench loads gives transformers' logits: tiny random-weight checkpoints made by
// tests/fixtures/make_hf_fixtures.py (torch and transformers from PyPI; committed with their reference
// logits), read as Hugging Face folders and, for qwen2 and qwen3, as GGUF files of the same weights.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "models/checkpoint.hpp"
#include "models/llama.hpp"
#include "models/mapped_file.hpp"
#include "test_util.hpp"

using namespace tqb;
namespace fs = std::filesystem;

namespace {

const fs::path kFixtures = fs::path(test::kSourceDir) / "tests" / "fixtures";

struct Reference {
  std::vector<int> tokens;
  Matrix logits;
};

Reference reference(const std::string& name) {
  std::ifstream in(kFixtures / "hf" / name / "reference.json");
  const auto j = nlohmann::json::parse(in);
  Reference r;
  r.tokens = j["tokens"].get<std::vector<int>>();
  const auto rows = j["logits"];
  r.logits.resize(static_cast<Eigen::Index>(rows.size()), static_cast<Eigen::Index>(rows[0].size()));
  for (std::size_t t = 0; t < rows.size(); ++t)
    for (std::size_t v = 0; v < rows[t].size(); ++v) r.logits(static_cast<Eigen::Index>(t), static_cast<Eigen::Index>(v)) = rows[t][v].get<float>();
  return r;
}

// max |a − b| over max |b|: the "≤ 1e-4 relative" on the whole logit matrix.
double relative_error(const Matrix& a, const Matrix& b) {
  return static_cast<double>((a - b).cwiseAbs().maxCoeff()) / static_cast<double>(b.cwiseAbs().maxCoeff());
}

Matrix logits_of(const Checkpoint& ck, const std::vector<int>& tokens) {
  LlamaModel model(ck);
  KvCache cache = model.new_cache(tokens.size());
  return model.forward(tokens, cache);
}

}  // namespace

TEST_CASE("Hugging Face architectures match transformers' logits to 1e-4 (Llama, RoPE llama3/linear, tied, Qwen2, Qwen3, Mistral, Gemma)") {
  for (const std::string name : {"llama", "llama-rope-llama3", "llama-rope-linear", "llama-tied", "qwen2", "qwen3", "mistral", "gemma"}) {
    CAPTURE(name);
    const Reference ref = reference(name);
    const Checkpoint ck = load_checkpoint((kFixtures / "hf" / name).string());
    const Matrix logits = logits_of(ck, ref.tokens);
    REQUIRE(logits.rows() == ref.logits.rows());
    const double err = relative_error(logits, ref.logits);
    MESSAGE(name << ": relative error " << err);
    CHECK(err <= 1e-4);
    // The same sequence fed in two pieces through the KV cache (Mistral's window spans the boundary).
    LlamaModel model(ck);
    KvCache cache = model.new_cache(ref.tokens.size());
    const std::vector<int> first(ref.tokens.begin(), ref.tokens.begin() + 13), rest(ref.tokens.begin() + 13, ref.tokens.end());
    model.forward(first, cache);
    const Matrix tail = model.forward(rest, cache);
    CHECK(relative_error(tail, ref.logits.bottomRows(tail.rows())) <= 1e-4);
  }
}

TEST_CASE("GGUF qwen2 and qwen3 (rotate-half RoPE, biases, q/k norms) match transformers' logits to 1e-4") {
  for (const std::string name : {"qwen2", "qwen3"}) {
    CAPTURE(name);
    const Reference ref = reference(name);
    const Checkpoint ck = load_checkpoint((kFixtures / "gguf" / (name + ".gguf")).string());
    CHECK(ck.config.architecture == name);
    CHECK(!ck.config.rope_interleaved);
    const double err = relative_error(logits_of(ck, ref.tokens), ref.logits);
    MESSAGE(name << " (GGUF): relative error " << err);
    CHECK(err <= 1e-4);
  }
}

TEST_CASE("configs with features tqbench does not run are refused by name") {
  test::TempDir dir;
  auto with = [&](const std::string& base, const std::function<void(nlohmann::json&)>& edit) {
    const fs::path to = dir.path / (base + "-" + std::to_string(std::rand()));
    fs::create_directories(to);
    fs::copy_file(kFixtures / "hf" / base / "model.safetensors", to / "model.safetensors");
    std::ifstream in(kFixtures / "hf" / base / "config.json");
    auto j = nlohmann::json::parse(in);
    edit(j);
    std::ofstream(to / "config.json") << j.dump();
    return to.string();
  };
  const std::vector<std::pair<std::function<void(nlohmann::json&)>, std::string>> cases{
      {[](nlohmann::json& j) { j["rope_parameters"] = {{"rope_type", "yarn"}, {"factor", 4.0}, {"rope_theta", 1e4}}; }, "RoPE type 'yarn'"},
      {[](nlohmann::json& j) { j["rope_parameters"] = {{"rope_type", "llama3"}, {"factor", 8.0}}; }, "needs a number 'low_freq_factor'"},
      {[](nlohmann::json& j) { j.erase("rope_parameters"); j["rope_scaling"] = {{"type", "dynamic"}, {"factor", 2.0}}; }, "RoPE type 'dynamic'"},
      {[](nlohmann::json& j) { j["attention_bias"] = true; }, "'attention_bias'"},
      {[](nlohmann::json& j) { j["hidden_act"] = "gelu"; }, "'gelu' is not supported (silu is)"},
      {[](nlohmann::json& j) { j["architectures"] = {"PhiForCausalLM"}; }, "'PhiForCausalLM' is not supported"},
  };
  for (const auto& [edit, expect] : cases) {
    CAPTURE(expect);
    const auto r = test::run_tqbench("perplexity --model '" + with("llama", edit) + "' --corpus /dev/null");
    CHECK(r.exit_code == 2);
    CHECK(r.output.find(expect) != std::string::npos);
  }
  const auto gemma = with("gemma", [](nlohmann::json& j) { j["hidden_activation"] = "gelu"; });
  CHECK_THROWS_WITH_AS(load_checkpoint(gemma), doctest::Contains("'gelu' is not supported (gelu_pytorch_tanh is)"), ModelFileError);
}
