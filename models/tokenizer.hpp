#pragma once
// Tokenizers read from a model file: SentencePiece-style BPE with scores and byte fallback (GGUF
// `llama`) and byte-level BPE with merges and a pre-tokenizer regex (GGUF `gpt2` and Hugging Face
// tokenizer.json; PCRE2 for the Unicode classes). Special tokens in text are not parsed: text is always text (as llama.cpp's
// perplexity tool tokenizes).
#include <memory>
#include <string>
#include <vector>

namespace tqb {

class GgufFile;

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // Token ids of the text, without BOS.
  virtual std::vector<int> encode(const std::string& text) const = 0;
  // The text of the tokens; decode(encode(t)) == t for any valid UTF-8 t. Control tokens (BOS, EOS)
  // decode to nothing.
  virtual std::string decode(const std::vector<int>& ids) const = 0;
  virtual std::string kind() const = 0;  // "llama" or "gpt2"
  int vocab_size() const { return static_cast<int>(tokens_.size()); }
  int bos() const { return bos_; }
  int eos() const { return eos_; }
  bool add_bos() const { return add_bos_; }
  const std::string& token(int id) const { return tokens_.at(id); }

 protected:
  std::vector<std::string> tokens_;
  int bos_ = -1, eos_ = -1;
  bool add_bos_ = false;
};

// From GGUF metadata (tokenizer.ggml.*); throws ModelFileError naming the key when it is missing or
// malformed, or InputError listing the supported models.
std::unique_ptr<Tokenizer> make_gguf_tokenizer(const GgufFile& gguf);

// From a Hugging Face folder's tokenizer.json (byte-level BPE: vocab, merges, and a ByteLevel, Digits,
// Split or Sequence pre-tokenizer), with BOS/EOS from config.json and add_bos from tokenizer_config.json.
std::unique_ptr<Tokenizer> make_hf_tokenizer(const std::string& dir);

}  // namespace tqb
