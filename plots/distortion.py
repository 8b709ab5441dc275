#!/usr/bin/env python3
"""The TurboQuant paper's bound-validation figure and table from a tqbench result file.

Reads a run of experiments/paper/distortion.yaml and writes:
  PREFIX.png, PREFIX.pdf  four panels: D_mse and D_prod against bits b at d = 1536 with the paper's
                          upper and lower bounds, and both against d (log scale), one line per b;
  PREFIX-table.md         the reproduced table beside the paper's values (also printed).

b is each quantizer's code bits per coordinate (recovered from the stored lower bound 4^-b).

Example:
  plots/distortion.py results/paper-distortion.h5 -o results/paper-distortion
"""
import argparse
import math
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tqb_results import load, ok_rows  # noqa: E402

# TurboQuant (arXiv 2504.19874), as quoted in ../shared/REFERENCE.md: D_mse and d·D_prod for b = 1..4.
PAPER_D_MSE = {1: 0.36, 2: 0.117, 3: 0.03, 4: 0.009}
PAPER_D_PROD_TIMES_D = {1: 1.57, 2: 0.56, 3: 0.18, 4: 0.047}
FAMILIES = ["turboquant", "turboquant_prod", "qjl", "rtn"]
STYLE = {"turboquant": ("C0", "o"), "turboquant_prod": ("C1", "s"), "qjl": ("C2", "^"), "rtn": ("C3", "v")}
REQUIRED = ["family", "data.cols", "d_mse", "d_prod", "d_mse_lower", "d_mse_upper", "d_prod_lower", "d_prod_upper",
            "d_mse_lloyd_max", "ip_slope"]


def records(path):
    attrs, cols, _ = load(path)
    missing = [c for c in REQUIRED if c not in cols]
    if missing:
        raise SystemExit(f"{path}: not a distortion run (missing columns {', '.join(missing)}); "
                         "run experiments/paper/distortion.yaml")
    out = []
    for i in ok_rows(cols):
        r = {k: cols[k][i] for k in cols}
        r["b"] = int(round(-math.log(r["d_mse_lower"]) / math.log(4)))
        r["d"] = int(r["data.cols"])
        out.append(r)
    return attrs, out


def pick(rows, family, d=None, b=None):
    return sorted((r for r in rows if r["family"] == family and (d is None or r["d"] == d) and (b is None or r["b"] == b)),
                  key=lambda r: (r["b"], r["d"]))


def fmt(x, digits=4):
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}g}"


def table(rows, d):
    head = ("| b | turboquant D_mse | Lloyd-Max | paper | bounds [4^-b, √3π/2·4^-b] | turboquant_prod d·D_prod | paper | "
            "bounds·d | QJL d·D_prod | RTN D_mse | slope of 1-bit MSE (2/π = 0.6366) |")
    rule = "|" + "|".join(["---"] * (head.count("|") - 1)) + "|"
    lines = [f"D_mse and D_prod on unit vectors, d = {d}", "", head, rule]
    bits = sorted({r["b"] for r in rows if r["d"] == d})
    for b in bits:
        def one(family):
            m = pick(rows, family, d, b)
            return m[0] if m else None
        tq, prod, qjl, rtn = one("turboquant"), one("turboquant_prod"), one("qjl"), one("rtn")
        ref = tq or prod or qjl or rtn
        lines.append("| " + " | ".join([
            str(b),
            fmt(tq and tq["d_mse"]),
            fmt(tq and tq["d_mse_lloyd_max"]),
            fmt(PAPER_D_MSE.get(b)),
            f"[{fmt(ref['d_mse_lower'], 3)}, {fmt(ref['d_mse_upper'], 3)}]",
            fmt(prod and prod["d_prod"] * d),
            fmt(PAPER_D_PROD_TIMES_D.get(b)),
            f"[{fmt(ref['d_prod_lower'] * d, 3)}, {fmt(ref['d_prod_upper'] * d, 3)}]",
            fmt(qjl and qjl["d_prod"] * d),
            fmt(rtn and rtn["d_mse"]),
            fmt(tq and tq["ip_slope"]) if b == 1 else "",
        ]) + " |")
    if 4 in bits:
        # The paper's d·D_prod at b = 4 is (π/2)·0.03, its rounded b = 3 D_mse (turboquant_prod is a
        # (b−1)-bit MSE pass plus 1-bit QJL); the exact figure is (π/2)·0.0345 ≈ 0.054.
        lines += ["", "Note: the paper's d·D_prod of 0.047 at b = 4 is (π/2)·0.03, its rounded b = 3 D_mse; "
                  "(π/2)·0.0345 ≈ 0.054 (the exact value) is what turboquant_prod measures."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("result", help="result file of experiments/paper/distortion.yaml")
    ap.add_argument("-o", "--output", help="output prefix (default: the result path without .h5)")
    ap.add_argument("--d", type=int, default=1536, help="dimension of the bits panels and the table (default 1536)")
    args = ap.parse_args(argv)
    attrs, rows = records(args.result)
    if not any(r["d"] == args.d for r in rows):
        ap.error(f"{args.result}: no points at d = {args.d}; dimensions: {sorted({r['d'] for r in rows})}")

    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for ax, metric, title in ((axes[0][0], "d_mse", "D_mse"), (axes[0][1], "d_prod", "D_prod")):
        for fam in FAMILIES:
            pts = pick(rows, fam, args.d)
            if pts:
                color, marker = STYLE[fam]
                ax.plot([r["b"] for r in pts], [r[metric] for r in pts], marker=marker, color=color, label=fam)
        ref = sorted({r["b"]: r for r in rows if r["d"] == args.d}.values(), key=lambda r: r["b"])
        ax.plot([r["b"] for r in ref], [r[metric + "_upper"] for r in ref], "k--", lw=1, label="upper bound (TurboQuant)")
        ax.plot([r["b"] for r in ref], [r[metric + "_lower"] for r in ref], "k:", lw=1, label="lower bound (any quantizer)")
        ax.set_yscale("log")
        ax.set_xlabel("bits per coordinate b")
        ax.set_ylabel(title)
        ax.set_title(f"{title} on unit vectors, d = {args.d}", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)

    dims = sorted({r["d"] for r in rows})
    for ax, fam, metric, scale_by_d, label in (
            (axes[1][0], "turboquant", "d_mse", False, "turboquant D_mse"),
            (axes[1][1], "turboquant_prod", "d_prod", True, "turboquant_prod d·D_prod")):
        for b in sorted({r["b"] for r in rows}):
            pts = [r for r in pick(rows, fam, b=b)]
            # One point per d: prefer the larger-sample run where a dimension appears twice.
            by_d = {}
            for r in pts:
                if r["d"] not in by_d or r["data.rows"] > by_d[r["d"]]["data.rows"]:
                    by_d[r["d"]] = r
            pts = [by_d[d] for d in sorted(by_d)]
            if not pts:
                continue
            ys = [r[metric] * (r["d"] if scale_by_d else 1) for r in pts]
            line, = ax.plot([r["d"] for r in pts], ys, marker="o", ms=3.5, label=f"b = {b}")
            paper = (PAPER_D_PROD_TIMES_D if scale_by_d else PAPER_D_MSE).get(b)
            if paper:
                ax.axhline(paper, color=line.get_color(), ls=":", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(dims)
        ax.set_xticklabels([str(d) for d in dims], fontsize=7)
        ax.set_xlabel("dimension d")
        ax.set_ylabel(label)
        ax.set_title(f"{label} against d (dotted: paper's values)", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    commit = str(attrs.get("git_commit", "?"))[:10]
    fig.suptitle("TurboQuant bound validation (arXiv 2504.19874), reproduced with tqbench", fontsize=11)
    fig.text(0.99, 0.005, f"tqbench {commit}, seed {attrs.get('seed', '?')}, {attrs.get('cpu_model', '')}",
             ha="right", fontsize=6, alpha=0.6)
    fig.tight_layout()
    prefix = args.output or os.path.splitext(args.result)[0]
    for ext in ("png", "pdf"):
        fig.savefig(f"{prefix}.{ext}", dpi=150)
    text = table(rows, args.d)
    with open(f"{prefix}-table.md", "w") as f:
        f.write(text)
    print(text)
    print(f"{prefix}.png\n{prefix}.pdf\n{prefix}-table.md")


if __name__ == "__main__":
    main()
