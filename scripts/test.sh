#!/usr/bin/env bash
# Set-up, then the whole test suite (C++ unit and end-to-end tests, plot script) under ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cd build
ctest --output-on-failure -j "$(nproc 2>/dev/null || echo 2)" "$@"
