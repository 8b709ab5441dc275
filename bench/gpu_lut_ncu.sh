#!/usr/bin/env bash
# Nsight Compute on the LUT kernels at Llama-3-8B shapes (issue 31; docs/GPU.md's Hopper section): speed of light,
# occupancy, memory workload and the warp stall reasons of one launch, so that "where the time goes" is a profile.
#   bench/gpu_lut_ncu.sh [KERNEL [N [ROWSxCOLS ...]]]   default: small_kernel at n = 1 on 14336x4096 (gate/up)
# The kernels' environment switches pass through: TQB_LUT_MMA_STREAM_ONLY=1 profiles the stream without the decode.
# KERNEL is a regex on the kernel's name (small_kernel, large_kernel, dequantize_kernel). Needs carry/ (scripts/device_carry.sh).
set -uo pipefail
cd "$(dirname "$0")/.."
[[ -n ${OUT:-} && -d ${OUT:-} ]] && exec > >(tee -a "$OUT/$(basename "$0" .sh).log") 2>&1
export LD_LIBRARY_PATH=$PWD/carry/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
for z in carry/bin/*.gz; do [[ -f $z ]] && gunzip -f "$z"; done
ncu=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
[[ -x $ncu ]] || { echo "no ncu on this machine"; exit 1; }
kernel=${1:-small_kernel} n=${2:-1}
for shape in ${3:-14336x4096}; do
  echo "=== $(date +%T) ncu: $kernel, n = $n, $shape (turboquant 4-bit g128)${TQB_LUT_MMA_STREAM_ONLY:+, stream only}"
  # bench_gpu runs the L2-prefetch option first at these shapes (3 warm-ups + 5 calls), then the default: the 13th launch
  # is a default one. Other kernels (flush, read floor, cuBLAS) do not match the name.
  timeout 150 "$ncu" --kernel-name "regex:$kernel" --launch-skip 12 --launch-count 1 --clock-control none \
    --section SpeedOfLight --section Occupancy --section LaunchStats --section MemoryWorkloadAnalysis --section WarpStateStats \
    --metrics "regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio,dram__bytes_read.sum,smsp__inst_executed.sum,sm__cycles_active.avg,gpc__cycles_elapsed.max" \
    carry/bin/bench_gpu --quick --only "$shape" --n "$n" --reps 5 >/tmp/ncu-$shape.txt 2>&1
  grep -E "Duration|DRAM Throughput|Memory Throughput|Compute \(SM\)|Achieved Occupancy|Theoretical Occupancy|Block Limit|Registers Per|Grid Size|Waves Per SM|Shared Memory Configuration Size|Dynamic Shared|inst_executed|dram__bytes|L2 Hit|cycles_active|cycles_elapsed" /tmp/ncu-$shape.txt
  grep -E "issue_stalled" /tmp/ncu-$shape.txt | awk '{print $NF, $1}' | sort -rn | head -8
  grep -E "^    (OPT|WRN|INF)" /tmp/ncu-$shape.txt | head -12
done
