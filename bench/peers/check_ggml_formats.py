#!/usr/bin/env python3
"""Checks that tqbench writes llama.cpp's blocks, byte for byte, for every ggml format it registers
(issue 13). The peer is llama.cpp built from PyPI's llama-cpp-python sdist by build_llamacpp.sh into a cache
outside the repository (never vendored).

  1. synthetic: awkward matrices (Gaussian rows at five scales, a zero block, a constant block, an outlier,
     values on half steps, tiny scales, heavy tails; a 576-wide tensor for the k-quants' fallback) in a GGUF;
     `tqbench export --include '.*'` against ggml_quantize_chunk on the same floats (ggml_quantize_rows.cpp).
  2. model: SmolLM2-135M as F32: `tqbench export` of every 2-D tensor against `llama-quantize --pure`,
     tensor by tensor (tensors both files store in the same type).
  3. perplexity (--ppl): the block linear layers exported as GGUF and run by llama-perplexity, beside
     tqbench's perplexity of the same quantization (in memory, and read back from the exported file).
     WikiText-2 test, ctx 512, --chunks (20).
  4. decode speed (--speed): llama-bench on the same exported files (prefill of 512 tokens; decode of 32
     at depth 511, 2 threads), the F32 file beside them; tqbench's own decode speed per format comes from
     experiments/sweeps/smollm2-formats-speed.yaml. Run on an otherwise idle machine.

    .venv/bin/python bench/peers/check_ggml_formats.py [--types q4_K,iq4_nl] [--skip-model] [--ppl] [--speed]

Prints Markdown tables (docs/GGML_FORMATS.md keeps them); exits 1 when any tensor differs.
"""
import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

try:
    from gguf import GGUFReader, GGUFWriter
except ImportError:
    sys.exit("needs PyPI gguf: run with .venv/bin/python (scripts/setup.sh makes .venv)")

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench/peers"))
from compare_llamacpp import PPL_RE, SHARED, TQ_PPL_RE, ensure_f32_gguf, run  # noqa: E402

TYPES = ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_K", "q3_K", "q4_K", "q5_K", "q6_K", "iq4_nl"]


def build_tools():
    prefix = Path(run([ROOT / "bench/peers/build_llamacpp.sh"]).stdout.strip().splitlines()[-1])
    exe = prefix / "bin/ggml_quantize_rows"
    src = ROOT / "bench/peers/ggml_quantize_rows.cpp"
    if not exe.exists() or exe.stat().st_mtime < src.stat().st_mtime:
        run(["g++", "-O2", "-std=c++17", f"-I{prefix}/include", src, "-o", exe, f"-L{prefix}/lib", "-lggml-base",
             "-lggml", f"-Wl,-rpath,{prefix}/lib"])
    return prefix


def awkward(rows, cols, seed):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((rows, cols)).astype(np.float32)
    w *= (10.0 ** (np.arange(rows) % 5 - 2)).astype(np.float32)[:, None]
    w[0, :32] = 0                                   # a zero block
    w[0, 32:64] = 0.75                              # a constant block
    w[0, 256:512] = 0                               # a zero super-block
    w[1, 7] = 1000                                  # an outlier
    w[2, :32] = (np.arange(32) - 16) * 0.5          # half steps
    w[3, :32] = 1e-7 * (np.arange(32) % 7)          # tiny scales (subnormal fp16)
    w[4] = rng.standard_t(2, cols)                  # heavy tails
    w[5, :256] = np.abs(w[5, :256])                 # a positive super-block (minimum above zero)
    w[6, :256] = -np.abs(w[6, :256])                # a negative super-block
    return w


def tensors(path):
    return {t.name: t for t in GGUFReader(str(path)).tensors}


def compare(ours, theirs, names):
    same = differ = skipped = 0
    first = ""
    for name in names:
        a, b = ours[name], theirs[name]
        if a.tensor_type != b.tensor_type:
            skipped += 1
            continue
        x, y = np.asarray(a.data).tobytes(), np.asarray(b.data).tobytes()
        if x == y:
            same += 1
        else:
            differ += 1
            if not first:
                i = next(i for i in range(min(len(x), len(y))) if x[i] != y[i]) if len(x) == len(y) else -1
                first = f"{name} byte {i}"
    return same, differ, skipped, first


def synthetic(prefix, types, tmp):
    src = tmp / "synthetic.gguf"
    w = {"synthetic.wide.weight": awkward(24, 1024, 1), "synthetic.fallback.weight": awkward(8, 576, 2)}
    writer = GGUFWriter(str(src), "synthetic")
    for name, m in w.items():
        writer.add_tensor(name, m)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    rows = []
    for t in types:
        ours = tmp / f"syn-{t}.gguf"
        run([ROOT / "build/tqbench", "export", "--model", src, "--quantizer", t, "--include", ".*", "-o", ours])
        got = tensors(ours)
        same = differ = 0
        first = ""
        for name, m in w.items():
            qt = got[name].tensor_type.name  # the type tqbench chose (its own, or the fallback)
            f32 = tmp / "in.f32"
            m.tofile(f32)
            ref = tmp / "ref.bin"
            run([prefix / "bin/ggml_quantize_rows", qt, f32, m.shape[0], m.shape[1], ref])
            x, y = np.asarray(got[name].data).tobytes(), ref.read_bytes()
            if x == y:
                same += 1
            else:
                differ += 1
                first = first or f"{name} ({qt}) byte {next((i for i in range(min(len(x), len(y))) if x[i] != y[i]), -1)}"
        rows.append((t, same, differ, 0, first))
    return rows


def model(prefix, types, tmp):
    _, f32 = ensure_f32_gguf(prefix)
    rows = []
    for t in types:
        ours, theirs = tmp / f"ours-{t}.gguf", tmp / f"ref-{t}.gguf"
        run([ROOT / "build/tqbench", "export", "--model", f32, "--quantizer", t, "--include", ".*", "-o", ours])
        run([prefix / "bin/llama-quantize", "--pure", f32, theirs, t.upper()])
        a, b = tensors(ours), tensors(theirs)
        names = [n for n in a if n in b and len(a[n].shape) == 2]
        rows.append((t,) + compare(a, b, names))
        ours.unlink()
        theirs.unlink()
    return rows


def perplexities(prefix, types, tmp, chunks):
    _, f32 = ensure_f32_gguf(prefix)
    corpus = SHARED / "data/wikitext-2-raw/wiki.test.raw"
    common = ["--corpus", corpus, "--ctx", 512, "--chunks", chunks]
    rows = []
    for t in ["none"] + types:
        exported = tmp / f"exp-{t}.gguf"
        if t == "none":
            peer_model, tq_cmd = f32, [ROOT / "build/tqbench", "perplexity", "--model", f32] + common
        else:
            run([ROOT / "build/tqbench", "export", "--model", f32, "--quantizer", t, "-o", exported])
            peer_model = exported
            tq_cmd = [ROOT / "build/tqbench", "perplexity", "--model", f32, "--quantizer", t] + common
        peer = run([prefix / "bin/llama-perplexity", "-m", peer_model, "-f", corpus, "-c", 512, "--chunks", chunks,
                    "-b", 512, "-t", 2])
        peer_ppl = float(PPL_RE.search(peer.stdout + peer.stderr).group(1))
        tq_ppl = float(TQ_PPL_RE.search(run(tq_cmd).stdout).group(1))
        back = tq_ppl if t == "none" else float(TQ_PPL_RE.search(run(
            [ROOT / "build/tqbench", "perplexity", "--model", exported] + common).stdout).group(1))
        rows.append((t, peer_ppl, tq_ppl, back))
        if exported.exists():
            exported.unlink()
    return rows


def speeds(prefix, types, tmp):
    import json
    _, f32 = ensure_f32_gguf(prefix)
    rows = []
    for t in ["none"] + types:
        model = f32
        if t != "none":
            model = tmp / f"speed-{t}.gguf"
            run([ROOT / "build/tqbench", "export", "--model", f32, "--quantizer", t, "-o", model])
        res = run([prefix / "bin/llama-bench", "-m", model, "-p", "512", "-n", "32", "-d", "0,511", "-t", 2, "-r", "3",
                   "-o", "json"])
        pp = tg = float("nan")
        for e in json.loads(res.stdout):
            if e["n_prompt"] == 512 and e["n_depth"] == 0:
                pp = e["avg_ts"]
            if e["n_gen"] > 0 and e["n_depth"] == 511:
                tg = e["avg_ts"]
        rows.append((t, pp, tg))
        if t != "none":
            model.unlink()
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--types", default=",".join(TYPES))
    ap.add_argument("--skip-model", action="store_true")
    ap.add_argument("--ppl", action="store_true", help="also run exported files in llama-perplexity")
    ap.add_argument("--chunks", type=int, default=20)
    ap.add_argument("--speed", action="store_true", help="llama-bench on exported files (idle machine)")
    ap.add_argument("--skip-synthetic", action="store_true")
    args = ap.parse_args()
    types = args.types.split(",")
    prefix = build_tools()
    commit = (prefix / "COMMIT").read_text().strip()
    bad = 0
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        parts = [] if args.skip_synthetic else [("synthetic (24x1024 and 8x576 awkward rows) vs ggml_quantize_chunk", synthetic)]
        if not args.skip_model:
            parts.append(("SmolLM2-135M F32, every 2-D tensor, vs llama-quantize --pure", model))
        for title, fn in parts:
            print(f"\n{title} (llama.cpp {commit})\n")
            print("| type | identical tensors | differing | other type in one file | first difference |")
            print("|---|---|---|---|---|")
            for t, same, differ, skipped, first in fn(prefix, types, tmp):
                bad += differ
                print(f"| {t} | {same} | {differ} | {skipped} | {first or '-'} |", flush=True)
        if args.ppl:
            print(f"\nPerplexity, SmolLM2-135M (F32 from Q4_1), block linear layers quantized, WikiText-2 test, ctx 512, "
                  f"{args.chunks} chunks (llama.cpp {commit})\n")
            print("| format | llama.cpp on tqbench's GGUF | tqbench, in memory | tqbench, reading the GGUF | llama.cpp / tqbench - 1 |")
            print("|---|---|---|---|---|")
            for t, peer, tq, back in perplexities(prefix, types, tmp, args.chunks):
                bad += back != tq
                print(f"| {t} | {peer:.4f} | {tq:.4f} | {back:.4f} | {100 * (peer / tq - 1):+.2f}% |", flush=True)
        if args.speed:
            print(f"\nllama-bench, SmolLM2-135M block linear layers exported by tqbench, 2 threads (llama.cpp {commit})\n")
            print("| format | prefill 512, tokens/s | decode at depth 511, tokens/s |")
            print("|---|---|---|")
            for t, pp, tg in speeds(prefix, types, tmp):
                print(f"| {t} | {pp:.1f} | {tg:.1f} |", flush=True)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
