#include "eval/passkey.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "common/error.hpp"
#include "common/printable.hpp"
#include "common/rng.hpp"

namespace tqb {
namespace {

constexpr const char* kIntro =
    "There is an important info hidden inside a lot of irrelevant text. Find it and memorize it. I will quiz you "
    "about the important information there.\n";
constexpr const char* kFiller = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. ";
constexpr const char* kQuestion = "\nWhat is the pass key? The pass key is";

std::string prompt(std::size_t fillers, std::size_t depth, int key) {
  std::string text = kIntro;
  for (std::size_t i = 0; i < fillers; ++i) {
    if (i == depth) text += fmt::format("The pass key is {}. Remember it. {} is the pass key. ", key, key);
    text += kFiller;
  }
  return text + kQuestion;
}

}  // namespace

PasskeyResult run_passkey(const LlamaModel& model, const Tokenizer& tok, std::size_t ctx, int trials, std::uint64_t seed,
                          std::ostream* log) {
  if (ctx > static_cast<std::size_t>(model.config().context))
    throw InputError(fmt::format("passkey context {} exceeds the model's context length {}", ctx, model.config().context));
  constexpr std::size_t kAnswerTokens = 8;
  auto tokens_of = [&](const std::string& text) {
    std::vector<int> t = tok.encode(text);
    if (tok.add_bos()) t.insert(t.begin(), tok.bos());
    return t;
  };
  // Tokens do not add up across fillers (merges at their seams): estimate, then shrink until it fits.
  const std::size_t per_filler = std::max<std::size_t>(1, tok.encode(kFiller).size());
  const std::size_t base = tokens_of(prompt(1, 0, 99999)).size();
  if (base + kAnswerTokens > ctx)
    throw InputError(fmt::format("passkey context {} is too short for the prompt ({} tokens)", ctx, base + kAnswerTokens));
  std::size_t fillers = (ctx - kAnswerTokens - base) / per_filler + 1;
  Rng rng(seed);
  PasskeyResult r;
  for (int trial = 0; trial < trials; ++trial) {
    const int key = 10000 + static_cast<int>(rng.next_u64() % 90000);
    const double where = rng.uniform();
    std::vector<int> tokens;
    std::size_t depth = 0;
    for (;; --fillers) {
      depth = static_cast<std::size_t>(where * static_cast<double>(fillers));
      tokens = tokens_of(prompt(fillers, depth, key));
      if (tokens.size() + kAnswerTokens <= ctx || fillers == 1) break;
    }
    if (tokens.size() + kAnswerTokens > ctx)
      throw InputError(fmt::format("passkey context {} is too short for the prompt ({} tokens)", ctx, tokens.size() + kAnswerTokens));
    KvCache cache = model.new_cache(tokens.size() + kAnswerTokens);
    std::vector<int> answer = model.generate_greedy(tokens, kAnswerTokens, cache, tok.eos()).tokens;  // on a GPU: its decode graph
    if (!answer.empty() && answer.back() == tok.eos()) answer.pop_back();
    const std::string text = tok.decode(answer);
    std::string digits;
    for (char c : text) {
      if (c >= '0' && c <= '9') digits += c;
      else if (!digits.empty()) break;
    }
    const bool ok = digits == std::to_string(key);
    r.correct += ok;
    ++r.trials;
    r.prompt_tokens = tokens.size();
    if (log)
      *log << fmt::format("trial {}: key {} at depth {:.0f}% of {} tokens: answered '{}' {}\n", trial, key,
                          100.0 * static_cast<double>(depth) / static_cast<double>(std::max<std::size_t>(fillers, 1)), tokens.size(),
                          printable(text), ok ? "ok" : "wrong");
  }
  return r;
}

}  // namespace tqb
