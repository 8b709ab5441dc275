#!/usr/bin/env bash
# Runs on the lent GPU machine (the device tool), from the repository root, after scripts/device_carry.sh
# packed carry/ here: prints the CPU, runs the kernel parity tests at every SIMD level that CPU has
# (this development VM has no AVX-512, so that is where the AVX-512 variants are checked), then the
# kernel benchmarks on Llama-3-8B shapes, with JSON into $OUT.
# Device call: run(command="scripts/device_check.sh", carry=["carry"])
set -uo pipefail
export LD_LIBRARY_PATH="$PWD/carry/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
OUT="${OUT:-/tmp/tqb-device}"
mkdir -p "$OUT"
{
  lscpu | grep -E "Model name|^CPU\(s\)|Thread|Flags" | sed -E 's/(Flags:).*/\1 (avx512 flags:)/'
  grep -o -w -E "avx512f|avx512bw|avx512vl|avx512dq|avx512_vnni|avx512vnni|avx_vnni|amx_tile" /proc/cpuinfo | sort -u | tr '\n' ' '
  echo
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || true
} | tee "$OUT/machine.txt"
status=0
carry/bin/tqb_tests -tc="*fused*,*kernel registry*" 2>&1 | tee "$OUT/tests.txt" | grep -v "^$" | tail -25
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
# Two threads, as on the development VM, then every core.
for threads in 2 "$(nproc)"; do
  OMP_NUM_THREADS=$threads carry/bin/bench_kernels --benchmark_filter="(Dense|turboquant4_auto|residual_4p4_auto|rtn4_auto|Cold)/(4096/4096|4096/14336)/(1|4|16|512)/" \
    --benchmark_min_time=0.2 --benchmark_out="$OUT/bench-${threads}t.json" --benchmark_out_format=json 2>&1 | grep -E "^BM_|Run on|CPU"
done
exit $status
