#!/usr/bin/env python3
"""Plot a metric of a tqbench result file against bits per weight.

One line per series: points that share every quantizer parameter except the swept x parameter
(bits), e.g. one line per quantizer family, group size and mode; data sets that differ get their
own lines too. Writes PREFIX.png and PREFIX.pdf.

Example:
  plots/plot.py results/rtn-synthetic.h5 -o results/rtn-synthetic --metric weight_nmse
"""
import argparse
import os
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tqb_results import interval, load, plotted_rows  # noqa: E402


def _missing(v):
    """Missing values in result files: "" for text, -1 for integers, NaN for reals."""
    if isinstance(v, str):
        return v == ""
    if isinstance(v, (int, np.integer)):
        return v == -1
    return v != v


def series_key(columns, meta, i, x_param, series=None):
    """The label of the line point i belongs to: its family and every varying parameter but x
    (or only the columns named in `series`)."""
    parts = [columns["family"][i]]
    for name, m in meta.items():
        if m["role"] not in ("quantizer", "data") or name == x_param or name in ("quantizer", "family"):
            continue
        if series is not None and name not in series:
            continue
        values = columns[name]
        defined = {v for v in values if not _missing(v)}
        if len(defined) <= 1:
            continue  # constant wherever it is defined: not worth a label
        v = values[i]
        if isinstance(v, str) and v == "":
            continue  # a text parameter of another family
        if not isinstance(v, str) and isinstance(v, float) and v != v:
            continue  # NaN: a real parameter of another family
        if name == "data":
            parts.append(v)
        elif name.startswith("q."):
            if isinstance(v, (int, np.integer)) and v < 0:
                continue  # parameter of another family
            if name == "q.group" and v == 0:
                v = "row"
            parts.append(f"{name[2:]}={v}")
        elif name.startswith("data."):
            parts.append(f"{name[5:]}={v}")
    return ", ".join(parts)


def place_labels(fig, ax, labels, step=8.0):
    """Each label (the family and the parameters that vary across the file) to the right of its marker,
    moved down a line at a time while it would overlap one already placed (in display points)."""
    fig.canvas.draw()  # final axis limits and scales
    to_points = 72.0 / fig.dpi
    placed = []
    for x, y, text in sorted(labels, key=lambda l: (l[0], -l[1])):
        px, py = (v * to_points for v in ax.transData.transform((x, y)))
        width = 3.2 * len(text)  # about 3.2 points per character at fontsize 6
        dy = 0.0
        while any(abs((py + dy) - qy) < step and px < qx + qw and qx < px + width for qx, qy, qw in placed):
            dy -= step
        placed.append((px, py + dy, width))
        ax.annotate(text, (x, y), fontsize=6, xytext=(6, dy), textcoords="offset points", va="center",
                    arrowprops=dict(arrowstyle="-", lw=0.3, alpha=0.5) if dy else None)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("result", help="tqbench result file (.h5)")
    ap.add_argument("-o", "--output", help="output prefix (default: the result path without .h5)")
    ap.add_argument("--metric", default="weight_nmse", help="metric on the y axis (default: weight_nmse)")
    ap.add_argument("--x", default="bits_per_weight", help="metric on the x axis (default: bits_per_weight)")
    ap.add_argument("--x-param", default="q.bits", help="parameter that moves along a line (default: q.bits)")
    ap.add_argument("--linear", action="store_true", help="linear y axis (default: log when all values > 0)")
    ap.add_argument("--log", action="store_true", help="log y axis, leaving out points whose value is not positive")
    ap.add_argument("--where", action="append", default=[], metavar="COLUMN=VALUE",
                    help="keep only points whose column has this value (repeatable), e.g. --where data.source=gaussian")
    ap.add_argument("--scatter", action="store_true",
                    help="one labelled marker per point instead of lines (e.g. delta_ppl against model bits)")
    ap.add_argument("--xlim", help="x range LO,HI (a zoom; points outside are still drawn, off the axes)")
    ap.add_argument("--ylim", help="y range LO,HI")
    ap.add_argument("--series", help="comma-separated columns that tell lines apart (default: every varying "
                                     "quantizer and data parameter except --x-param)")
    args = ap.parse_args(argv)

    attrs, columns, meta = load(args.result)
    for name in (args.metric, args.x):
        if name not in columns:
            metrics = [n for n, m in meta.items() if m["role"] == "metric"]
            ap.error(f"{args.result}: no column '{name}'; metrics in this file: {', '.join(metrics)}")
    rows = plotted_rows(columns)  # a repeated sweep: the summary rows, drawn with their 95% intervals
    for cond in args.where:
        name, sep, value = cond.partition("=")
        if not sep or name not in columns:
            ap.error(f"--where {cond}: expected COLUMN=VALUE with a column of {args.result}")
        rows = [i for i in rows if str(columns[name][i]) == value or
                (not isinstance(columns[name][i], str) and f"{columns[name][i]:g}" == value)]
    if args.log:
        dropped = [columns["quantizer"][i] for i in rows if not columns[args.metric][i] > 0]
        rows = [i for i in rows if columns[args.metric][i] > 0]
        if dropped:
            print(f"--log: left out {len(dropped)} point(s) with {args.metric} <= 0: {', '.join(dropped)}", file=sys.stderr)
    if not rows:
        ap.error(f"{args.result}: no finished points to plot" + (" after --where" if args.where else ""))
    series_cols = None
    if args.series:
        series_cols = args.series.split(",")
        for name in series_cols:
            if name not in columns:
                ap.error(f"--series: no column '{name}' in {args.result}")

    series = {}
    for i in rows:
        series.setdefault(series_key(columns, meta, i, args.x_param, series_cols), []).append(i)

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    if args.scatter:
        series = {}
        # One colour per kind of quantizer, with a legend: each TurboQuant-side family on its own, llama.cpp's
        # formats (q4_0 ... q8_0, q2_K ... q6_K, iq4_nl: families named after ggml types) together.
        def kind(family):
            return "llama.cpp formats" if re.match(r"^(q\d_|iq\d)", family) else family
        families = sorted({kind(columns["family"][i]) for i in rows})
        colour = {f: plt.cm.tab10(n % 10) for n, f in enumerate(families)}
        seen = set()
        labels = []
        for k, i in enumerate(sorted(rows, key=lambda i: columns[args.x][i])):
            f = kind(columns["family"][i])
            ax.errorbar(columns[args.x][i], columns[args.metric][i], yerr=interval(columns, args.metric, i),
                        xerr=interval(columns, args.x, i), fmt="o", ms=5, capsize=2, color=colour[f],
                        label=None if f in seen else f)
            seen.add(f)
            labels.append((columns[args.x][i], columns[args.metric][i], series_key(columns, meta, i, "")))
    for label, idx in sorted(series.items()):
        idx = sorted(idx, key=lambda i: columns[args.x][i])
        ax.errorbar([columns[args.x][i] for i in idx], [columns[args.metric][i] for i in idx],
                    yerr=[interval(columns, args.metric, i) for i in idx], xerr=[interval(columns, args.x, i) for i in idx],
                    marker="o", ms=3.5, lw=1.2, capsize=2, label=label)
    y = np.array([columns[args.metric][i] for i in rows], dtype=float)
    if not args.linear and np.all(y > 0):
        ax.set_yscale("log")
    for lim, setter in ((args.xlim, ax.set_xlim), (args.ylim, ax.set_ylim)):
        if lim:
            try:
                lo, hi = (float(v) for v in lim.split(","))
            except ValueError:
                ap.error(f"--xlim/--ylim {lim}: expected LO,HI")
            setter(lo, hi)
    if args.scatter:
        place_labels(fig, ax, labels)
    direction = meta[args.metric].get("direction", "")
    better = {"lower": " (lower is better)", "higher": " (higher is better)", "zero": " (closer to 0 is better)",
              "one": " (closer to 1 is better)"}
    ax.set_xlabel(args.x.replace("_", " "))
    ax.set_ylabel(args.metric + better.get(direction, ""))
    commit = str(attrs.get("git_commit", "?"))[:10]
    ax.set_title(f"{attrs.get('experiment', '')}: {meta[args.metric]['description']}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    if series or args.scatter:
        ax.legend(fontsize=7, ncol=2 if len(series) > 8 else 1)
    repeats = int(attrs.get("repeats", 1))
    note = f", {repeats} repeats: mean and 95% interval" if repeats > 1 else ""
    fig.text(0.99, 0.01, f"tqbench {commit}, seed {attrs.get('seed', '?')}{note}", ha="right", fontsize=6, alpha=0.6)
    if args.scatter:
        ax.margins(x=0.3)  # room for the labels of the rightmost points
        fig.subplots_adjust(left=0.1, right=0.97, bottom=0.11, top=0.92)
    else:
        fig.tight_layout()

    prefix = args.output or os.path.splitext(args.result)[0]
    for ext in ("png", "pdf"):
        fig.savefig(f"{prefix}.{ext}", dpi=150)
    print(f"{prefix}.png\n{prefix}.pdf")


if __name__ == "__main__":
    main()
