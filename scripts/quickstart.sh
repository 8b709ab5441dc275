#!/usr/bin/env bash
# Set-up, then the default experiment end to end: run the sweep, print its table, draw its plots.
# Usage: scripts/quickstart.sh [SPEC.yaml]   (default: the current default experiment below)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

SPEC=${1:-experiments/sweeps/rtn-synthetic.yaml}
name=$(basename "$SPEC" .yaml)
out="results/$name.h5"
python=$(cat build/python)

./build/tqbench run "$SPEC" -o "$out" --force
./build/tqbench show "$out"
"$python" plots/plot.py "$out" -o "results/$name"
echo
echo "results: $out"
echo "plots:   results/$name.png, results/$name.pdf"
