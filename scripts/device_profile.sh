#!/usr/bin/env bash
# On the lent GPU machine, after scripts/device_carry.sh: Nsight Compute on one lut_mma launch of
# bench_gpu (speed of light, memory, occupancy, and the warp stall reasons as raw metrics), report
# into $OUT/ncu-*.txt and the key lines on stdout. bench_gpu runs with --default-only (no timed option or other
# path), so the launch after the 3 warm-ups is the default kernel's. The kernels' environment switches pass through:
# TQB_LUT_MMA_STREAM_ONLY=1 profiles the code stream with the decode switched off.
# Usage: scripts/device_profile.sh ROWSxCOLS N [FORMAT] [KERNEL_REGEX]
set -uo pipefail
OUT="${OUT:-/tmp/tqb-device}"
mkdir -p "$OUT"
shape=$1; n=$2; format=${3:-"turboquant(bits=4,group=128,rotation=hadamard)"}; kregex=${4:-"small_kernel|large_kernel|dequantize_kernel"}
. "$(dirname "$0")/device_env.sh"
ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1 || ls /usr/local/cuda/bin/ncu 2>/dev/null)
report="$OUT/ncu-${shape}-n${n}${TQB_LUT_MMA_STREAM_ONLY:+-stream-only}.txt"
"$ncu" --kernel-name "regex:${kregex}" --launch-skip 3 --launch-count 1 --clock-control none \
  --section SpeedOfLight --section Occupancy --section LaunchStats --section MemoryWorkloadAnalysis --section WarpStateStats \
  --metrics "regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio,smsp__inst_executed.sum,sm__cycles_elapsed.avg,smsp__issue_active.avg.pct_of_peak_sustained_active,dram__bytes_read.sum,lts__t_sectors_srcunit_tex_op_read.sum,l1tex__data_pipe_lsu_wavefronts_mem_shared.sum,smsp__warps_active.avg.per_cycle_active,regex:sm__pipe_tensor.*cycles_active.avg.pct_of_peak_sustained_active,regex:sm__inst_executed_pipe_.*sum$" \
  carry/bin/bench_gpu --only "$shape" --n "$n" --format "$format" --reps 3 --default-only > "$report" 2>&1
grep -E "Duration|DRAM Throughput|Memory Throughput|L2 Hit|Compute \(SM\)|Achieved Occupancy|Registers Per|Dynamic Shared|Grid Size|inst_executed|cycles_elapsed|issue_active|dram__bytes|lts__t_sectors|wavefronts|warps_active|pipe_tensor|inst_executed_pipe" "$report"
grep -E "issue_stalled" "$report" | awk '{print $NF, $1}' | sort -rn | head -12
