#!/usr/bin/env python3
"""The result store's per-point cost (issue 17): runs a sweep of tiny points (default bench/specs/store-100k.yaml,
100,800 points) and reports the wall time per point over the first and the last 1,000 points, the
harness's own overhead per point there (wall time minus the points' own elapsed_s), the total, and
`tqbench show`'s time on the result file.

    bench/store_bench.py [SPEC] [--points N]   (--points: stop after N points, for a quick look)
"""
import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plots"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("spec", nargs="?", default=str(ROOT / "bench/specs/store-100k.yaml"))
    ap.add_argument("-o", "--output", default="/tmp/tqb-store-bench.h5")
    ap.add_argument("--window", type=int, default=1000)
    args = ap.parse_args()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [str(ROOT / "build/tqbench"), "run", args.spec, "-o", args.output, "--force", "--max-points", "1000000"]
    t0 = time.perf_counter()
    stamps = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) as p:
        for line in p.stdout:
            if "] done " in line:
                stamps.append(time.perf_counter() - t0)
    total = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"tqbench run failed ({p.returncode})")
    from tqb_results import load
    _, cols, _ = load(args.output)
    elapsed = [e for e, s in zip(cols["elapsed_s"], cols["status"]) if s == "ok"]
    n, w = len(stamps), args.window
    first = stamps[w - 1] / w * 1e3
    last = (stamps[-1] - stamps[-w - 1]) / w * 1e3
    own_first = first - sum(elapsed[:w]) / w * 1e3
    own_last = last - sum(elapsed[-w:]) / w * 1e3
    t1 = time.perf_counter()
    subprocess.run([str(ROOT / "build/tqbench"), "show", args.output], stdout=subprocess.DEVNULL, check=True)
    show = time.perf_counter() - t1
    print(f"{n} points in {total:.1f} s ({total / n * 1e3:.3f} ms per point)")
    print(f"first {w}: {first:.3f} ms per point (harness overhead {own_first:.3f} ms); "
          f"last {w}: {last:.3f} ms per point (overhead {own_last:.3f} ms); last/first {last / first:.2f}")
    print(f"tqbench show of the {n}-row file: {show:.2f} s")


if __name__ == "__main__":
    main()
