#!/usr/bin/env bash
# The GPU forward's agreement and speed against its peers, in one call on the lent GPU machine (issue 24;
# docs/GPU.md's tables): the GPU tests, books-14m on the GPU, then a seeded random-weight folder of Llama-3-8B's
# shapes made there, run by tqbench (bf16; TurboQuant 4-bit g128 dequantized to bf16) and by plain PyTorch and
# transformers on the same tokens. Needs carry/ from `scripts/device_carry.sh --models`.
#   bench/gpu_forward.sh [quick|tqbench|peers|full|agreement]   quick: the tests and books-14m only; tqbench: all but the
#     peers and the fp32 reference; peers: only those (the 8B folder made if absent), so that two calls of a warm machine
#     can share the work; full: also TurboQuant 4-bit
#     on the 8B (its CPU quantization takes ~3.5 minutes of the call); agreement: only the 8B's perplexity at ctx 512
#     by tqbench (cuda, cuda-fp32), PyTorch and transformers in bf16, and PyTorch in fp32 (the exact reference)
set -uo pipefail
cd "$(dirname "$0")/.."
# On the device tool's machine everything also goes to $OUT as it happens, so that a call cut off by its time limit
# still brings back what it measured.
[[ -n ${OUT:-} && -d ${OUT:-} ]] && exec > >(tee -a "$OUT/$(basename "$0" .sh)-${1:-default}.log") 2>&1
. scripts/device_env.sh
B=carry/shared/models/books-14m T=carry/shared/data/books-heldout/heldout.txt L8=${TQB_L8B:-/tmp/llama3-8b-random}
if [[ "${1:-}" == agreement ]]; then
  [[ -d $L8 ]] || python3 bench/make_random_llama.py --shape llama3-8b --out $L8 --tokenizer-from $B 2>&1 | tail -1
  for dev in cuda cuda-fp32; do
    carry/bin/tqbench perplexity --model $L8 --corpus $T --device $dev --ctx 512 --chunks 64 2>&1 | grep -E "perplexity:|rror"
  done
  python3 bench/peers/torch_perplexity.py --model $L8 --text $T --ctx 512 --chunks 64 --batch 16
  python3 bench/peers/torch_perplexity.py --model $L8 --text $T --ctx 512 --chunks 64 --batch 16 --fp32 --peers torch
  exit 0
fi
step "GPU"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
mode=${1:-}
if [[ $mode != peers ]]; then
step "tests"; TQBENCH_BINARY=$PWD/carry/bin/tqbench carry/bin/tqb_tests -tc="*GPU*,*chunks*,*greedy*" 2>&1 | grep -E "MESSAGE|rel diff|relative|ERROR|test cases|assertions|SKIPPED" | head -60
step "books-14m"
carry/bin/tqbench perplexity --model $B --corpus $T --device cuda --ctx 512 --chunks 40 2>&1 | grep -E "perplexity:|GPU memory|loaded"
step "a model spec with device: cuda (books-14m: bf16 baseline and TurboQuant 4-bit on the GPU)"
cat > /tmp/gpu_spec.yaml <<YAML
experiment: books14m-gpu
data: {source: model, model: $B, corpus: $T, ctx: 512, chunks: 40, device: cuda}
quantizers: [none, 'turboquant(bits=4,group=128)', 'rtn(bits=4,group=128)']
metrics: [perplexity, kld_mean, eval_tokens_per_s, quantize_s, load_s, gpu_peak_bytes]
YAML
rm -f /tmp/gpu_spec.h5
carry/bin/tqbench run /tmp/gpu_spec.yaml -o /tmp/gpu_spec.h5 2>&1 | tail -1
carry/bin/tqbench show /tmp/gpu_spec.h5 --columns quantizer,perplexity,kld_mean,eval_tokens_per_s,quantize_s,load_s,gpu_peak_bytes,device
[[ $mode == quick ]] && exit 0
fi
step "make the 8B folder"; [[ -d $L8 ]] || python3 bench/make_random_llama.py --shape llama3-8b --out $L8 --tokenizer-from $B 2>&1 | tail -2
if [[ $mode != peers ]]; then
for ctx in 512 2048; do
  chunks=$((32768 / ctx))
  step "tqbench 8B ctx $ctx"
  /usr/bin/time -f "host peak RSS %M KB, %e s" carry/bin/tqbench perplexity --model $L8 --corpus $T --device cuda --ctx $ctx --chunks $chunks 2>&1 |
    grep -E "perplexity:|GPU memory|loaded|RSS|rror"
done
[[ "${1:-}" == full ]] && step "tqbench 8B ctx 2048, TurboQuant 4-bit g128 dequantized to bf16" &&
carry/bin/tqbench perplexity --model $L8 --corpus $T --device cuda --ctx 2048 --chunks 16 --quantizer "turboquant(bits=4,group=128)" 2>&1 |
  grep -E "perplexity:|GPU memory|loaded|rror"
step "tqbench 8B greedy decode (bf16, CUDA graph per step): a 500-token prompt, 128 new tokens"
head -c 2500 $T > /tmp/prompt.txt
carry/bin/tqbench generate --model $L8 --device cuda --prompt "$(cat /tmp/prompt.txt)" --tokens 128 2>&1 >/dev/null | grep -E "prefill|rror"
step "tqbench 8B ctx 2048 profile"
TQB_PROFILE_OPS=1 carry/bin/tqbench perplexity --model $L8 --corpus $T --device cuda --ctx 2048 --chunks 16 2>&1 | grep -E "perplexity:|GPU forward ops"
[[ $mode == tqbench ]] && exit 0
fi
step "peers"
python3 bench/peers/torch_perplexity.py --model $L8 --text $T --ctx 512 --chunks 64 --batch 16
python3 bench/peers/torch_perplexity.py --model $L8 --text $T --ctx 2048 --chunks 16 --batch 4
step "the fp32 reference (plain PyTorch in fp32), for how far each bf16 forward is from exact"
python3 bench/peers/torch_perplexity.py --model $L8 --text $T --ctx 512 --chunks 64 --batch 16 --fp32 --peers torch
carry/bin/tqbench perplexity --model $L8 --corpus $T --device cuda-fp32 --ctx 512 --chunks 64 2>&1 | grep -E "perplexity:|GPU memory|rror"
step "done"
