#!/usr/bin/env python3
"""What a call through the Python package costs beyond the C++ core (issue 29): tqbench.quantize timed from Python
(argument checks, DLPack, the result object) against the same quantizer's quantize() timed in C++ alone, in the same
process on the same array, for shapes from one head vector to an 8B model's FFN matrix. Median of --reps each.

    PYTHONPATH=build/python-package python3 bench/python_overhead.py [--reps 50]

Prints a Markdown table: C++ µs, Python µs, overhead µs and the ratio (python / C++).
"""
import argparse
import statistics
import time

import numpy as np

import tqbench
from tqbench import _core

CASES = [("one head vector", 1, 128, "turboquant(bits=4)"), ("32 x 128", 32, 128, "turboquant(bits=4)"),
         ("1024 x 1024", 1024, 1024, "turboquant(bits=4,group=128)"), ("1024 x 1024", 1024, 1024, "rtn(bits=4,group=128)"),
         ("4096 x 4096", 4096, 4096, "rtn(bits=4,group=128)")]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=50)
    a = ap.parse_args()
    print(f"tqbench {tqbench.__version__} ({_core.git_commit}); median of {a.reps}")
    print("| shape | quantizer | C++ µs | Python µs | overhead µs | Python / C++ |")
    print("|---|---|---|---|---|---|")
    for label, rows, cols, name in CASES:
        w = np.random.default_rng(0).standard_normal((rows, cols), dtype=np.float32)
        reps = a.reps if rows * cols <= 1 << 20 else max(5, a.reps // 10)
        tqbench.quantize(w, name)  # warm-up (codebooks, rotations cached on first use)
        cpp = _core.quantize_seconds(w, name, 0, reps)
        t = []
        for _ in range(reps):
            t0 = time.perf_counter()
            tqbench.quantize(w, name)
            t.append(time.perf_counter() - t0)
        py = statistics.median(t)
        print(f"| {label} | {name} | {cpp * 1e6:.1f} | {py * 1e6:.1f} | {(py - cpp) * 1e6:.1f} | {py / cpp:.3f} |", flush=True)


if __name__ == "__main__":
    main()
