#!/usr/bin/env python3
"""Plot a metric of tqbench result files against bits per weight.

Defaults follow the kind of result: a model sweep draws its perplexity change (delta_ppl) against the quantized
layers' bits per weight, one labelled marker per point coloured by family, with the paired 95% intervals as
error bars and the unquantized model as a reference line; a matrix sweep draws weight NMSE against bits per
weight, one line per series: points that share every quantizer parameter except the swept x parameter (bits).
Several result files go into one figure (a marker per file). Writes PREFIX.png and PREFIX.pdf.

Examples:
  tqbench plot results/rtn-synthetic.h5 --metric weight_nmse
  tqbench plot results/books14m-head-to-head.h5 --where 'quantized_bits_per_weight<5'
"""
import argparse
import os
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402,F401
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tqb_results import family_kind, interval, load, plotted_rows, where  # noqa: E402


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
        # The data column's full name is spelled out by its data.* parameters: only those that vary are shown.
        if m["role"] not in ("quantizer", "data") or name == x_param or name in ("quantizer", "family", "data"):
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
        if name == "file":
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


def defaults_for(columns):
    """(metric, x) a figure of this kind of result draws by default: a model sweep its perplexity change (or KLD)
    against the quantized layers' bits per weight; a matrix sweep its weight NMSE against bits per weight."""
    if "perplexity" in columns:
        metric = next((m for m in ("delta_ppl", "kld_mean", "perplexity") if m in columns), "perplexity")
        return metric, "quantized_bits_per_weight"
    return "weight_nmse", "bits_per_weight"


def concatenate(files):
    """One table from several result files: the union of their columns (missing cells NaN or ""), a `file`
    column naming each row's file, and the first file's attributes and metadata."""
    loaded = [load(f) for f in files]
    attrs, _, meta = loaded[0]
    names = []
    for _, columns, m in loaded:
        for n in columns:
            if n not in names:
                names.append(n)
                meta.setdefault(n, m[n])
    out = {n: [] for n in names}
    out["file"] = []
    for f, (_, columns, _) in zip(files, loaded):
        count = len(columns["status"])
        for n in names:
            if n in columns:
                out[n].extend(list(columns[n]))
            else:
                out[n].extend([""] * count if meta[n].get("role") in ("point", "quantizer", "data") and n in ("data", "quantizer", "family")
                              else [float("nan")] * count)
        out["file"].extend([os.path.basename(f)] * count)
    for n in names:
        if out[n] and not isinstance(out[n][0], str):
            out[n] = np.asarray(out[n])
    meta["file"] = {"role": "data" if len(files) > 1 else "point", "description": "result file", "direction": ""}
    return attrs, out, meta


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="+", help="tqbench result files (.h5); several are drawn in one figure")
    ap.add_argument("-o", "--output", help="output prefix (default: the first result path without .h5)")
    ap.add_argument("--metric", help="metric on the y axis (default: delta_ppl for model sweeps, weight_nmse for matrix sweeps)")
    ap.add_argument("--x", help="metric on the x axis (default: quantized_bits_per_weight for model sweeps, else bits_per_weight)")
    ap.add_argument("--x-param", default="q.bits", help="parameter that moves along a line (default: q.bits)")
    ap.add_argument("--linear", action="store_true", help="linear y axis (default: log when all values > 0)")
    ap.add_argument("--log", action="store_true", help="log y axis, leaving out points whose value is not positive")
    ap.add_argument("--where", action="append", default=[], metavar="COLUMN OP VALUE",
                    help="keep only points where COLUMN OP VALUE holds, OP one of = != < <= > >= ~ (contains); repeatable, "
                         "e.g. --where data.source=gaussian --where 'q.bits<5'")
    ap.add_argument("--scatter", action="store_true",
                    help="one labelled marker per point instead of lines (default for model sweeps)")
    ap.add_argument("--lines", action="store_true", help="lines through each series even for a model sweep")
    ap.add_argument("--xlim", help="x range LO,HI (a zoom; points outside are still drawn, off the axes)")
    ap.add_argument("--ylim", help="y range LO,HI")
    ap.add_argument("--series", help="comma-separated columns that tell lines apart (default: every varying "
                                     "quantizer and data parameter except --x-param)")
    args = ap.parse_args(argv)

    attrs, columns, meta = concatenate(args.results)
    name = args.results[0] if len(args.results) == 1 else f"{len(args.results)} result files"
    model = "perplexity" in columns
    default_metric, default_x = defaults_for(columns)
    metric, x = args.metric or default_metric, args.x or default_x
    for col in (metric, x):
        if col not in columns:
            metrics = [n for n, m in meta.items() if m["role"] == "metric"]
            ap.error(f"{name}: no column '{col}'; metrics in this file: {', '.join(metrics)}")
    # Per file: a repeated sweep's summary rows (drawn with their 95% intervals), else its finished points.
    rows = []
    for f in dict.fromkeys(columns["file"]):
        mine = {i for i, g in enumerate(columns["file"]) if g == f}
        summaries = [i for i in plotted_rows(columns) if i in mine]
        rows += summaries or [i for i, st in enumerate(columns["status"]) if i in mine and st == "ok"]
    for cond in args.where:
        try:
            rows = where(columns, rows, cond)
        except ValueError as e:
            ap.error(str(e))
    # The unquantized baseline (none(): 32 bits) would squash the x axis: a reference line instead.
    baseline = [i for i in rows if columns["family"][i] == "none"]
    rows = [i for i in rows if columns["family"][i] != "none"]
    if args.log:
        dropped = [columns["quantizer"][i] for i in rows if not columns[metric][i] > 0]
        rows = [i for i in rows if columns[metric][i] > 0]
        if dropped:
            print(f"--log: left out {len(dropped)} point(s) with {metric} <= 0: {', '.join(dropped)}", file=sys.stderr)
    if not rows:
        ap.error(f"{name}: no finished points to plot" + (" after --where" if args.where else ""))
    series_cols = None
    if args.series:
        series_cols = args.series.split(",")
        for col in series_cols:
            if col not in columns:
                ap.error(f"--series: no column '{col}' in {name}")

    scatter = args.scatter or (model and not args.lines)
    series = {}
    for i in rows:
        series.setdefault(series_key(columns, meta, i, args.x_param, series_cols), []).append(i)

    fig, ax = plt.subplots(figsize=(8.5, 4.8))
    markers = "osD^v<>phX*"
    if scatter:
        # One colour per kind of quantizer (llama.cpp's formats together), one marker per file.
        kinds = sorted({family_kind(columns["family"][i]) for i in rows})
        colour = {f: plt.cm.tab10(n % 10) for n, f in enumerate(kinds)}
        files = sorted({columns["file"][i] for i in rows})
        seen = set()
        labels = []
        for i in sorted(rows, key=lambda i: columns[x][i]):
            f = family_kind(columns["family"][i])
            key = (f, columns["file"][i])
            label = f if len(files) == 1 else f"{f} ({columns['file'][i]})"
            ax.errorbar(columns[x][i], columns[metric][i], yerr=interval(columns, metric, i), xerr=interval(columns, x, i),
                        fmt=markers[files.index(columns["file"][i]) % len(markers)], ms=5, capsize=2, color=colour[f],
                        label=None if key in seen else label)
            seen.add(key)
            labels.append((columns[x][i], columns[metric][i], series_key(columns, meta, i, "")))
    else:
        # Lines that coincide stay visible: each series its own marker, size and dash.
        dashes = ["-", "--", "-.", ":"]
        for n, (label, idx) in enumerate(sorted(series.items())):
            idx = sorted(idx, key=lambda i: columns[x][i])
            ax.errorbar([columns[x][i] for i in idx], [columns[metric][i] for i in idx],
                        yerr=[interval(columns, metric, i) for i in idx], xerr=[interval(columns, x, i) for i in idx],
                        marker=markers[n % len(markers)], ms=3 + (n % 3), ls=dashes[(n // len(markers)) % len(dashes)],
                        lw=1.1, capsize=2, alpha=0.85, label=label)
    y = np.array([columns[metric][i] for i in rows], dtype=float)
    if not args.linear and np.all(y > 0):
        ax.set_yscale("log")
        # A log axis spanning less than two decades gets plain labels on its minor ticks too (not one label, or none).
        if y.max() / y.min() < 100:
            plain = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:.3g}")
            ax.yaxis.set_major_formatter(plain)
            ax.yaxis.set_minor_formatter(plain)
            ax.tick_params(axis="y", which="minor", labelsize=6)
    # The baseline as a reference: its perplexity (a change against it is 0: drawn on a linear axis only).
    for i in baseline[:1]:
        v = columns[metric][i]
        if v == v and not (v <= 0 and ax.get_yscale() == "log"):
            ax.axhline(v, color="0.3", lw=0.8, ls="--", label=f"unquantized ({v:.4g})")
    for lim, setter in ((args.xlim, ax.set_xlim), (args.ylim, ax.set_ylim)):
        if lim:
            try:
                lo, hi = (float(v) for v in lim.split(","))
            except ValueError:
                ap.error(f"--xlim/--ylim {lim}: expected LO,HI")
            setter(lo, hi)
    if scatter:
        place_labels(fig, ax, labels)
    direction = meta[metric].get("direction", "")
    better = {"lower": " (lower is better)", "higher": " (higher is better)", "zero": " (closer to 0 is better)",
              "one": " (closer to 1 is better)"}
    ax.set_xlabel(x.replace("_", " "))
    ax.set_ylabel(metric + better.get(direction, ""))
    commit = str(attrs.get("git_commit", "?"))[:10]
    ax.set_title(f"{attrs.get('experiment', '')}: {meta[metric]['description']}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    handles, _ = ax.get_legend_handles_labels()
    # Many entries go beside the axes, never over the data.
    outside = len(handles) > 8
    if handles:
        ax.legend(fontsize=6 if outside else 7, ncol=1 + len(handles) // 30, loc="upper left" if outside else "best",
                  bbox_to_anchor=(1.01, 1.0) if outside else None, frameon=not outside)
    repeats = int(attrs.get("repeats", 1))
    note = f", {repeats} repeats: mean and 95% interval over chunks and seeds" if repeats > 1 else \
        (", 95% intervals over the chunks" if model else "")
    fig.text(0.99, 0.01, f"tqbench {commit}, seed {attrs.get('seed', '?')}{note}", ha="right", fontsize=6, alpha=0.6)
    if scatter:
        ax.margins(x=0.3)  # room for the labels of the rightmost points
    fig.tight_layout()

    prefix = args.output or os.path.splitext(args.results[0])[0]
    for ext in ("png", "pdf"):
        fig.savefig(f"{prefix}.{ext}", dpi=150, bbox_inches="tight")
    print(f"{prefix}.png\n{prefix}.pdf")


if __name__ == "__main__":
    main()
