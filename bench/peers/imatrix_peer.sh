#!/usr/bin/env bash
# llama.cpp's own calibrated quantization (llama-imatrix's importance matrix, then llama-quantize --imatrix) beside
# tqbench's gptq over the same formats, on books-14m (issue 30's peer; docs/CALIBRATION.md). Everything is scored by
# tqbench's perplexity (llama.cpp's method) on the first 40 chunks of 512 tokens of the held-out text, every model
# read from a GGUF with the same tokenizer:
#   - books-14m as fp32 GGUF (bench/peers/hf_to_gguf.py: llama.cpp's converter needs PyTorch),
#   - llama-quantize's Q without and with the importance matrix (--pure: every block projection Q, the embedding
#     kept fp32, as tqbench's include selects the block projections only),
#   - tqbench's Q and gptq(Q) on the fp32 GGUF (calibrated on the text's last 32 chunks, sequential).
# The importance matrix is collected on the text's last 70,000 bytes (32 chunks of 512: the calibration region of
# tqbench's runs, which the 40 scored chunks at the text's start do not reach). llama.cpp is built by
# bench/peers/build_llamacpp.sh into the peer cache, never into the repository.
#   bench/peers/imatrix_peer.sh [TYPES]    TYPES default "q4_0 q4_K iq4_nl q6_K"
set -euo pipefail
cd "$(dirname "$0")/../.."
types=${1:-"q4_0 q4_K iq4_nl q6_K"}
shared=${TQB_SHARED_DIR:-../shared}
model=$shared/models/books-14m text=$shared/data/books-heldout/heldout.txt
prefix=$(bench/peers/build_llamacpp.sh)
work=${TQB_PEER_CACHE:-$HOME/.cache/tqbench/peers}/imatrix-books14m
mkdir -p "$work"
py=.venv/bin/python; [[ -x $py ]] || py=python3
[[ -f $work/f32.gguf ]] || "$py" bench/peers/hf_to_gguf.py "$model" "$work/f32.gguf" >&2
tail -c 70000 "$text" > "$work/calibration.txt"
export LD_LIBRARY_PATH=$prefix/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
threads=$(nproc)
if [[ ! -f $work/imatrix.gguf ]]; then
  "$prefix/bin/llama-imatrix" -m "$work/f32.gguf" -f "$work/calibration.txt" -o "$work/imatrix.gguf" -c 512 --chunks 32 -t "$threads" \
    > "$work/imatrix.log" 2>&1 || { tail -20 "$work/imatrix.log" >&2; exit 1; }
fi
ppl() {  # perplexity of a model (and quantizer) by tqbench: the figure and its ±; each chunk's mean NLL into $work/nll-$1.json
  local name=$1 m=$2
  build/tqbench perplexity --model "$m" --corpus "$text" --ctx 512 --chunks 40 --chunk-nll "$work/nll-$name.json" "${@:3}" 2>&1 |
    sed -n 's/^perplexity: \([0-9.]*\) +\/- \([0-9.]*\).*/\1 \2/p'
}
paired() {  # mean NLL difference A − B over the 40 chunks with its 95% interval: tqbench compare on the two runs' files
  build/tqbench compare "$work/nll-$2.json" "$work/nll-$1.json" |
    sed -n 's/.*delta log-perplexity (mean NLL, B - A): \([-+0-9.]*\) +\/- \([0-9.]*\).*/\1 ± \2/p'
}
base=$(ppl f32 "$work/f32.gguf")
echo "llama.cpp $(cat "$prefix/COMMIT"), tqbench $(git rev-parse --short HEAD); books-14m fp32 GGUF: perplexity $base (40 chunks of 512)"
echo
echo "| format | who | calibration | perplexity | Δppl | paired ΔNLL vs the plain format (95%) |"
echo "|---|---|---|---|---|---|"
b=${base% *}
row() {  # format, who, calibration, "perplexity ±", paired
  awk -v p="${4% *}" -v e="${4#* }" -v b="$b" -v f="$1" -v w="$2" -v c="$3" -v d="$5" \
    'BEGIN { printf "| %s | %s | %s | %.4f ± %.4f | %+.4f | %s |\n", f, w, c, p, e, p - b, d }'
}
summary=()
for t in $types; do
  T=$(echo "$t" | tr a-z A-Z)
  for imat in no yes; do
    out=$work/$t-imatrix-$imat.gguf
    args=(--pure --token-embedding-type f32 --output-tensor-type f32)
    [[ $imat == yes ]] && args+=(--imatrix "$work/imatrix.gguf")
    [[ -f $out ]] || "$prefix/bin/llama-quantize" "${args[@]}" "$work/f32.gguf" "$out" "$T" "$threads" > "$out.log" 2>&1 ||
      { tail -20 "$out.log" >&2; exit 1; }
  done
  p_plain=$(ppl "$t-lq" "$work/$t-imatrix-no.gguf")
  p_imat=$(ppl "$t-imatrix" "$work/$t-imatrix-yes.gguf")
  p_tq=$(ppl "$t-tq" "$work/f32.gguf" --quantizer "$t")
  p_gptq=$(ppl "$t-gptq" "$work/f32.gguf" --quantizer "gptq($t)" --calibration-chunks 32)
  row "$t" "llama-quantize" "none" "$p_plain" ""
  row "$t" "llama-quantize" "imatrix (32 chunks)" "$p_imat" "$(paired "$t-imatrix" "$t-lq")"
  row "$t" "tqbench" "none" "$p_tq" "$(paired "$t-tq" "$t-lq") (against llama-quantize's)"
  row "$t" "tqbench" "gptq (32 chunks, sequential)" "$p_gptq" "$(paired "$t-gptq" "$t-lq")"
  summary+=("$t: gptq − imatrix $(paired "$t-gptq" "$t-imatrix") in mean NLL per token (95%, over the 40 chunks)")
done
echo
printf '%s\n' "${summary[@]}"
