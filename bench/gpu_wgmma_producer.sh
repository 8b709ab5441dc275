#!/usr/bin/env bash
# The wgmma kernel whose producer warpgroup decodes into shared memory (wgmma_ws_kernel, issue 31; docs/GPU.md,
# "Hopper kernels"), in one call on the lent GPU machine: its CUDA parity tests (forced at n = 100, 130, 512 beside the
# other wgmma kernel), then bench_gpu at n = 128 and 512 (its wg_ws column beside wgmma_us, wg_sk (the other kernel
# over stream-K shares), the dequantized path and cuBLAS, all in the same run), then at n = 512 on 14336 x 4096 with the producer's decode switched off (TQB_LUT_MMA_WS_SKIP=1) and with
# the consumers' wgmmas switched off (=2): which side of the pipeline sets its pace. Logs into $OUT (or
# /tmp/tqb-device). With --profile, then Nsight Compute on each wgmma kernel at 14336 x 4096, n = 512 (the producer-
# decoded one, the other over the grid's tiles, the other over stream-K shares; scripts/device_profile.sh, about 40 s
# each). Needs carry/ from scripts/device_carry.sh (either form).
#   bench/gpu_wgmma_producer.sh [--n LIST] [--profile]
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/tqb-device}"
mkdir -p "$OUT"
ns=128,512
profile=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --n) [[ -n "${2:-}" ]] || { echo "gpu_wgmma_producer.sh: --n needs a list such as 128,512" >&2; exit 2; }; ns=$2; shift 2 ;;
    --profile) profile=1; shift ;;
    *) echo "gpu_wgmma_producer.sh: unknown option $1 (valid: --n LIST, --profile)" >&2; exit 2 ;;
  esac
done
. scripts/device_env.sh
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
if [[ $profile == 1 ]]; then
  for kernel in "ws 1 0" "tiles 0 0" "stream-k 0 1"; do  # name, TQB_LUT_MMA_WGMMA_WS, TQB_LUT_MMA_STREAM_K
    read -r name ws sk <<< "$kernel"
    step "profile: wgmma $name, 14336x4096, n = 512"
    TQB_LUT_MMA_WGMMA_WS=$ws TQB_LUT_MMA_STREAM_K=$sk OUT="$OUT/profile-$name" timeout 120 scripts/device_profile.sh 14336x4096 512 \
      "turboquant(bits=4,group=128,rotation=hadamard)" wgmma
  done
fi
step done
