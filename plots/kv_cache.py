#!/usr/bin/env python3
"""Figures of a KV-cache experiment (experiments/paper/kv-cache.yaml): ΔPPL against the cache's bits per
coordinate, one line per method, with 95% intervals over the repeats; and the attention inner-product error
(bias and sqrt(D_prod)) against bits. Writes PREFIX-dppl.png/.pdf and PREFIX-ip.png/.pdf.

    plots/kv_cache.py results/kv-cache.h5 -o docs/kv-cache [--ctx 512]
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


def method(columns, i):
    """The cache's method: the key quantizer's family, KIVI for per-channel keys, '+ outliers' when split."""
    key = columns["data.kv_key"][i]
    if key == "none":
        return None
    family = re.match(r"[a-z_0-9]+", key).group(0)
    if columns["data.kv_key_axis"][i] == "channel":
        family = "KIVI (rtn, keys per channel)"
    if int(columns["data.kv_outliers"][i]) > 0:
        family += f" + {int(columns['data.kv_outliers'][i])} outlier channels"
    return family


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("result")
    ap.add_argument("-o", "--output", required=True, help="output prefix")
    ap.add_argument("--ctx", type=int, default=512, help="the context length whose rows are drawn")
    args = ap.parse_args(argv)
    attrs, columns, meta = load(args.result)
    rows = [i for i in plotted_rows(columns) if int(columns["data.ctx"][i]) == args.ctx and method(columns, i)]
    if not rows:
        ap.error(f"{args.result}: no quantized-cache rows at ctx {args.ctx}")
    lines = {}
    for i in rows:
        lines.setdefault(method(columns, i), []).append(i)
    commit = str(attrs.get("git_commit", "?"))[:10]
    note = f"tqbench {commit}, seed {attrs.get('seed', '?')}, {int(attrs.get('repeats', 1))} repeats: mean and 95% interval"

    def draw(ax, metric, transform=lambda v: v, label_suffix=""):
        for n, (name, idx) in enumerate(sorted(lines.items())):
            idx = sorted(idx, key=lambda i: columns["kv_bits"][i])
            x = [columns["kv_bits"][i] for i in idx]
            y = [transform(columns[metric][i]) for i in idx]
            err = [interval(columns, metric, i) for i in idx]
            if transform is not None and metric == "kv_dprod":
                err = [0.5 * e / max(v, 1e-30) for e, v in zip(err, y)]  # d sqrt(v) = dv / (2 sqrt(v))
            ax.errorbar(x, y, yerr=err, marker="o", ms=4, lw=1.2, capsize=2, label=name + label_suffix, color=plt.cm.tab10(n % 10))

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    draw(ax, "delta_ppl")
    ax.set_yscale("log")
    ax.set_xlabel("KV-cache bits per coordinate (keys and values; codes, norms, outlier channels)")
    ax.set_ylabel("ΔPPL against the fp32 cache (lower is better)")
    ax.set_title(f"{attrs.get('experiment', '')}: SmolLM2-135M, ctx {args.ctx}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.text(0.99, 0.01, note, ha="right", fontsize=6, alpha=0.6)
    fig.tight_layout()
    for ext in ("png", "pdf"):
        fig.savefig(f"{args.output}-dppl.{ext}", dpi=150)

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4.2))
    draw(a1, "kv_ip_bias")
    a1.axhline(0, color="k", lw=0.6)
    a1.set_xlabel("KV bits per coordinate")
    a1.set_ylabel("bias of <q,k~> - <q,k>, attention logits")
    draw(a2, "kv_dprod", transform=np.sqrt)
    a2.set_yscale("log")
    a2.set_xlabel("KV bits per coordinate")
    a2.set_ylabel("sqrt(D_prod): RMS of (<q,k~> - <q,k>) / (|q| |k|)")
    for a in (a1, a2):
        a.grid(True, which="both", alpha=0.3)
    a2.legend(fontsize=6)
    fig.suptitle(f"attention inner products on real queries and keys, first chunk, ctx {args.ctx}", fontsize=9)
    fig.text(0.99, 0.01, note, ha="right", fontsize=6, alpha=0.6)
    fig.tight_layout()
    for ext in ("png", "pdf"):
        fig.savefig(f"{args.output}-ip.{ext}", dpi=150)
    print(f"{args.output}-dppl.png\n{args.output}-ip.png")


if __name__ == "__main__":
    main()
