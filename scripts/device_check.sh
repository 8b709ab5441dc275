#!/usr/bin/env bash
# One call on the lent GPU machine (the device tool), from the repository root, after
# scripts/device_carry.sh packed carry/ here: the CUDA parity tests and the GPU forward/decode tests (not the
# GPU calibration, bench/gpu_calibrate.sh), compute-sanitizer memcheck on the parity tests, the GPU benchmark
# (lut_mma and cuBLAS bf16 in one binary), PyTorch's int4 kernel on the same shapes, and the joined Markdown
# table; logs and JSON into $OUT. With --cpu, also the CPU kernel parity tests at every SIMD level the machine's
# CPU has and a CPU benchmark subset.
# Device call: run(command="scripts/device_check.sh [--quick] [--stack] [--cpu] [--no-sanitizer]", carry=["carry"])
set -uo pipefail
OUT="${OUT:-/tmp/tqb-device}"
mkdir -p "$OUT"
quick=""; stack=""; cpu=0; sanitize=1
for a in "$@"; do
  case "$a" in
    --quick) quick="--quick" ;;
    --stack) stack="--stack" ;;
    --cpu) cpu=1 ;;
    --no-sanitizer) sanitize=0 ;;
    *) echo "device_check.sh: unknown option $a" >&2; exit 2 ;;
  esac
done
. "$(dirname "$0")/device_env.sh"  # the libraries, tools, carried models and binaries
{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>&1
  lscpu | grep -E "Model name|^CPU\(s\)"
  echo "cuBLAS from: ${cudalib:-not found}"
} | tee "$OUT/machine.txt"
status=0
echo "== CUDA parity tests"
# (a time limit: a kernel that hangs must not take the whole device call; the tests take about 170 s on an H100)
TQBENCH_BINARY="$PWD/carry/bin/tqbench" timeout 420 carry/bin/tqb_tests -tc="*lut_mma*,*cuda*,*GPU*,*timing.device*" -tce="calibration on the GPU*" 2>&1 | tee "$OUT/gpu-tests.txt" | grep -E "MESSAGE|rel err|SKIPPED|GPU:|test cases|assertions|ERROR|FAILED|CHECK" | tail -60
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
if [ "$sanitize" = 1 ] && command -v compute-sanitizer >/dev/null; then
  echo "== compute-sanitizer memcheck (parity tests, small shapes)"
  TQB_CUDA_TEST_QUICK=1 timeout 240 compute-sanitizer --tool memcheck --leak-check full --error-exitcode 3 carry/bin/tqb_tests -tc="*lut_mma CUDA*" > "$OUT/memcheck.txt" 2>&1
  rc=$?
  tail -4 "$OUT/memcheck.txt"
  echo "memcheck exit code: $rc"
  [ "$rc" -eq 0 ] || status=1
fi
echo "== GPU benchmark"
carry/bin/bench_gpu --check $quick $stack --json "$OUT/gpu.json" 2>&1 | tee "$OUT/bench-gpu.txt" | tail -80
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
echo "== PyTorch int4"
python3 bench/torch_int4.py $quick --json "$OUT/torch-int4.json" > "$OUT/torch-int4.txt" 2>&1 || status=1
tail -3 "$OUT/torch-int4.txt"
python3 bench/gpu_table.py "$OUT/gpu.json" "$OUT/torch-int4.json" > "$OUT/gpu-table.md" 2>&1 || python3 bench/gpu_table.py "$OUT/gpu.json" > "$OUT/gpu-table.md"
if [ "$cpu" = 1 ]; then
  echo "== CPU kernels"
  carry/bin/tqb_tests -tc="*fused*,*kernel registry*" 2>&1 | tee "$OUT/cpu-tests.txt" | tail -3
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  OMP_NUM_THREADS=2 carry/bin/bench_kernels --benchmark_filter="(Dense|turboquant4_auto)/(4096/14336)/(1|16|512)/" --benchmark_min_time=0.2 \
    --benchmark_out="$OUT/bench-cpu.json" --benchmark_out_format=json 2>&1 | grep -E "^BM_"
fi
echo "device_check.sh: exit $status"
exit $status
