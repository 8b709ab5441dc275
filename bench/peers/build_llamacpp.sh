#!/usr/bin/env bash
# Builds the peer, llama.cpp, from the PyPI source distribution of llama-cpp-python (which vendors it)
# into a cache outside the repository, and prints the folder that holds its binaries and libraries.
# Nothing of llama.cpp is copied into tqbench; the cache is ~/.cache/tqbench/peers (or $TQB_PEER_CACHE).
#   bench/peers/build_llamacpp.sh            -> builds once (idempotent), prints the install prefix
# Built as the measurements were: GGML_NATIVE (tuned for this CPU, as llama.cpp users build it),
# OpenMP, Release; targets llama-perplexity, llama-bench, test-backend-ops, llama-quantize, llama-imatrix and the ggml libraries that
# bench/peers/ggml_mul_mat.cpp links.
set -euo pipefail
version=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
cache=${TQB_PEER_CACHE:-$HOME/.cache/tqbench/peers}
src=$cache/llama_cpp_python-$version/vendor/llama.cpp
build=$cache/llama.cpp-$version-build
prefix=$cache/llama.cpp-$version
mkdir -p "$cache"
if [[ ! -f $prefix/.complete ]]; then
  if [[ ! -d $src ]]; then
    (cd "$cache" && python3 -m pip download "llama-cpp-python==$version" --no-binary :all: --no-deps --no-build-isolation -d . >&2 ||
       python3 -m pip download "llama-cpp-python==$version" --no-binary :all: --no-deps -d . >&2)
    tar -xzf "$cache/llama_cpp_python-$version.tar.gz" -C "$cache"
  fi
  cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DGGML_OPENMP=ON -DLLAMA_CURL=OFF \
    -DLLAMA_BUILD_TESTS=ON -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
    -DBUILD_SHARED_LIBS=ON -DCMAKE_INSTALL_PREFIX="$prefix" >&2
  cmake --build "$build" -j"$(nproc)" --target llama-perplexity llama-bench test-backend-ops llama-quantize llama-imatrix >&2
  mkdir -p "$prefix/bin" "$prefix/lib" "$prefix/include"
  cp "$build"/bin/llama-perplexity "$build"/bin/llama-bench "$build"/bin/test-backend-ops "$build"/bin/llama-quantize "$build"/bin/llama-imatrix "$prefix/bin/"
  find "$build" -name "*.so*" -exec cp -P {} "$prefix/lib/" \;
  cp "$src"/ggml/include/*.h "$prefix/include/"
  # The llama.cpp commit vendored in this release (from the sdist's git metadata where present).
  commit=$(git -C "$src" rev-parse --short HEAD 2>/dev/null || sed -n 's/.*LLAMA_COMMIT *"\{0,1\}\([0-9a-f]\{7,\}\).*/\1/p' "$build/common/build-info.cpp" 2>/dev/null | head -1)
  echo "${commit:-unknown}" > "$prefix/COMMIT"
  touch "$prefix/.complete"
fi
echo "$prefix"
