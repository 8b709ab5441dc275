#!/usr/bin/env bash
# Packs what scripts/device_check.sh needs on the lent GPU machine into carry/ (git-ignored, well under
# the device tool's 64 MiB): the kernel test and benchmark binaries, built here, and the shared
# libraries they load that are not part of glibc (the machine has no package registry).
# Usage: scripts/device_carry.sh   (after scripts/setup.sh has built build/)
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf carry
mkdir -p carry/bin carry/lib
cp build/tests/tqb_tests build/bench_kernels carry/bin/
for bin in carry/bin/*; do
  ldd "$bin" | awk '/=> \// {print $3}' | while read -r lib; do
    case "$(basename "$lib")" in
      libc.so.*|libm.so.*|libpthread.so.*|libdl.so.*|librt.so.*|libresolv.so.*|libutil.so.*|libanl.so.*|ld-linux*) ;;  # glibc: the machine's own
      *) cp -Ln "$lib" carry/lib/ ;;
    esac
  done
done
strip --strip-unneeded carry/bin/* 2>/dev/null || true
du -sh carry
