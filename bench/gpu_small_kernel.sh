#!/usr/bin/env bash
# The small lut_mma kernel's experiments (n ≤ 16, issue 31; docs/GPU.md, "Hopper kernels"), in one call on the lent GPU
# machine, each against its default in the same call: the benchmark with the per-block trace (phases, blocks' end by
# blocks per SM), the eight read floors (among them the cp.async ring at 6, 8 and 12 slots), and the split-K through
# global memory and through the cluster (its sm_glob and sm_clus columns); the even K chunks against the earlier plan's 30-tile chunks on 14336 x 4096 (TQB_LUT_MMA_CHUNK=30
# beside the default at n = 1); the plain stream order instead of PDL (TQB_LUT_MMA_PDL=0), at n = 4 and 16 where
# the rotation kernel runs first; the code stream without its decode (TQB_LUT_MMA_STREAM_ONLY=1); then Nsight Compute's
# stall reasons on the n = 1 launch of 14336 x 4096. Logs into $OUT (or /tmp/tqb-device). Needs carry/ from
# scripts/device_carry.sh (either form).
#   bench/gpu_small_kernel.sh [--no-profile]
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/tqb-device}"
mkdir -p "$OUT"
. scripts/device_env.sh
run() {  # NAME, then bench_gpu's arguments; the table without blank lines, the trace lines kept
  local name=$1; shift
  step "$name"
  timeout 120 carry/bin/bench_gpu --quick --json "$OUT/small-$name.json" "$@" > "$OUT/small-$name.txt" 2>&1
  echo "exit $?"
  grep -v "^\s*$" "$OUT/small-$name.txt" | grep -vE "^(GPU|commit|an empty)"
}
run default --trace --n 1,4,9,16
run even-chunks --trace --only 14336x4096 --n 1
TQB_LUT_MMA_CHUNK=30 run chunk-30 --trace --only 14336x4096 --n 1
TQB_LUT_MMA_PDL=0 run no-pdl --trace --n 4,16
TQB_LUT_MMA_STREAM_ONLY=1 run stream-only --trace --n 1
if [[ "${1:-}" != --no-profile ]]; then
  step "Nsight Compute: the small kernel, n = 1, 14336x4096"
  timeout 200 scripts/device_profile.sh 14336x4096 1
fi
step done
