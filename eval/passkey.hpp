#pragma once
// Passkey retrieval (Mohtashami & Jaggi 2023, as long-context and KV-cache papers use it): a 5-digit number
// hidden at a random depth in repeated filler text, asked for at the end; the model answers greedily. The
// fraction answered exactly, over trials with random keys and depths, at a context length, with the
// model's KV cache as configured (fp32 or quantized).
#include <cstdint>
#include <ostream>
#include <string>

#include "models/llama.hpp"
#include "models/tokenizer.hpp"

namespace tqb {

struct PasskeyResult {
  int trials = 0, correct = 0;
  std::size_t prompt_tokens = 0;  // of the last trial
  double accuracy() const { return trials ? static_cast<double>(correct) / trials : 0.0; }
};

// ctx: prompt length in tokens (at most the model's context). `log` gets one line per trial.
PasskeyResult run_passkey(const LlamaModel& model, const Tokenizer& tok, std::size_t ctx, int trials, std::uint64_t seed,
                          std::ostream* log);

}  // namespace tqb
