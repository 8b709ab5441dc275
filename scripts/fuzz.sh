#!/usr/bin/env bash
# Coverage-guided fuzzing of tqbench's parsers with libFuzzer (outside the default test suite).
#   scripts/fuzz.sh [SECONDS_PER_TARGET=300 | --runs=N] [TARGET...]
#   --runs=N: each target runs N inputs instead of a fixed time (issue 28's job: --runs=100000)
# Targets: fuzz_gguf fuzz_safetensors fuzz_config_json fuzz_tokenizer_json fuzz_spec fuzz_journal fuzz_shards
# fuzz_quantized_export fuzz_kld_base (tests/fuzz/).
# Builds them with clang, AddressSanitizer and UBSan in build-fuzz/, seeds each from real files
# (../shared models, the repository's specs), runs each for the given time on one core, and prints one
# line per target: executions, coverage, and findings (crash-*/leak-*/timeout-* files, kept in
# build-fuzz/fuzz/findings/TARGET/ with the input that caused them). Exit 1 if anything was found.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-300}
shift || true
limit=(-max_total_time="$seconds")
if [[ $seconds == --runs=* ]]; then
  runs=${seconds#--runs=}
  [[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "fuzz: --runs needs a positive number of inputs, not '$runs'" >&2; exit 2; }
  limit=(-runs="$runs")
elif ! [[ $seconds =~ ^[1-9][0-9]*$ ]]; then
  echo "fuzz: the first argument is seconds per target (a positive number) or --runs=N, not '$seconds'" >&2; exit 2
fi
targets=("$@")
((${#targets[@]})) || targets=(fuzz_gguf fuzz_safetensors fuzz_config_json fuzz_tokenizer_json fuzz_spec fuzz_journal fuzz_shards
                           fuzz_quantized_export fuzz_kld_base)

scripts/setup.sh >/dev/null  # Debian packages (and the default build)
if ! command -v clang++ >/dev/null || ! ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1; then
  echo "fuzz: installing clang and its libFuzzer runtime" >&2
  pkgs=(clang libclang-rt-dev libomp-dev)
  if [[ $(id -u) -eq 0 ]]; then DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${pkgs[@]}" >/dev/null
  else sudo DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${pkgs[@]}" >/dev/null; fi
fi

build=build-fuzz
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DTQB_FUZZ=ON -DTQB_SANITIZE=ON -DTQB_CUDA=OFF -DBUILD_TESTING=ON >/dev/null
cmake --build "$build" -j"$(nproc)" --target "${targets[@]}" >/dev/null

shared=${TQB_SHARED_DIR:-$(cd .. && pwd)/shared}
work=$build/fuzz
found=0
for t in "${targets[@]}"; do
  corpus=$work/corpus/$t findings=$work/findings/$t
  mkdir -p "$corpus" "$findings"
  max_len=65536
  case $t in
    fuzz_gguf) cp -n "$shared/models/stories260K/stories260K.gguf" "$corpus/" 2>/dev/null || true; max_len=1200000 ;;
    fuzz_safetensors) cp -n "$shared/models/stories260K/hf/model.safetensors" "$corpus/" 2>/dev/null || true; max_len=1200000 ;;
    fuzz_config_json) cp -n "$shared/models/stories260K/hf/config.json" "$corpus/" 2>/dev/null || true ;;
    fuzz_tokenizer_json) cp -n tests/fuzz/seeds/tokenizer.json "$corpus/" ;;
    fuzz_spec) for f in tests/specs/good/*.yaml tests/specs/bad/*.yaml experiments/*/*.yaml; do cp -n "$f" "$corpus/$(basename "$(dirname "$f")")-$(basename "$f")"; done ;;
    fuzz_quantized_export) TQB_FUZZ_WRITE_SEED="$corpus/seed.json" "$work/$t" ;;  # the metadata of an export it makes
    # fuzz_journal, fuzz_shards, fuzz_kld_base: the input is a list of decisions about a real file (generators.hpp); no seed
  esac
  log=$work/$t.log
  # -close_fd_mask=2: the readers' warnings (a forged journal row) are not logged once per input; libFuzzer's own report
  # and the sanitizers' still are. -rss_limit_mb: a parser that allocates more than this for one input is a finding (unbounded memory).
  ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1 OMP_NUM_THREADS=1 \
    "$work/$t" "$corpus" "${limit[@]}" -max_len="$max_len" -timeout=10 -rss_limit_mb=4096 \
    -artifact_prefix="$findings/" -print_final_stats=1 -close_fd_mask=2 >"$log" 2>&1 || true
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo 0)
  n=$(find "$findings" -type f | wc -l)
  found=$((found + n))
  secs=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | grep -o 'in [0-9]*' | grep -o '[0-9]*' || echo '?')
  printf '%-22s %10s inputs in %6s s  coverage %6s  findings %s  (%s)\n' "$t" "$execs" "$secs" "$cov" "$n" "$log"
done
((found == 0)) || { echo "fuzz: $found findings; reproduce with: $work/TARGET FILE" >&2; exit 1; }
