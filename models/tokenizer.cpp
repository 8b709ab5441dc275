#include "models/tokenizer.hpp"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <fmt/format.h>
#include <pcre2.h>

#include <map>
#include <mutex>
#include <queue>
#include <unordered_map>

#include "common/error.hpp"
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

class Gpt2Tokenizer final : public Tokenizer {
 public:
  explicit Gpt2Tokenizer(const GgufFile& g) {
    tokens_ = g.get_strings("tokenizer.ggml.tokens");
    for (std::size_t i = 0; i < tokens_.size(); ++i) ids_.emplace(tokens_[i], static_cast<int>(i));
    const auto merges = g.get_strings("tokenizer.ggml.merges");
    for (std::size_t i = 0; i < merges.size(); ++i) ranks_.emplace(merges[i], static_cast<int>(i));
    if (g.has("tokenizer.ggml.token_type")) types_ = g.get_ints("tokenizer.ggml.token_type");
    types_.resize(tokens_.size(), 1);
    bos_ = g.has("tokenizer.ggml.bos_token_id") ? static_cast<int>(g.get_uint("tokenizer.ggml.bos_token_id")) : -1;
    eos_ = g.has("tokenizer.ggml.eos_token_id") ? static_cast<int>(g.get_uint("tokenizer.ggml.eos_token_id")) : -1;
    add_bos_ = g.has("tokenizer.ggml.add_bos_token") ? g.get_bool("tokenizer.ggml.add_bos_token") : false;
    // GPT-2's byte-to-unicode table: printable bytes map to themselves, the rest to 256 + n.
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      byte_char_[b] = utf8_encode(printable ? b : 256 + n++);
      char_byte_[byte_char_[b]] = static_cast<unsigned char>(b);
    }
    // Pre-tokenizer regexes per tokenizer.ggml.pre (llama.cpp's table for the ones listed here).
    const std::string pre = g.has("tokenizer.ggml.pre") ? g.get_string("tokenizer.ggml.pre") : "gpt2";
    const std::string gpt2 = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
    if (pre == "gpt2" || pre == "default" || pre == "mpt" || pre == "olmo") {
      regexes_.push_back(std::make_unique<Regex>(gpt2));
    } else if (pre == "smollm" || pre == "starcoder" || pre == "refact" || pre == "codeshell") {
      regexes_.push_back(std::make_unique<Regex>("\\p{N}"));  // every digit on its own
      regexes_.push_back(std::make_unique<Regex>(gpt2));
    } else {
      throw InputError(fmt::format("{}: error: tokenizer.ggml.pre '{}' is not supported (gpt2, smollm, starcoder, "
                                   "refact, codeshell, mpt, olmo)", g.path(), pre));
    }
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

}  // namespace

std::unique_ptr<Tokenizer> make_gguf_tokenizer(const GgufFile& g) {
  const std::string model = g.get_string("tokenizer.ggml.model");
  if (model == "llama") return std::make_unique<SpmTokenizer>(g);
  if (model == "gpt2") return std::make_unique<Gpt2Tokenizer>(g);
  throw InputError(fmt::format("{}: error: tokenizer.ggml.model '{}' is not supported (llama, gpt2)", g.path(), model));
}

}  // namespace tqb
