#!/usr/bin/env bash
# The wgmma kernel whose producer warpgroup decodes into shared memory (wgmma_ws_kernel, issue 31; docs/GPU.md,
# "Hopper kernels"), in one call on the lent GPU machine: its CUDA parity tests (forced at n = 100, 130, 512 beside the
# other wgmma kernel), then bench_gpu at n = 128 and 512 (its wg_ws column beside wgmma_us, wg_sk (the other kernel
# over stream-K shares), the dequantized path and cuBLAS, all in the same run), then at n = 512 on 14336 x 4096 with the producer's decode switched off (TQB_LUT_MMA_WS_SKIP=1) and with
# the consumers' wgmmas switched off (=2): which side of the pipeline sets its pace. Logs into $OUT (or
# /tmp/tqb-device). Needs carry/ from scripts/device_carry.sh (either form).
#   bench/gpu_wgmma_producer.sh [--n LIST]
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/tqb-device}"
mkdir -p "$OUT"
. scripts/device_env.sh
ns=128,512
[[ "${1:-}" == --n && -n "${2:-}" ]] && ns=$2
step "CUDA parity tests (lut_mma)"
TQB_CUDA_TEST_QUICK=1 timeout 150 carry/bin/tqb_tests -tc="*lut_mma CUDA*" > "$OUT/ws-tests.txt" 2>&1
echo "exit $?"
grep -E "test cases|assertions|ERROR|FAILED" "$OUT/ws-tests.txt" | head -20
run() {  # NAME, then bench_gpu's arguments: the table's timing columns and the variant
  local name=$1; shift
  step "$name"
  timeout 150 carry/bin/bench_gpu --quick --json "$OUT/ws-$name.json" "$@" > "$OUT/ws-$name.txt" 2>&1
  echo "exit $?"
  # shape, n, default us, cuBLAS, large, dequantized, wgmma, wg_ws, wg_sk, the default's variant
  grep -E "^Llama" "$OUT/ws-$name.txt" | awk '{printf "%-8s n=%-4s us %8s cublas %8s large %8s deq %8s wgmma %8s wg_ws %8s wg_sk %8s  %s\n", $2, $4, $5, $6, $18, $19, $20, $21, $22, $23}'
}
run default --n "$ns"
TQB_LUT_MMA_WS_SKIP=1 run no-decode --only 14336x4096 --n 512
TQB_LUT_MMA_WS_SKIP=2 run no-wgmma --only 14336x4096 --n 512
step done
