#!/usr/bin/env python3
"""tqbench against llama.cpp on this machine, in one run, alternating the two.

The peer is built from PyPI's llama-cpp-python sdist into ~/.cache/tqbench/peers by
bench/peers/build_llamacpp.sh (never vendored). Parts (--parts, default all):

  mulmat      llama.cpp's MUL_MAT (bench/peers/ggml_mul_mat.cpp, the test-backend-ops perf method) for
              f32, q4_0, q4_K and iq4_nl, and tqbench's bench_kernels (dense fp32, turboquant 4-bit g128
              with the auto kernel) at the Llama-3-8B FFN shapes 4096x14336 and 14336x4096, n = 1, 4, 16, 512.
  perplexity  llama-perplexity and `tqbench perplexity` on the same GGUF files and WikiText-2 test text
              (an F32 file, and llama.cpp's Q4_1 file against tqbench's turboquant 4-bit g64 of the F32 weights).
  speed       llama-bench (prefill of 512 tokens; decode at depth 512) against bench_model's prefill (logits of
              the last position only, as llama-bench computes them) and decode (512-token context), SmolLM2-135M.
  kernels     tqbench's perplexity through each CPU kernel (reference, auto, fused_i8): ΔPPL and time.

Each measurement is repeated --rounds times, the peer and tqbench alternating (the order flips every round),
and the median over rounds is reported with the ratio tqbench / llama.cpp (time; < 1 means tqbench is faster).
Output: a markdown table on stdout (and --json FILE with every raw figure).
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("TQB_PEER_CACHE", Path.home() / ".cache/tqbench/peers"))
MODELS = Path(os.environ.get("TQB_MODEL_CACHE", Path.home() / ".cache/tqbench/models"))
SHARED = Path(os.environ.get("TQB_SHARED_DIR", ROOT.parent / "shared"))
SHAPES = [(4096, 14336), (14336, 4096)]  # rows (outputs) x cols (inputs)
PEER_TYPES = ["f32", "q4_0", "q4_K", "iq4_nl"]


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def run(cmd, **kw):
    log("+", " ".join(str(c) for c in cmd))
    return subprocess.run([str(c) for c in cmd], check=True, capture_output=True, text=True, **kw)


def timed(cmd, **kw):
    t0 = time.perf_counter()
    r = run(cmd, **kw)
    return time.perf_counter() - t0, r


def build_peer():
    prefix = Path(run([ROOT / "bench/peers/build_llamacpp.sh"]).stdout.strip().splitlines()[-1])
    exe = prefix / "bin/ggml_mul_mat"
    src = ROOT / "bench/peers/ggml_mul_mat.cpp"
    if not exe.exists() or exe.stat().st_mtime < src.stat().st_mtime:
        run(["g++", "-O2", "-std=c++17", f"-I{prefix}/include", src, "-o", exe, f"-L{prefix}/lib",
             "-lggml-cpu", "-lggml-base", "-lggml", f"-Wl,-rpath,{prefix}/lib"])
    return prefix


def peer_mulmat(prefix, n_values, threads):
    out = {}
    for rows, cols in SHAPES:
        for t in PEER_TYPES:
            res = run([prefix / "bin/ggml_mul_mat", t, rows, cols, ",".join(map(str, n_values)), threads, 20])
            for line in res.stdout.splitlines():
                r = json.loads(line)
                out[(t, rows, cols, r["n"])] = r["median_us"]
    return out


def tqbench_mulmat(n_values, threads):
    ns = "|".join(str(n) for n in n_values)
    shapes = "|".join(f"{r}/{c}" for r, c in SHAPES)
    filt = f"^(BM_Dense|BM_Fused/turboquant4_auto|BM_Fused/turboquant4_fused_i8)/({shapes})/({ns})/real_time$"
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    r = run([ROOT / "build/bench_kernels", f"--benchmark_filter={filt}", "--benchmark_format=json",
             "--benchmark_min_time=0.5"], env=env)
    out = {}
    for b in json.loads(r.stdout)["benchmarks"]:
        m = re.match(r"(BM_Dense|BM_Fused/turboquant4_auto|BM_Fused/turboquant4_fused_i8)/(\d+)/(\d+)/(\d+)/", b["name"])
        if not m:
            continue
        kind = {"BM_Dense": "dense_fp32", "BM_Fused/turboquant4_auto": "turboquant4_g128"}.get(m.group(1), "turboquant4_g128_i8")
        us = b["real_time"] * {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}[b["time_unit"]]
        out[(kind, int(m.group(2)), int(m.group(3)), int(m.group(4)))] = us
    return out


def ensure_f32_gguf(prefix):
    """SmolLM2-135M as an F32 GGUF: llama-quantize of the Q4_1 file scripts/setup.sh fetches (its weights
    are the Q4_1 values, exactly; both tools read the same file)."""
    q41 = MODELS / "SmolLM2-135M-Instruct.Q4_1.gguf"
    f32 = MODELS / "SmolLM2-135M-Instruct.F32-from-Q4_1.gguf"
    if not f32.exists():
        run([prefix / "bin/llama-quantize", "--allow-requantize", q41, f32, "F32"])
    return q41, f32


PPL_RE = re.compile(r"Final estimate: PPL = ([0-9.]+)")
TQ_PPL_RE = re.compile(r"perplexity: ([0-9.]+)")


def perplexity(prefix, rounds, threads, chunks, ctx):
    q41, f32 = ensure_f32_gguf(prefix)
    corpus = SHARED / "data/wikitext-2-raw/wiki.test.raw"
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    stories = SHARED / "models/stories260K/stories260K.gguf"
    cases = [
        # A vocabulary that adds BOS (issue 16): llama.cpp's stream starts with it; ctx 256, 40 chunks.
        ("stories260K (adds BOS), ctx 256, 40 chunks",
         [prefix / "bin/llama-perplexity", "-m", stories, "-f", corpus, "-c", 256, "--chunks", 40, "-t", threads, "-b", 256],
         [ROOT / "build/tqbench", "perplexity", "--model", stories, "--corpus", corpus, "--ctx", 256, "--chunks", 40]),
        ("F32 file", [prefix / "bin/llama-perplexity", "-m", f32, "-f", corpus, "-c", ctx, "--chunks", chunks,
                      "-t", threads, "-b", ctx],
         [ROOT / "build/tqbench", "perplexity", "--model", f32, "--corpus", corpus, "--ctx", ctx, "--chunks", chunks]),
        ("4-bit (llama.cpp: Q4_1 file; tqbench: turboquant 4-bit g64 of the F32 file)",
         [prefix / "bin/llama-perplexity", "-m", q41, "-f", corpus, "-c", ctx, "--chunks", chunks, "-t", threads,
          "-b", ctx],
         [ROOT / "build/tqbench", "perplexity", "--model", f32, "--corpus", corpus, "--ctx", ctx, "--chunks", chunks,
          "--quantizer", "turboquant(bits=4,group=64,codebook=gaussian,rotation=hadamard)"]),
    ]
    out = []
    for name, peer_cmd, tq_cmd in cases:
        peer_t, tq_t, peer_ppl, tq_ppl = [], [], None, None
        for r in range(rounds):
            order = [("peer", peer_cmd), ("tq", tq_cmd)] if r % 2 == 0 else [("tq", tq_cmd), ("peer", peer_cmd)]
            for who, cmd in order:
                t, res = timed(cmd, env=env)
                text = res.stdout + res.stderr
                if who == "peer":
                    peer_t.append(t)
                    peer_ppl = float(PPL_RE.search(text).group(1))
                else:
                    tq_t.append(t)
                    tq_ppl = float(TQ_PPL_RE.search(text).group(1))
        out.append({"case": name, "peer_s": statistics.median(peer_t), "tqbench_s": statistics.median(tq_t),
                    "peer_ppl": peer_ppl, "tqbench_ppl": tq_ppl, "peer_all": peer_t, "tqbench_all": tq_t})
    return out


def speed(prefix, rounds, threads):
    q41, f32 = ensure_f32_gguf(prefix)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    rows = []
    for label, gguf, tq_name in [("F32", f32, "smollm2_fp32"),
                                 ("4-bit: llama.cpp Q4_1, tqbench turboquant g64 (auto: fused_i16)", q41, "smollm2_turboquant4_auto"),
                                 ("4-bit: llama.cpp Q4_1, tqbench turboquant g64 (fused_i8, approximate)", q41,
                                  "smollm2_turboquant4_fused_i8")]:
        pp_peer, tg_peer, pp_tq, tg_tq = [], [], [], []
        for r in range(rounds):
            def peer():
                res = run([prefix / "bin/llama-bench", "-m", gguf, "-p", "512", "-n", "32", "-d", "0,511", "-t", threads,
                           "-r", "3", "-o", "json"])
                for e in json.loads(res.stdout):
                    if e["n_prompt"] == 512 and e["n_depth"] == 0:
                        pp_peer.append(e["avg_ts"])
                    if e["n_gen"] > 0 and e["n_depth"] == 511:
                        tg_peer.append(e["avg_ts"])

            def tq():
                # BM_PrefillLast: logits of the last position only, as llama-bench's pp test computes them.
                res = run([ROOT / "build/bench_model", f"--benchmark_filter=^BM_(PrefillLast|Decode)/{tq_name}/512/",
                           "--benchmark_format=json"], env=env)
                for b in json.loads(res.stdout)["benchmarks"]:
                    (pp_tq if b["name"].startswith("BM_Prefill") else tg_tq).append(b["tokens/s"])

            for f in ([peer, tq] if r % 2 == 0 else [tq, peer]):
                f()
        rows.append({"weights": label, "peer_prefill_tps": statistics.median(pp_peer),
                     "tqbench_prefill_tps": statistics.median(pp_tq), "peer_decode_tps": statistics.median(tg_peer),
                     "tqbench_decode_tps": statistics.median(tg_tq)})
    return rows


def kernel_quality(prefix, threads, chunks, ctx):
    """Perplexity of SmolLM2 with turboquant 4-bit g64 through each CPU kernel: ΔPPL against the exact
    reference (dequantize, then dense) is what an approximate kernel costs."""
    _, f32 = ensure_f32_gguf(prefix)
    corpus = SHARED / "data/wikitext-2-raw/wiki.test.raw"
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = []
    for kernel in ["dequantized_dense", "auto", "fused_i8"]:
        t, res = timed([ROOT / "build/tqbench", "perplexity", "--model", f32, "--corpus", corpus, "--ctx", ctx,
                        "--chunks", chunks, "--quantizer", "turboquant(bits=4,group=64,codebook=gaussian,rotation=hadamard)",
                        "--kernel", kernel], env=env)
        out.append({"kernel": kernel, "ppl": float(TQ_PPL_RE.search(res.stdout + res.stderr).group(1)), "seconds": t})
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="mulmat,perplexity,speed,kernels")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n", default="1,4,16,512", help="batch sizes for mulmat")
    ap.add_argument("--chunks", type=int, default=20)
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--json", help="write every raw figure here")
    a = ap.parse_args()
    parts = set(a.parts.split(","))
    prefix = build_peer()
    commit = (prefix / "COMMIT").read_text().strip()
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    flags = open("/proc/cpuinfo").read()
    isa = "AVX-512 VNNI/BF16" if "avx512_vnni" in flags else ("AVX2" if "avx2" in flags else "SSE")
    tq_commit = run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]).stdout.strip()
    dense = next((l.split(":", 1)[1].strip() for l in run([ROOT / "build/tqbench", "list", "kernels"]).stdout.splitlines()
                  if l.startswith("dense fp32 path:")), "?")
    raw = {"dense_path": dense, "cpu": cpu, "isa": isa, "llama_cpp_commit": commit, "tqbench_commit": tq_commit, "threads": a.threads}
    print(f"CPU: {cpu} ({isa}), {a.threads} threads; llama.cpp {commit} (llama-cpp-python sdist, GGML_NATIVE); "
          f"tqbench {tq_commit} (portable build); medians of {a.rounds} alternating rounds; "
          f"`bench/peers/compare_llamacpp.py --parts {a.parts} --rounds {a.rounds}`; tqbench's dense path: {dense}\n")
    if "mulmat" in parts:
        n_values = [int(x) for x in a.n.split(",")]
        peer, tq = {}, {}
        for r in range(a.rounds):
            steps = [lambda: peer.setdefault(r, peer_mulmat(prefix, n_values, a.threads)),
                     lambda: tq.setdefault(r, tqbench_mulmat(n_values, a.threads))]
            for s in (steps if r % 2 == 0 else steps[::-1]):
                s()
        med = lambda d, k: statistics.median(d[r][k] for r in d)
        print("| W (out x in) | n | llama f32 | llama q4_0 | llama q4_K | llama iq4_nl | tqbench dense fp32 | "
              "tqbench turboquant 4-bit g128 (auto: fused_i16) | same, fused_i8 | dense / llama f32 | auto / q4_K | fused_i8 / q4_K |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        raw["mulmat"] = []
        for rows, cols in SHAPES:
            for n in n_values:
                p = {t: med(peer, (t, rows, cols, n)) for t in PEER_TYPES}
                d, q = med(tq, ("dense_fp32", rows, cols, n)), med(tq, ("turboquant4_g128", rows, cols, n))
                q8 = med(tq, ("turboquant4_g128_i8", rows, cols, n))
                raw["mulmat"].append({"rows": rows, "cols": cols, "n": n, **{f"llama_{t}_us": v for t, v in p.items()},
                                      "tqbench_dense_us": d, "tqbench_turboquant4_us": q, "tqbench_turboquant4_i8_us": q8})
                fmt = lambda us: f"{us / 1000:.2f} ms" if us >= 1000 else f"{us:.0f} µs"
                print(f"| {rows}x{cols} | {n} | {fmt(p['f32'])} | {fmt(p['q4_0'])} | {fmt(p['q4_K'])} | {fmt(p['iq4_nl'])} | "
                      f"{fmt(d)} | {fmt(q)} | {fmt(q8)} | {d / p['f32']:.2f}x | {q / p['q4_K']:.2f}x | {q8 / p['q4_K']:.2f}x |")
        print()
    if "perplexity" in parts:
        rows = perplexity(prefix, a.rounds, a.threads, a.chunks, a.ctx)
        raw["perplexity"] = rows
        print(f"| SmolLM2-135M perplexity, {a.chunks} chunks x {a.ctx} | llama.cpp | tqbench | tqbench / llama.cpp (time) | PPL llama.cpp | PPL tqbench |")
        print("|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['case']} | {r['peer_s']:.1f} s | {r['tqbench_s']:.1f} s | {r['tqbench_s'] / r['peer_s']:.2f}x | "
                  f"{r['peer_ppl']:.4f} | {r['tqbench_ppl']:.4f} |")
        print()
    if "speed" in parts:
        rows = speed(prefix, a.rounds, a.threads)
        raw["speed"] = rows
        print("| SmolLM2-135M | llama.cpp prefill 512 | tqbench prefill 512 | ratio (tok/s) | llama.cpp decode @512 | tqbench decode @512 | ratio (tok/s) |")
        print("|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['weights']} | {r['peer_prefill_tps']:.0f} tok/s | {r['tqbench_prefill_tps']:.0f} tok/s | "
                  f"{r['tqbench_prefill_tps'] / r['peer_prefill_tps']:.2f}x | {r['peer_decode_tps']:.0f} tok/s | "
                  f"{r['tqbench_decode_tps']:.0f} tok/s | {r['tqbench_decode_tps'] / r['peer_decode_tps']:.2f}x |")
        print()
    if "kernels" in parts:
        rows = kernel_quality(prefix, a.threads, a.chunks, a.ctx)
        raw["kernels"] = rows
        ref = rows[0]["ppl"]
        print(f"| kernel (SmolLM2, turboquant 4-bit g64, {a.chunks} chunks x {a.ctx}) | perplexity | ΔPPL vs reference | wall time |")
        print("|---|---|---|---|")
        for r in rows:
            print(f"| {r['kernel']} | {r['ppl']:.4f} | {r['ppl'] - ref:+.4f} | {r['seconds']:.1f} s |")
        print()
    if a.json:
        Path(a.json).write_text(json.dumps(raw, indent=1, default=str))


if __name__ == "__main__":
    main()
