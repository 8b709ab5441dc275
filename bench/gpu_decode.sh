#!/usr/bin/env bash
# Greedy decode on the GPU against its peers, in one call on the lent GPU machine (issue 25; docs/GPU.md's decode
# table): a seeded random-weight folder of Llama-3-8B's shapes (made there, as bench/gpu_forward.sh does), a prompt of
# about 512 tokens, then 128 decode steps by tqbench (bf16 cuBLAS; TurboQuant 4-bit g128 through cuda_lut_mma) and by
# PyTorch (bf16 eager, bf16 CUDA graph, int4 tinygemm CUDA graph) and transformers' generate, on the same tokens.
# Needs carry/ from `scripts/device_carry.sh --models`.
#   bench/gpu_decode.sh [bf16|tqbench|long|profile|load|attention-ncu]   bf16: skip the 4-bit model (its quantization on
#     the host takes minutes of the call); tqbench: tqbench's rows only (no peers);
#     long: decode time and KV bytes against context (1k to 32k tokens, TQB_LONG_CTX to pick; the folder's config
#     given 40,960 positions), bf16 cache against TurboQuant 4- and 2-bit caches coded on the GPU (TQB_LONG_KV=0: the
#     bf16 cache only), tqbench only; profile: where a decode step's time goes
#     (TQB_PROFILE_OPS: each op timed inside the CUDA graph, and left out of it in turn), bf16 and TurboQuant 4-bit;
#     load: the 8B's load + quantize time (TurboQuant 4-bit g128) and host memory; attention-ncu: Nsight Compute on the
#     decode step's split attention at TQB_LONG_CTX (default 32768), bf16 cache against a 4-bit coded one
set -uo pipefail
cd "$(dirname "$0")/.."
# On the device tool's machine everything also goes to $OUT as it happens, so that a call cut off by its time limit
# still brings back what it measured.
[[ -n ${OUT:-} && -d ${OUT:-} ]] && exec > >(tee -a "$OUT/$(basename "$0" .sh)-${1:-default}.log") 2>&1
. scripts/device_env.sh
B=carry/shared/models/books-14m T=carry/shared/data/books-heldout/heldout.txt L8=${TQB_L8B:-/tmp/llama3-8b-random}
step "GPU"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
[[ -d $L8 ]] || { step "make the 8B folder"; python3 bench/make_random_llama.py --shape llama3-8b --out $L8 --tokenizer-from $B 2>&1 | tail -1; }
# A prompt of the text's first N - 1 tokens of the folder's tokenizer (BOS makes N), as the peer script takes them.
prompt_file() {
  python3 - "$L8" "$T" "$1" "$2" <<'PY'
import sys
from tokenizers import Tokenizer
t = Tokenizer.from_file(sys.argv[1] + "/tokenizer.json")
ids = t.encode(open(sys.argv[2], encoding="utf-8").read()[:2000000], add_special_tokens=False).ids[:int(sys.argv[3]) - 1]
open(sys.argv[4], "w", encoding="utf-8").write(t.decode(ids))
PY
}
if [[ "${1:-}" == long || "${1:-}" == attention-ncu ]]; then
  LL=/tmp/llama3-8b-long  # the same shards, a config of 40,960 positions
  mkdir -p $LL && ln -sf "$(readlink -f $L8)"/*.safetensors $LL/ && cp $L8/tokenizer.json $LL/
  [[ -f $L8/model.safetensors.index.json ]] && cp $L8/model.safetensors.index.json $LL/
  python3 -c "import json,sys; c=json.load(open('$L8/config.json')); c['max_position_embeddings']=40960; json.dump(c, open('$LL/config.json','w'))"
  if [[ "${1:-}" == attention-ncu ]]; then
    # Nsight Compute on one decode step's split attention (the eager first step's first layer) at TQB_LONG_CTX (default
    # 32768), bf16 cache against the 4-bit coded one: speed of light, occupancy and the warp stall reasons.
    ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
    ctx=${TQB_LONG_CTX:-32768}
    prompt_file $ctx /tmp/prompt-$ctx.txt
    for kv in none "turboquant(bits=4,rotation=hadamard)"; do
      step "ncu: decode_attention_split, context $ctx, KV cache $kv"
      args=(); [[ $kv != none ]] && args=(--kv-key "$kv" --kv-value key)
      timeout 200 "$ncu" --kernel-name regex:decode_attention_split --launch-count 1 --clock-control none \
        --section SpeedOfLight --section Occupancy --section LaunchStats --section MemoryWorkloadAnalysis \
        --metrics "regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio,smsp__inst_executed.sum,smsp__issue_active.avg.pct_of_peak_sustained_active,dram__bytes_read.sum,l1tex__data_pipe_lsu_wavefronts_mem_shared.sum,smsp__warps_active.avg.per_cycle_active" \
        carry/bin/tqbench generate --model $LL --device cuda --prompt-file /tmp/prompt-$ctx.txt --tokens 3 "${args[@]}" >/tmp/ncu.txt 2>&1
      grep -E "Duration|DRAM Throughput|Memory Throughput|Compute \(SM\)|Achieved Occupancy|Theoretical Occupancy|Block Limit|Registers Per|Grid Size|Waves Per SM|inst_executed|issue_active|dram__bytes|wavefronts|warps_active|L1/TEX Hit|L2 Hit" /tmp/ncu.txt
      grep -E "issue_stalled" /tmp/ncu.txt | awk '{print $NF, $1}' | sort -rn | head -8
    done
    exit 0
  fi
  # The quantized caches are coded on the GPU (models/kv_codec.hpp: TurboQuant with the Hadamard rotation), so every
  # context runs them; TQB_LONG_CTX picks contexts (default all four), TQB_LONG_KV=0 the bf16 cache only.
  for ctx in ${TQB_LONG_CTX:-1024 4096 16384 32768}; do
    prompt_file $ctx /tmp/prompt-$ctx.txt
    kvs=(none); [[ ${TQB_LONG_KV:-1} != 0 ]] && kvs+=("turboquant(bits=4,rotation=hadamard)" "turboquant(bits=2,rotation=hadamard)")
    for kv in "${kvs[@]}"; do
      step "context $ctx, KV cache $kv"
      args=(); [[ $kv != none ]] && args=(--kv-key "$kv" --kv-value key)
      timeout 150 carry/bin/tqbench generate --model $LL --device cuda --prompt-file /tmp/prompt-$ctx.txt --tokens 33 "${args[@]}" 2>&1 >/dev/null |
        grep -E "prefill|GPU memory|KV cache|rror"
    done
  done
  exit 0
fi
prompt_file 512 /tmp/prompt-512.txt
if [[ "${1:-}" == load ]]; then
  step "load + quantize: TurboQuant 4-bit g128 (Haar), the 8B on the GPU"
  /usr/bin/time -f "host peak RSS %M KB, %e s" carry/bin/tqbench perplexity --model $L8 --corpus $T --device cuda --ctx 2048 --chunks 1 \
    --quantizer "turboquant(bits=4,group=128)" 2>&1 | grep -E "loaded|RSS|rror"
  exit 0
fi
if [[ "${1:-}" == profile ]]; then
  for kernel in bf16 cuda_lut_mma; do
    step "decode profile: $kernel"
    args=(); [[ $kernel != bf16 ]] && args=(--quantizer "turboquant(bits=4,group=128,rotation=hadamard)" --kernel $kernel)
    TQB_PROFILE_OPS=1 carry/bin/tqbench generate --model $L8 --device cuda --prompt-file /tmp/prompt-512.txt --tokens 65 "${args[@]}" 2>&1 >/dev/null |
      grep -E "prefill|decode step ops|leave-one-out|rror" | sed 's/; /;\n  /g'
  done
  exit 0
fi
step "tqbench bf16 (cuBLAS), CUDA graph per step"
carry/bin/tqbench generate --model $L8 --device cuda --prompt-file /tmp/prompt-512.txt --tokens 129 2>&1 >/dev/null | grep -E "prefill|GPU memory|rror"
step "tqbench bf16 (cuBLAS) + TurboQuant 4-bit KV cache coded on the GPU, CUDA graph per step"
carry/bin/tqbench generate --model $L8 --device cuda --prompt-file /tmp/prompt-512.txt --tokens 129 \
  --kv-key "turboquant(bits=4,rotation=hadamard)" --kv-value key 2>&1 >/dev/null | grep -E "prefill|GPU memory|KV cache|rror"
if [[ "${1:-}" != bf16 ]]; then
  step "tqbench TurboQuant 4-bit g128 (Hadamard), cuda_lut_mma, CUDA graph per step"
  carry/bin/tqbench generate --model $L8 --device cuda --prompt-file /tmp/prompt-512.txt --tokens 129 --quantizer "turboquant(bits=4,group=128,rotation=hadamard)" \
    --kernel cuda_lut_mma 2>&1 >/dev/null | grep -E "prefill|GPU memory|rror"
fi
if [[ "${1:-}" != bf16 ]]; then
  step "tqbench TurboQuant 4-bit g128 weights + TurboQuant 4-bit KV cache coded on the GPU, CUDA graph per step"
  carry/bin/tqbench generate --model $L8 --device cuda --prompt-file /tmp/prompt-512.txt --tokens 129 --quantizer "turboquant(bits=4,group=128,rotation=hadamard)" \
    --kernel cuda_lut_mma --kv-key "turboquant(bits=4,rotation=hadamard)" --kv-value key 2>&1 >/dev/null | grep -E "prefill|GPU memory|KV cache|rror"
fi
[[ "${1:-}" == tqbench ]] && exit 0
step "peers"
python3 bench/peers/torch_decode.py --model $L8 --text $T --prompt 512 --tokens 128
step "done"
