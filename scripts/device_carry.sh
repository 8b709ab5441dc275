#!/usr/bin/env bash
# Packs what scripts/device_check.sh needs on the lent GPU machine into carry/ (git-ignored, well under
# the device tool's 64 MiB): the test and benchmark binaries, built here (this machine has nvcc but no
# GPU), and the shared libraries they load that the GPU machine lacks (it has no package registry).
# glibc and the CUDA toolkit's own libraries (cuBLAS, cuBLASLt; the machine's toolkit has them) stay
# the machine's own.
# Usage: scripts/device_carry.sh [--models]   (after scripts/setup.sh has built build/)
#   --models: also the ../shared files the GPU-forward checks read (books-14m, stories260K's GGUF, books-heldout)
#   under carry/shared (run with TQB_SHARED_DIR=$PWD/carry/shared there), the test binary, tqbench and bench_gpu only, and
#   of the libraries only libyaml-cpp: the lent H200 machine has the others (ldd there, 2026-12-04), and the
#   models would not fit beside them.
set -euo pipefail
cd "$(dirname "$0")/.."
models=0
[[ "${1:-}" == "--models" ]] && models=1
rm -rf carry
mkdir -p carry/bin carry/lib
if ((models)); then
  cp build/tests/tqb_tests build/tqbench build/bench_gpu carry/bin/
  ldd build/tqbench | awk '/libyaml-cpp/ {print $3}' | xargs -r -I{} cp -L {} carry/lib/
  shared=${TQB_SHARED_DIR:-../shared}
  mkdir -p carry/shared/models/stories260K carry/shared/models/books-14m carry/shared/data/books-heldout
  cp "$shared/models/stories260K/stories260K.gguf" carry/shared/models/stories260K/
  cp "$shared"/models/books-14m/* carry/shared/models/books-14m/
  cp "$shared/data/books-heldout/heldout.txt" carry/shared/data/books-heldout/
else
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
fi
strip --strip-unneeded carry/bin/* 2>/dev/null || true
# With the models the binaries go gzipped (the device tool carries 64 MiB with the working tree): run
# `gunzip -f carry/bin/*.gz` there first (bench/gpu_*.sh do).
((models)) && gzip -f carry/bin/*
du -sh carry
