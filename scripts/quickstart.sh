#!/usr/bin/env bash
# Set-up, then the default job end to end: the TurboQuant paper's distortion table
# (experiments/paper/distortion.yaml, about 1.5 minutes on 2 cores), printed beside the paper's values,
# with its figure. Usage: scripts/quickstart.sh [SPEC.yaml] — another spec gets the generic plot.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

SPEC=${1:-experiments/paper/distortion.yaml}
name=$(basename "$SPEC" .yaml)
[[ "$SPEC" == experiments/paper/distortion.yaml ]] && name=paper-distortion
out="results/$name.h5"
python=$(cat build/python)

./build/tqbench run "$SPEC" -o "$out" --force
echo
if [[ "$name" == paper-distortion ]]; then
  "$python" plots/distortion.py "$out" -o "results/$name"
else
  ./build/tqbench show "$out"
  "$python" plots/plot.py "$out" -o "results/$name"
fi
echo
echo "results: $out"
echo "plots:   results/$name.png, results/$name.pdf"
