#!/usr/bin/env bash
# The GPU forward's agreement and speed against its peers, in one call on the lent GPU machine (issue 24;
# docs/GPU.md's tables): the GPU tests, books-14m on the GPU, then a seeded random-weight folder of Llama-3-8B's
# shapes made there, run by tqbench (bf16; TurboQuant 4-bit g128 dequantized to bf16) and by plain PyTorch and
# transformers on the same tokens. Needs carry/ from `scripts/device_carry.sh --models`.
#   bench/gpu_forward.sh [quick|full]   quick: the tests and books-14m only; full: also TurboQuant 4-bit on the 8B
#                                       (its CPU quantization takes ~4 minutes of the call)
set -uo pipefail
cd "$(dirname "$0")/.."
export LD_LIBRARY_PATH=$PWD/carry/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} TQB_SHARED_DIR=$PWD/carry/shared
B=carry/shared/models/books-14m T=carry/shared/data/books-heldout/heldout.txt L8=${TQB_L8B:-/tmp/llama3-8b-random}
step() { echo "=== $(date +%T) $*"; }
step "GPU"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
step "tests"; carry/bin/tqb_tests -tc="*GPU*,*chunks*" 2>&1 | grep -E "MESSAGE|rel diff|relative|ERROR|test cases|assertions|SKIPPED" | head -60
step "books-14m"
for dev in cuda; do carry/bin/tqbench perplexity --model $B --corpus $T --device $dev --ctx 512 --chunks 40 2>&1 | grep -E "perplexity:|GPU memory|loaded"; done
[[ "${1:-}" == quick ]] && exit 0
step "make the 8B folder"; [[ -d $L8 ]] || python3 bench/make_random_llama.py --shape llama3-8b --out $L8 --tokenizer-from $B 2>&1 | tail -2
for ctx in 512 2048; do
  chunks=$((32768 / ctx))
  step "tqbench 8B ctx $ctx"
  /usr/bin/time -f "host peak RSS %M KB, %e s" carry/bin/tqbench perplexity --model $L8 --corpus $T --device cuda --ctx $ctx --chunks $chunks 2>&1 |
    grep -E "perplexity:|GPU memory|loaded|RSS|rror"
done
[[ "${1:-}" == full ]] && step "tqbench 8B ctx 2048, TurboQuant 4-bit g128 dequantized to bf16" &&
carry/bin/tqbench perplexity --model $L8 --corpus $T --device cuda --ctx 2048 --chunks 16 --quantizer "turboquant(bits=4,group=128)" 2>&1 |
  grep -E "perplexity:|GPU memory|loaded|rror"
step "tqbench 8B ctx 2048 profile"
TQB_PROFILE_OPS=1 carry/bin/tqbench perplexity --model $L8 --corpus $T --device cuda --ctx 2048 --chunks 16 2>&1 | grep -E "perplexity:|GPU forward ops"
step "peers"
python3 bench/peers/torch_perplexity.py --model $L8 --text $T --ctx 512 --chunks 64 --batch 16
python3 bench/peers/torch_perplexity.py --model $L8 --text $T --ctx 2048 --chunks 16 --batch 4
step "done"
