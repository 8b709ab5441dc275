#!/usr/bin/env bash
# Passkey retrieval against KV-cache bits (issue 14): SmolLM2-135M at a context of $1 tokens (default 2048),
# $2 trials (default 10) per configuration, the same keys and depths for each (seed 7). Prints a Markdown
# table; run on an otherwise idle machine (each trial is a prefill and 8 decode steps).
#   bench/kv_passkey.sh [CTX] [TRIALS]
set -euo pipefail
cd "$(dirname "$0")/.."
ctx=${1:-2048}
trials=${2:-10}
tq() { echo "turboquant(bits=$1,group=row,rotation=hadamard,norm=fp16)"; }
prod() { echo "turboquant_prod(bits=$1,group=row,rotation=hadamard,norm=fp16)"; }
echo "| KV cache (keys and values) | key bits | correct | prompt tokens |"
echo "|---|---|---|---|"
run() {
  local label=$1; shift
  local line
  line=$(build/tqbench passkey --model smollm2-135m --ctx "$ctx" --trials "$trials" --seed 7 "$@" | tail -1)
  # passkey: C/T correct (P%) at N prompt tokens; KV cache: keys K (B bits), ...
  local correct tokens bits
  correct=$(sed -n 's/^passkey: \([0-9]*\/[0-9]*\) correct.*/\1/p' <<<"$line")
  tokens=$(sed -n 's/.* at \([0-9]*\) prompt tokens.*/\1/p' <<<"$line")
  bits=$(sed -n 's/.*keys .* (\([0-9.]*\) bits), values.*/\1/p' <<<"$line")
  echo "| $label | $bits | $correct | $tokens |"
}
run "fp32"
for b in 2 3 4; do run "turboquant $b-bit" --kv-key "$(tq $b)" --kv-value key; done
for b in 3 4; do run "turboquant_prod $b-bit" --kv-key "$(prod $b)" --kv-value key; done
run "turboquant 3-bit, 32 outlier channels at 4 bits" --kv-key "$(tq 3)" --kv-value key --kv-outliers 32 --kv-outlier-key "$(tq 4)"
for b in 2 3; do run "KIVI $b-bit (keys per channel, blocks of 32)" --kv-key "rtn(bits=$b,group=row,mode=asym)" --kv-value key --kv-key-axis channel --kv-block 32; done
