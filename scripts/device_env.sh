# Sourced (never run) by the scripts that run on the lent GPU machine, from the repository root, after
# scripts/device_carry.sh packed carry/ here: the machine's own CUDA libraries (cuBLAS) wherever it is installed and the
# carried ones on the library path, the toolkit's tools (compute-sanitizer, ncu) on PATH, the carried models and text
# as TQB_SHARED_DIR (when device_carry.sh --models packed them), the gzipped binaries unpacked, and `step`, the logs'
# timestamped headings.
cudalib=""
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib $(ls -d /usr/local/cuda-*/lib64 2>/dev/null); do
  [ -e "$d/libcublas.so.13" ] && { cudalib=$d; break; }
done
[ -n "$cudalib" ] || cudalib=$(python3 -c "import nvidia.cublas, os; print(os.path.join(nvidia.cublas.__path__[0], 'lib'))" 2>/dev/null || true)
export LD_LIBRARY_PATH="$PWD/carry/lib${cudalib:+:$cudalib}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH="$PATH:/usr/local/cuda/bin"
[ -d carry/shared ] && export TQB_SHARED_DIR="${TQB_SHARED_DIR:-$PWD/carry/shared}"
for z in carry/bin/*.gz; do [ -f "$z" ] && gunzip -f "$z"; done  # scripts/device_carry.sh --models gzips them
step() { echo "=== $(date +%T) $*"; }
