#include "models/tokenizer.hpp"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <fmt/format.h>
#include <pcre2.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <mutex>
#include <queue>
#include <unordered_map>

#include "common/error.hpp"
#include "common/bounded_json.hpp"
#include "models/gguf.hpp"

namespace tqb {
namespace {

// Length of the UTF-8 sequence starting with byte c (1 for invalid lead bytes, so bytes are never lost).
std::size_t utf8_len(unsigned char c) {
  if (c < 0x80) return 1;
  if ((c >> 5) == 6) return 2;
  if ((c >> 4) == 14) return 3;
  if ((c >> 3) == 30) return 4;
  return 1;
}

std::string utf8_encode(std::uint32_t cp) {
  std::string s;
  if (cp < 0x80) s += static_cast<char>(cp);
  else if (cp < 0x800) {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 63));
  } else if (cp < 0x10000) {
    s += static_cast<char>(0xE0 | (cp >> 12));
    s += static_cast<char>(0x80 | ((cp >> 6) & 63));
    s += static_cast<char>(0x80 | (cp & 63));
  } else {
    s += static_cast<char>(0xF0 | (cp >> 18));
    s += static_cast<char>(0x80 | ((cp >> 12) & 63));
    s += static_cast<char>(0x80 | ((cp >> 6) & 63));
    s += static_cast<char>(0x80 | (cp & 63));
  }
  return s;
}

void replace_all(std::string& s, const std::string& from, const std::string& to) {
  for (std::size_t pos = 0; (pos = s.find(from, pos)) != std::string::npos; pos += to.size()) s.replace(pos, from.size(), to);
}

// ---------------------------------------------------------------------------------------------
// SentencePiece-style BPE (GGUF tokenizer.ggml.model = llama): spaces become U+2581, the text is cut
// into UTF-8 characters, and the adjacent pair whose concatenation is the highest-scoring vocabulary
// token is merged until none is; pieces not in the vocabulary fall back to <0xXX> byte tokens.
class SpmTokenizer final : public Tokenizer {
 public:
  explicit SpmTokenizer(const GgufFile& g) {
    tokens_ = g.get_strings("tokenizer.ggml.tokens");
    scores_ = g.get_floats("tokenizer.ggml.scores");
    if (scores_.size() != tokens_.size())
      throw ModelFileError(fmt::format("{}: error: metadata 'tokenizer.ggml.scores' has {} entries for {} tokens",
                                       g.path(), scores_.size(), tokens_.size()));
    if (g.has("tokenizer.ggml.token_type")) types_ = g.get_ints("tokenizer.ggml.token_type");
    types_.resize(tokens_.size(), 1);
    for (std::size_t i = 0; i < tokens_.size(); ++i) ids_.emplace(tokens_[i], static_cast<int>(i));
    for (int b = 0; b < 256; ++b) {
      auto it = ids_.find(fmt::format("<0x{:02X}>", b));
      byte_ids_[b] = it == ids_.end() ? -1 : it->second;
    }
    bos_ = g.has("tokenizer.ggml.bos_token_id") ? static_cast<int>(g.get_uint("tokenizer.ggml.bos_token_id")) : 1;
    eos_ = g.has("tokenizer.ggml.eos_token_id") ? static_cast<int>(g.get_uint("tokenizer.ggml.eos_token_id")) : 2;
    unk_ = g.has("tokenizer.ggml.unknown_token_id") ? static_cast<int>(g.get_uint("tokenizer.ggml.unknown_token_id")) : 0;
    add_bos_ = g.has("tokenizer.ggml.add_bos_token") ? g.get_bool("tokenizer.ggml.add_bos_token") : true;
    add_space_prefix_ = g.has("tokenizer.ggml.add_space_prefix") ? g.get_bool("tokenizer.ggml.add_space_prefix") : true;
  }
  std::string kind() const override { return "llama"; }

  std::vector<int> encode(const std::string& raw) const override {
    std::vector<int> out;
    if (raw.empty()) return out;
    std::string text = (add_space_prefix_ ? " " : "") + raw;
    replace_all(text, " ", "\u2581");
    // Symbols as a doubly linked list over the text.
    struct Sym {
      int prev, next;
      std::size_t start, len;
    };
    std::vector<Sym> sym;
    for (std::size_t i = 0; i < text.size();) {
      const std::size_t n = std::min(utf8_len(static_cast<unsigned char>(text[i])), text.size() - i);
      sym.push_back({static_cast<int>(sym.size()) - 1, static_cast<int>(sym.size()) + 1, i, n});
      i += n;
    }
    sym.back().next = -1;
    struct Bigram {
      float score;
      int left, right;
      std::size_t len;
      bool operator<(const Bigram& o) const { return score < o.score || (score == o.score && left > o.left); }
    };
    std::priority_queue<Bigram> queue;
    auto try_pair = [&](int l, int r) {
      if (l < 0 || r < 0) return;
      auto it = ids_.find(text.substr(sym[l].start, sym[l].len + sym[r].len));
      if (it != ids_.end()) queue.push({static_cast<float>(scores_[it->second]), l, r, sym[l].len + sym[r].len});
    };
    for (std::size_t i = 1; i < sym.size(); ++i) try_pair(static_cast<int>(i) - 1, static_cast<int>(i));
    while (!queue.empty()) {
      const Bigram b = queue.top();
      queue.pop();
      Sym& l = sym[b.left];
      Sym& r = sym[b.right];
      if (l.len == 0 || r.len == 0 || l.len + r.len != b.len || l.next != b.right) continue;  // stale
      l.len += r.len;
      r.len = 0;
      l.next = r.next;
      if (r.next >= 0) sym[r.next].prev = b.left;
      try_pair(l.prev, b.left);
      try_pair(b.left, l.next);
    }
    for (int i = 0; i >= 0; i = sym[i].next) {
      const std::string piece = text.substr(sym[i].start, sym[i].len);
      auto it = ids_.find(piece);
      if (it != ids_.end()) {
        out.push_back(it->second);
        continue;
      }
      for (unsigned char c : piece) out.push_back(byte_ids_[c] >= 0 ? byte_ids_[c] : unk_);
    }
    return out;
  }

  std::string decode(const std::vector<int>& ids) const override {
    std::string out;
    for (int id : ids) {
      if (id < 0 || id >= vocab_size()) continue;
      const int type = static_cast<int>(types_[id]);
      if (type == 3) continue;  // control (BOS, EOS)
      const std::string& t = tokens_[id];
      if (type == 6 && t.size() == 6 && t.rfind("<0x", 0) == 0) {
        out += static_cast<char>(std::stoi(t.substr(3, 2), nullptr, 16));
        continue;
      }
      std::string piece = t;
      replace_all(piece, "\u2581", " ");
      out += piece;
    }
    if (add_space_prefix_ && !out.empty() && out[0] == ' ') out.erase(0, 1);
    return out;
  }

 private:
  std::vector<double> scores_;
  std::vector<std::int64_t> types_;
  std::unordered_map<std::string, int> ids_;
  int byte_ids_[256];
  int unk_ = 0;
  bool add_space_prefix_ = true;
};

// ---------------------------------------------------------------------------------------------
// Byte-level BPE (GGUF tokenizer.ggml.model = gpt2): the text is split by the model's pre-tokenizer
// regexes, each piece's bytes are mapped to printable characters (GPT-2's byte-to-unicode table),
// and the lowest-ranked merge is applied until none applies.
class Regex {
 public:
  explicit Regex(const std::string& pattern) {
    int err = 0;
    PCRE2_SIZE at = 0;
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.c_str()), pattern.size(), PCRE2_UTF | PCRE2_UCP, &err, &at,
                          nullptr);
    if (!code_) throw std::runtime_error("internal error: pre-tokenizer regex does not compile: " + pattern);
    pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);
  }
  ~Regex() { pcre2_code_free(code_); }
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
  // Splits [begin, end) of s into matches and the gaps between them, in order.
  void split(const std::string& s, std::size_t begin, std::size_t end, std::vector<std::pair<std::size_t, std::size_t>>& out) const {
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(code_, nullptr);
    std::size_t pos = begin;
    while (pos < end) {
      const int rc = pcre2_match(code_, reinterpret_cast<PCRE2_SPTR>(s.data()), end, pos, PCRE2_NO_UTF_CHECK, md, nullptr);
      if (rc < 0) break;
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
      std::size_t mb = ov[0], me = ov[1];
      if (me == mb) {  // empty match: step one character
        me = mb + utf8_len(static_cast<unsigned char>(s[mb]));
      }
      if (mb > pos) out.emplace_back(pos, mb);
      out.emplace_back(mb, me);
      pos = me;
    }
    if (pos < end) out.emplace_back(pos, end);
    pcre2_match_data_free(md);
  }

 private:
  pcre2_code* code_;
};

// What a byte-level BPE tokenizer is made of, from a GGUF file or a tokenizer.json.
struct BpeSpec {
  std::vector<std::string> tokens;  // by id
  std::vector<std::string> merges;  // "a b", by rank
  std::vector<std::int64_t> types;  // 3 = control; may be empty
  std::vector<std::string> regexes;  // pre-tokenizer splits, applied in order
  int bos = -1, eos = -1;
  bool add_bos = false;
};

const std::string kGpt2Regex = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

class Gpt2Tokenizer final : public Tokenizer {
 public:
  explicit Gpt2Tokenizer(BpeSpec spec) {
    tokens_ = std::move(spec.tokens);
    for (std::size_t i = 0; i < tokens_.size(); ++i) ids_.emplace(tokens_[i], static_cast<int>(i));
    for (std::size_t i = 0; i < spec.merges.size(); ++i) ranks_.emplace(spec.merges[i], static_cast<int>(i));
    types_ = std::move(spec.types);
    types_.resize(tokens_.size(), 1);
    bos_ = spec.bos;
    eos_ = spec.eos;
    add_bos_ = spec.add_bos;
    // GPT-2's byte-to-unicode table: printable bytes map to themselves, the rest to 256 + n.
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      byte_char_[b] = utf8_encode(printable ? b : 256 + n++);
      char_byte_[byte_char_[b]] = static_cast<unsigned char>(b);
    }
    for (const auto& r : spec.regexes) regexes_.push_back(std::make_unique<Regex>(r));
  }
  std::string kind() const override { return "gpt2"; }

  std::vector<int> encode(const std::string& text) const override {
    if (!valid_utf8(text)) throw InputError("text to tokenize is not valid UTF-8");
    std::vector<std::pair<std::size_t, std::size_t>> pieces{{0, text.size()}}, next;
    for (const auto& re : regexes_) {
      next.clear();
      for (const auto& [b, e] : pieces) re->split(text, b, e, next);
      pieces.swap(next);
    }
    std::vector<int> out;
    for (const auto& [b, e] : pieces) {
      if (e == b) continue;
      const std::vector<int>& ids = word(text.substr(b, e - b));
      out.insert(out.end(), ids.begin(), ids.end());
    }
    return out;
  }

  std::string decode(const std::vector<int>& ids) const override {
    std::string out;
    for (int id : ids) {
      if (id < 0 || id >= vocab_size() || types_[id] == 3) continue;
      const std::string& t = tokens_[id];
      for (std::size_t i = 0; i < t.size();) {
        const std::size_t n = std::min(utf8_len(static_cast<unsigned char>(t[i])), t.size() - i);
        auto it = char_byte_.find(t.substr(i, n));
        if (it != char_byte_.end()) out += static_cast<char>(it->second);
        else out += t.substr(i, n);
        i += n;
      }
    }
    return out;
  }

 private:
  static bool valid_utf8(const std::string& s) {
    int err = 0;
    (void)err;
    for (std::size_t i = 0; i < s.size();) {
      const unsigned char c = static_cast<unsigned char>(s[i]);
      const std::size_t n = utf8_len(c);
      if (n == 1 && c >= 0x80) return false;
      if (i + n > s.size()) return false;
      for (std::size_t k = 1; k < n; ++k)
        if ((static_cast<unsigned char>(s[i + k]) >> 6) != 2) return false;
      i += n;
    }
    return true;
  }

  // BPE of one pre-tokenized piece, cached (text repeats words a lot).
  const std::vector<int>& word(const std::string& w) const {
    {
      std::lock_guard<std::mutex> lock(cache_mutex_);
      auto it = cache_.find(w);
      if (it != cache_.end()) return it->second;
    }
    std::vector<std::string> sym;
    for (unsigned char c : w) sym.push_back(byte_char_[c]);
    while (sym.size() > 1) {
      int best = -1, best_rank = INT32_MAX;
      for (std::size_t i = 0; i + 1 < sym.size(); ++i) {
        auto it = ranks_.find(sym[i] + " " + sym[i + 1]);
        if (it != ranks_.end() && it->second < best_rank) {
          best_rank = it->second;
          best = static_cast<int>(i);
        }
      }
      if (best < 0) break;
      sym[best] += sym[best + 1];
      sym.erase(sym.begin() + best + 1);
    }
    std::vector<int> ids;
    for (const auto& s : sym) {
      auto it = ids_.find(s);
      if (it != ids_.end()) {
        ids.push_back(it->second);
        continue;
      }
      // Not in the vocabulary (a byte-level vocabulary has every byte): one token per character.
      for (std::size_t i = 0; i < s.size();) {
        const std::size_t n = utf8_len(static_cast<unsigned char>(s[i]));
        auto c = ids_.find(s.substr(i, n));
        if (c != ids_.end()) ids.push_back(c->second);
        i += n;
      }
    }
    std::lock_guard<std::mutex> lock(cache_mutex_);
    return cache_.emplace(w, std::move(ids)).first->second;
  }

  std::unordered_map<std::string, int> ids_, ranks_;
  std::vector<std::int64_t> types_;
  std::string byte_char_[256];
  std::unordered_map<std::string, unsigned char> char_byte_;
  std::vector<std::unique_ptr<Regex>> regexes_;
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int>> cache_;
};

// Pre-tokenizer regexes for GGUF's tokenizer.ggml.pre (llama.cpp's names, for the ones listed; llama.cpp's name of
// GPT-2's own is "gpt-2", and "gpt2", the tokenizer model's name, is taken for it too).
std::vector<std::string> gguf_pre_regexes(const std::string& pre, const std::string& path) {
  if (pre == "gpt-2" || pre == "gpt2" || pre == "default" || pre == "mpt" || pre == "olmo") return {kGpt2Regex};
  if (pre == "smollm" || pre == "starcoder" || pre == "refact" || pre == "codeshell") return {"\\p{N}", kGpt2Regex};
  throw InputError(fmt::format("{}: error: tokenizer.ggml.pre '{}' is not supported (gpt-2, smollm, starcoder, refact, "
                               "codeshell, mpt, olmo, default)", path, pre));
}

}  // namespace

std::unique_ptr<Tokenizer> make_gguf_tokenizer(const GgufFile& g) {
  const std::string model = g.get_string("tokenizer.ggml.model");
  if (model == "llama") return std::make_unique<SpmTokenizer>(g);
  if (model == "gpt2") {
    BpeSpec s;
    s.tokens = g.get_strings("tokenizer.ggml.tokens");
    s.merges = g.get_strings("tokenizer.ggml.merges");
    if (g.has("tokenizer.ggml.token_type")) s.types = g.get_ints("tokenizer.ggml.token_type");
    s.bos = g.has("tokenizer.ggml.bos_token_id") ? static_cast<int>(g.get_uint("tokenizer.ggml.bos_token_id")) : -1;
    s.eos = g.has("tokenizer.ggml.eos_token_id") ? static_cast<int>(g.get_uint("tokenizer.ggml.eos_token_id")) : -1;
    s.add_bos = g.has("tokenizer.ggml.add_bos_token") ? g.get_bool("tokenizer.ggml.add_bos_token") : false;
    s.regexes = gguf_pre_regexes(g.has("tokenizer.ggml.pre") ? g.get_string("tokenizer.ggml.pre") : "gpt2", g.path());
    return std::make_unique<Gpt2Tokenizer>(std::move(s));
  }
  throw InputError(fmt::format("{}: error: tokenizer.ggml.model '{}' is not supported (llama, gpt2)", g.path(), model));
}

namespace {

std::unique_ptr<Tokenizer> parse_hf_tokenizer(const std::string& dir) {
  namespace fs = std::filesystem;
  const std::string path = (fs::path(dir) / "tokenizer.json").string();
  auto bad = [&](const std::string& key, const std::string& what) {
    return ModelFileError(fmt::format("{}: error: {}: {}", path, key, what));
  };
  auto read_json = [](const std::string& file, nlohmann::json& out) {
    std::ifstream in(file);
    if (!in) return false;
    try {
      out = parse_json(in, file);
    } catch (const InputError& e) {
      throw ModelFileError(e.what());
    }
    return true;
  };
  nlohmann::json j;
  if (!read_json(path, j)) throw ModelFileError(fmt::format("{}: error: cannot open", path));
  const auto& model = j.value("model", nlohmann::json::object());
  if (model.value("type", std::string()) != "BPE") throw bad("model.type", "only BPE tokenizers are supported");
  if (model.value("byte_fallback", false)) throw bad("model.byte_fallback", "SentencePiece-style BPE is not supported in tokenizer.json (use the GGUF)");
  BpeSpec s;
  if (!model.contains("vocab") || !model["vocab"].is_object()) throw bad("model.vocab", "missing or not an object");
  std::size_t n = 0;
  for (const auto& [tok, id] : model["vocab"].items()) {
    if (!id.is_number_unsigned() || id.get<std::uint64_t>() >= (1u << 24)) throw bad("model.vocab", "ids must be small non-negative integers");
    n = std::max<std::size_t>(n, id.get<std::size_t>() + 1);
  }
  // Every added token's id is checked before any is used as an index (a negative, fractional or huge id
  // once wrote out of bounds).
  const nlohmann::json added = j.value("added_tokens", nlohmann::json::array());
  if (!added.is_array()) throw bad("added_tokens", "expected a list");
  for (const auto& t : added) {
    if (!t.is_object() || !t.contains("id") || !t.contains("content") || !t["content"].is_string())
      throw bad("added_tokens", "entries need id and content");
    if (!t["id"].is_number_unsigned() || t["id"].get<std::uint64_t>() >= (1u << 24))
      throw bad("added_tokens", "ids must be non-negative integers below 2^24, found " + t["id"].dump());
    n = std::max<std::size_t>(n, t["id"].get<std::size_t>() + 1);
  }
  s.tokens.resize(n);
  s.types.assign(n, 1);
  for (const auto& [tok, id] : model["vocab"].items()) s.tokens[id.get<std::size_t>()] = tok;
  for (const auto& t : added) {
    s.tokens[t["id"].get<std::size_t>()] = t["content"].get<std::string>();
    if (t.value("special", false)) s.types[t["id"].get<std::size_t>()] = 3;
  }
  for (const auto& m : model.value("merges", nlohmann::json::array())) {
    if (m.is_string()) s.merges.push_back(m.get<std::string>());
    else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string())
      s.merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
    else throw bad("model.merges", "entries must be \"a b\" or [\"a\", \"b\"]");
  }
  // Pre-tokenizer: ByteLevel (GPT-2's regex), Digits, Split with a regex, or a Sequence of them.
  // Walked by reference with a depth limit: copying each level's list (json::value) made a 20,000-deep
  // Sequence cost memory quadratic in its depth.
  constexpr int kMaxPreDepth = 8;
  std::function<void(const nlohmann::json&, int)> pre = [&](const nlohmann::json& p, int depth) {
    if (p.is_null()) return;
    if (!p.is_object()) throw bad("pre_tokenizer", "each pre-tokenizer must be an object");
    const std::string type = p.contains("type") && p["type"].is_string() ? p["type"].get<std::string>() : std::string();
    if (type == "Sequence") {
      if (depth >= kMaxPreDepth) throw bad("pre_tokenizer", fmt::format("Sequences nested deeper than {}", kMaxPreDepth));
      const auto it = p.find("pretokenizers");
      if (it == p.end() || !it->is_array()) throw bad("pre_tokenizer", "a Sequence needs a list 'pretokenizers'");
      for (const auto& x : *it) pre(x, depth + 1);
    } else if (type == "ByteLevel") {
      if (p.value("add_prefix_space", false)) throw bad("pre_tokenizer", "ByteLevel add_prefix_space is not supported");
      if (p.value("use_regex", true)) s.regexes.push_back(kGpt2Regex);
    } else if (type == "Digits") {
      s.regexes.push_back(p.value("individual_digits", false) ? "\\p{N}" : "\\p{N}+");
    } else if (type == "Split" && p.contains("pattern") && p["pattern"].contains("Regex") && p["pattern"]["Regex"].is_string()) {
      s.regexes.push_back(p["pattern"]["Regex"].get<std::string>());
    } else {
      throw bad("pre_tokenizer", fmt::format("'{}' is not supported (ByteLevel, Digits, Split with a Regex, Sequence)", type));
    }
  };
  if (const auto it = j.find("pre_tokenizer"); it != j.end()) pre(*it, 0);
  nlohmann::json cfg;
  if (read_json((fs::path(dir) / "config.json").string(), cfg)) {
    if (cfg.contains("bos_token_id") && cfg["bos_token_id"].is_number_integer()) s.bos = cfg["bos_token_id"].get<int>();
    if (cfg.contains("eos_token_id") && cfg["eos_token_id"].is_number_integer()) s.eos = cfg["eos_token_id"].get<int>();
  }
  nlohmann::json tcfg;
  if (read_json((fs::path(dir) / "tokenizer_config.json").string(), tcfg)) s.add_bos = tcfg.value("add_bos_token", false);
  try {
    return std::make_unique<Gpt2Tokenizer>(std::move(s));
  } catch (const std::runtime_error& e) {
    throw bad("pre_tokenizer", e.what());
  }
}

}  // namespace

std::unique_ptr<Tokenizer> make_hf_tokenizer(const std::string& dir) {
  // Every value is type-checked where it is read; a JSON access that still meets the wrong type (a
  // number where a string belongs, found by tests/fuzz/fuzz_tokenizer_json) is bad input all the same.
  try {
    return parse_hf_tokenizer(dir);
  } catch (const nlohmann::json::exception& e) {
    throw ModelFileError(fmt::format("{}: error: a value has the wrong type or range: {}",
                                     (std::filesystem::path(dir) / "tokenizer.json").string(), e.what()));
  }
}

}  // namespace tqb
