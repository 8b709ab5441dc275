#!/usr/bin/env python3
"""Compares the result rows of two tqbench result files bit for bit, except what differs between any two runs.

Used to check that a refactoring changes no result: run the same spec with the old and the new binary, then
    scripts/compare_results.py OLD.h5 NEW.h5
Every column both files hold is compared exactly (floats by their bits, NaN equal to NaN), except
provenance and wall-clock measurements (elapsed time, peak memory, timestamps, commit, host, and the latency and
throughput metrics, which differ between two runs of one binary). Exits 1 on any difference, naming the column
and the first rows that differ. Columns only one file holds are listed and count as a difference.
"""
import sys

import h5py
import numpy as np

VOLATILE = {"elapsed_s", "finished_utc", "git_commit", "host", "peak_rss_bytes",
            # timings: the only numbers two runs of one binary do not repeat
            "eval_tokens_per_s", "quantize_s", "prefill_tokens_per_s", "decode_tokens_per_s", "decode_ms", "decode_ms_min",
            "decode_ms_max", "kernel_us", "kernel_us_min", "kernel_us_max", "dense_us", "kernel_speedup", "gpu_peak_bytes"}


def volatile(name):
    base = name[:-5] if name.endswith("_ci95") else name[:-4] if name.endswith("_std") else name
    return base in VOLATILE


def columns(path):
    with h5py.File(path, "r") as f:
        g = f["points"]
        cols = {k: g[k][()] for k in g.keys()}
        cols["(column order)"] = np.array(list(g.attrs.get("column_order", [])), dtype=object)
        return cols


def same(a, b):
    if a.dtype.kind == "f" and b.dtype.kind == "f":
        return a.shape == b.shape and np.array_equal(a.view(np.uint64), b.view(np.uint64))
    return a.shape == b.shape and all(x == y for x, y in zip(a, b))


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: compare_results.py OLD.h5 NEW.h5")
    old, new = columns(sys.argv[1]), columns(sys.argv[2])
    bad = 0
    for name in sorted(set(old) ^ set(new)):
        print(f"column {name}: only in {'the first' if name in old else 'the second'} file")
        bad += 1
    compared = 0
    for name in sorted(set(old) & set(new)):
        if volatile(name):
            continue
        compared += 1
        a, b = old[name], new[name]
        if not same(a, b):
            rows = [i for i in range(min(len(a), len(b))) if not same(a[i:i + 1], b[i:i + 1])][:3]
            print(f"column {name}: differs ({len(a)} vs {len(b)} rows; first differing rows {rows}: "
                  f"{[a[i] for i in rows]} vs {[b[i] for i in rows]})")
            bad += 1
    n = len(next(iter(old.values()))) if old else 0
    print(f"{sys.argv[2]}: {'identical' if not bad else f'{bad} differences'} ({n} rows, {compared} columns compared)")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
