#!/usr/bin/env bash
# Packs what scripts/device_check.sh needs on the lent GPU machine into carry/ (git-ignored, well under
# the device tool's 64 MiB): the test and benchmark binaries, built here (this machine has nvcc but no
# GPU), and the shared libraries they load that the GPU machine lacks (it has no package registry).
# glibc and the CUDA toolkit's own libraries (cuBLAS, cuBLASLt; the machine's toolkit has them) stay
# the machine's own.
# Usage: scripts/device_carry.sh   (after scripts/setup.sh has built build/)
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf carry
mkdir -p carry/bin carry/lib
cp build/tests/tqb_tests build/bench_kernels build/bench_gpu build/tqbench carry/bin/
for bin in carry/bin/*; do
  ldd "$bin" | awk '/=> \// {print $3}' | while read -r lib; do
    case "$(basename "$lib")" in
      libc.so.*|libm.so.*|libpthread.so.*|libdl.so.*|librt.so.*|libresolv.so.*|libutil.so.*|libanl.so.*|ld-linux*) ;;  # glibc
      libcublas*|libcudart*|libcuda.so*|libnvrtc*|libnvJitLink*) ;;  # the CUDA toolkit and driver there
      *) cp -Ln "$lib" carry/lib/ ;;
    esac
  done
done
strip --strip-unneeded carry/bin/* 2>/dev/null || true
du -sh carry
