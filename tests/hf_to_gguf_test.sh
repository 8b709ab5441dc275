#!/usr/bin/env bash
# bench/peers/hf_to_gguf.py end to end: books-14m's folder converted to an fp32 GGUF scores the folder's perplexity
# in tqbench (the q/k rows reordered for GGUF's RoPE pairing, the tokenizer as llama.cpp names it), and a folder it
# cannot convert is refused naming it. Prints "SKIPPED: <why>" without books-14m or without PyPI's gguf (.venv).
#   tests/hf_to_gguf_test.sh TQBENCH WORKDIR
set -uo pipefail
cd "$(dirname "$0")/.."
tqbench=$1 work=$2
shared=${TQB_SHARED_DIR:-../shared}
model=$shared/models/books-14m text=$shared/data/books-heldout/heldout.txt
[[ -d $model && -f $text ]] || { echo "SKIPPED: no books-14m under $shared"; exit 0; }
py=.venv/bin/python
"$py" -c "import gguf" 2>/dev/null || { echo "SKIPPED: no PyPI gguf in .venv (scripts/setup.sh installs it)"; exit 0; }
mkdir -p "$work"
"$py" bench/peers/hf_to_gguf.py "$model" "$work/books14m-f32.gguf" || { echo "FAILED: the conversion"; exit 1; }
ppl() { "$tqbench" perplexity --model "$1" --corpus "$text" --ctx 256 --chunks 3 2>&1 | grep '^perplexity:' | cut -d' ' -f2-4; }
a=$(ppl "$model") b=$(ppl "$work/books14m-f32.gguf")
echo "folder: $a; GGUF: $b"
[[ -n $a && $a == "$b" ]] || { echo "FAILED: the GGUF scores '$b', the folder '$a'"; exit 1; }
mkdir -p "$work/not-llama" && echo '{"model_type": "gpt_neox"}' > "$work/not-llama/config.json"
err=$("$py" bench/peers/hf_to_gguf.py "$work/not-llama" "$work/x.gguf" 2>&1) && { echo "FAILED: a gpt_neox folder was converted"; exit 1; }
[[ $err == *"not-llama/config.json: model_type 'gpt_neox'"* ]] || { echo "FAILED: the refusal does not name the file: $err"; exit 1; }
echo "ok"
