#!/usr/bin/env python3
"""Markdown table of bench_kernels results: time per call and the x_dense ratio, one row per shape and
batch, one column pair per kernel configuration.

  build/bench_kernels --benchmark_out=k.json --benchmark_out_format=json
  bench/kernel_table.py k.json            # every benchmark in the file
  bench/kernel_table.py k.json --cold     # also the cold-cache rows
"""
import argparse
import json
import re
import sys


def fmt_time(us):
    return f"{us / 1000:.2f} ms" if us >= 1000 else f"{us:.0f} µs"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("json", help="Google Benchmark JSON output of bench_kernels")
    ap.add_argument("--cold", action="store_true", help="include BM_Cold rows")
    args = ap.parse_args()
    try:
        with open(args.json) as f:
            doc = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        sys.exit(f"{args.json}: cannot read benchmark JSON: {e}")
    rows, configs, cells = [], [], {}
    pattern = re.compile(r"^BM_(DensePlain|Dense|Fused|Cold)(?:/([^/]+))?/(\d+)/(\d+)/(\d+)/")
    for b in doc.get("benchmarks", []):
        if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "median":
            continue
        m = pattern.match(b["name"])
        if not m:
            continue
        kind, config, r, c, n = m.groups()
        if kind == "Cold" and not args.cold:
            continue
        key = (int(r), int(c), int(n), kind == "Cold")
        if key not in rows:
            rows.append(key)
        name = {"Dense": "dense fp32", "DensePlain": "plain Eigen X·Wᵀ"}.get(kind, config)
        if name not in configs:
            configs.append(name)
        unit = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}[b.get("time_unit", "ns")]
        cells[key, name] = (b["real_time"] * unit, b.get("x_dense"), b.get("label", ""))
    if not rows:
        sys.exit(f"{args.json}: no bench_kernels results in it")
    ctx = doc.get("context", {})
    print(f"Machine: {ctx.get('host_name', '?')}, {ctx.get('num_cpus', '?')} CPUs at {ctx.get('mhz_per_cpu', '?')} MHz; "
          f"{ctx.get('date', '')}")
    print()
    print("| shape (out × in), batch | " + " | ".join(configs) + " |")
    print("|---|" + "---|" * len(configs))
    for key in sorted(rows):
        r, c, n, cold = key
        out = [f"{r} × {c}, n = {n}" + (" (cold)" if cold else "")]
        for name in configs:
            v = cells.get((key, name))
            if v is None:
                out.append("")
            elif name == "dense fp32":
                out.append(fmt_time(v[0]))
            else:
                # The ratio to the dense line of the same table when there is one (same process), else
                # the benchmark's own x_dense counter.
                dense = cells.get(((r, c, n, False), "dense fp32"))
                ratio = dense[0] / v[0] if dense else v[1]
                out.append(fmt_time(v[0]) + (f" ({ratio:.2f}×)" if ratio is not None else ""))
        print("| " + " | ".join(out) + " |")
    kernels = sorted({v[2] for v in cells.values() if v[2]})
    print()
    print("Kernels that ran: " + ", ".join(kernels))


if __name__ == "__main__":
    main()
