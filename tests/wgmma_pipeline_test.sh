#!/usr/bin/env bash
# The wgmma kernels' pipelines as ptxas builds them: lut_mma.cu compiled for sm_90a with ptxas's report, which
# names a function whose wgmmas it serialized (C7518: e.g. a 64-bit division's subroutine call inside the loop)
# or where it injected a wait for every wgmma in flight (C7517: e.g. a join where accumulators are live on one
# path and waited for on the other). Either costs up to 2x at n = 512 and passes every parity test (docs/GPU.md,
# "The wgmma loop serialized"), so it is checked here, on any machine with nvcc. warpgroup.arrive injections
# (C7519, a fence before the first wgmma) are cheap and allowed. Also: no wgmma kernel spills registers (its
# accumulators are up to 128 of them per thread; a spill inside the pipeline would cost as much).
#   tests/wgmma_pipeline_test.sh NVCC SOURCE_DIR
set -uo pipefail
nvcc=$1 src=$2
log=$(mktemp) obj=$(mktemp --suffix=.o)
trap 'rm -f "$log" "$obj"' EXIT
if ! "$nvcc" -O3 -DNDEBUG -std=c++20 --expt-relaxed-constexpr -DTQB_HAVE_CUDA=1 -I"$src" \
     -gencode=arch=compute_90a,code=sm_90a -Xptxas=-v,-warn-spills -c "$src/kernels/cuda/lut_mma.cu" -o "$obj" > "$log" 2>&1; then
  tail -20 "$log"
  echo "FAILED: nvcc could not compile kernels/cuda/lut_mma.cu for sm_90a"
  exit 1
fi
bad=$(grep -E "\((C7517|C7518)\)" "$log"; grep -E "spilled to local memory in function '[^']*wgmma" "$log")
kernels=$(grep -c "Compiling entry function" "$log")
if [[ -n $bad ]]; then
  echo "$bad" | sed -E "s/.*\((C751[78])\)[^']*'([^']*)'.*/\1 \2/; s/.*spilled to local memory in function '([^']*)', (.*)/spills \1: \2/" | sort | uniq -c
  echo "FAILED: ptxas serialized, waited on or spilled in the wgmma kernels above (of $kernels kernels)"
  exit 1
fi
echo "ok: $kernels sm_90a kernels, no serialized wgmma (C7518), no injected wait (C7517), no wgmma kernel spills"
