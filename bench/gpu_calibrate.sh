#!/usr/bin/env bash
# Calibration (GPTQ's statistics and its layer-by-layer loop) on the GPU forward against the CPU's, in one call on the
# lent GPU machine (issue 30; docs/CALIBRATION.md's GPU section): the GPU calibration test, then books-14m calibrated
# with gptq(rtn 4-bit g128) on cpu, cuda-fp32 and cuda (calibration seconds and the perplexity of each), then a seeded
# random-weight Llama-3-8B folder's first blocks calibrated on cuda (the CPU forward of an 8B is what this replaces).
# TQB_CAL_DEVICES picks the books-14m devices, TQB_CAL_8B=0 skips the 8B.
# Needs carry/ from `scripts/device_carry.sh --models`.
set -uo pipefail
cd "$(dirname "$0")/.."
[[ -n ${OUT:-} && -d ${OUT:-} ]] && exec > >(tee -a "$OUT/$(basename "$0" .sh).log") 2>&1
. scripts/device_env.sh
B=carry/shared/models/books-14m T=carry/shared/data/books-heldout/heldout.txt L8=${TQB_L8B:-/tmp/llama3-8b-random}
step "GPU"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; nproc
step "test: calibration on the GPU forward"
timeout 300 carry/bin/tqb_tests -tc="calibration on the GPU forward*" 2>&1 | grep -E "MESSAGE|ERROR|SKIPPED|test cases|values|CHECK" | head -20
Q="gptq(rtn(bits=4,group=128))"
for dev in ${TQB_CAL_DEVICES:-cpu cuda-fp32 cuda}; do
  step "books-14m, $Q, calibration and evaluation on $dev (16 chunks of 512 from the text's end; 32 chunks of 512 scored)"
  carry/bin/tqbench perplexity --model $B --corpus $T --ctx 512 --chunks 32 --device $dev --quantizer "$Q" --calibration-chunks 16 \
    --calibration-ctx 512 2>&1 | grep -E "calibrated|perplexity|rror" | sed 's/^/  /'
done
[[ ${TQB_CAL_8B:-1} == 0 ]] && { step "done (TQB_CAL_8B=0: no 8B run)"; exit 0; }
[[ -d $L8 ]] || { step "make the 8B folder"; python3 bench/make_random_llama.py --shape llama3-8b --out $L8 --tokenizer-from $B 2>&1 | tail -1; }
# GPTQ's own work (each layer's Hessian factored and inverted in double on the host, Eigen) grows as the cube of the
# layer's inputs, so the 8B run keeps to the first TQB_CAL_BLOCKS blocks' attention projections (default 1: four
# layers of 4096 inputs) and the call's time goes to the statistics' forward and sums on the GPU.
blocks=${TQB_CAL_BLOCKS:-1}
inc="blk\.($(seq -s'|' 0 $((blocks - 1))))\.attn_(q|k|v|output)\.weight"
step "Llama-3-8B shapes (random weights), $Q on $inc, calibrated on cuda (16 chunks of 512, sequential)"
/usr/bin/time -f "  wall %e s, host peak RSS %M KB" carry/bin/tqbench perplexity --model $L8 --corpus $T --ctx 512 --chunks 2 --device cuda \
  --quantizer "$Q" --include "$inc" --calibration-chunks 16 --calibration-ctx 512 2>&1 | grep -E "calibrated|perplexity|rror|wall" | sed 's/^/  /'
step "done"
