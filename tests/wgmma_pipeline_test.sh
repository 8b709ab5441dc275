#!/usr/bin/env bash
# The wgmma kernels' pipelines as ptxas builds them: lut_mma.cu compiled with the build's own command (from
# compile_commands.json, so the flags cannot drift from the build's) plus ptxas's report, which names a function
# whose wgmmas it serialized (C7518: e.g. a 64-bit division's subroutine call inside the loop) or where it injected a
# wait for every wgmma in flight (C7517: e.g. a join where accumulators are live on one path and waited for on the
# other). Either costs up to 2x at n = 512 and passes every parity test (docs/GPU.md, "The wgmma loop serialized"),
# so it is checked here, on any machine with nvcc. warpgroup.arrive injections (C7519, a fence before the first
# wgmma) are cheap and allowed. Also: no wgmma kernel spills registers (its accumulators are up to 128 of them per
# thread; a spill inside the pipeline would cost as much). Only the sm_90a target is built (the compute_80 PTX
# has no wgmma and no ptxas report).
#   tests/wgmma_pipeline_test.sh BUILD_DIR
set -uo pipefail
build=$1
log=$(mktemp) obj=$(mktemp --suffix=.o)
trap 'rm -f "$log" "$obj"' EXIT
# The build's command for lut_mma.cu: its directory, then its arguments, one per line (output to $obj, sm_90a only).
if ! command=$(python3 - "$build/compile_commands.json" "$obj" <<'PY'
import json, shlex, sys
entries = [e for e in json.load(open(sys.argv[1])) if e["file"].endswith("kernels/cuda/lut_mma.cu")]
if len(entries) != 1:
    sys.exit(f"{sys.argv[1]}: {len(entries)} entries for kernels/cuda/lut_mma.cu (expected 1: a build with TQB_CUDA on)")
e = entries[0]
args = e.get("arguments") or shlex.split(e["command"])
args = [a for a in args if not (a.startswith("-gencode") and "sm_90a" not in a)]
args[args.index("-o") + 1] = sys.argv[2]
print(e["directory"])
print("\n".join(args + ["-Xptxas=-v"]))
PY
); then
  echo "FAILED: no compile command for kernels/cuda/lut_mma.cu in $build/compile_commands.json"
  exit 1
fi
mapfile -t args <<< "$command"
if ! (cd "${args[0]}" && "${args[@]:1}") > "$log" 2>&1; then
  tail -20 "$log"
  echo "FAILED: the build's command could not compile kernels/cuda/lut_mma.cu: ${args[*]:1}"
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
