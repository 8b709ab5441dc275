#!/usr/bin/env python3
"""Markdown table of the GPU benchmark: bench_gpu's JSON (lut_mma and cuBLAS bf16, same run) joined
with torch_int4.py's JSON (PyTorch int4, same shapes, same device call) where given.

    gpu_table.py BENCH_GPU.json [TORCH_INT4.json]"""
import json
import sys


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__)
        return 0 if len(argv) >= 2 else 2
    try:
        gpu = json.load(open(argv[1]))
        torch = json.load(open(argv[2])) if len(argv) > 2 else {"rows": []}
    except (OSError, ValueError) as e:
        print(f"gpu_table.py: cannot read {e}", file=sys.stderr)
        return 2
    int4 = {(r["rows"], r["cols"], r["n"]): r for r in torch.get("rows", [])}
    print(f"GPU: {gpu['device']}; commit {gpu['commit']}; copy bandwidth {gpu['copy_bytes_per_s'] / 1e9:.0f} GB/s; "
          f"median of {gpu['reps']} calls, L2 flushed before each; an empty kernel measures {gpu.get('empty_kernel_us', float('nan')):.1f} µs so."
          + (f" PyTorch {torch['torch']} int4 (g128) from the same device call." if torch.get("rows") else ""))
    print()
    print("| shape | W (out×in) | format | n | µs | GB/s (compressed) | % of copy | read floor µs | other paths µs | cuBLAS bf16 µs | × cuBLAS "
          "| PyTorch int4 µs | × int4 | kernel |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")

    def num(v, fmt=".1f"):
        return "—" if v is None or v < 0 else format(v, fmt)

    for r in gpu["rows"]:
        t = int4.get((r["rows"], r["cols"], r["n"]))
        i4 = f"{t['int4_us']:.1f}" if t else "—"
        xi4 = f"{t['int4_us'] / r['us']:.2f}" if t else "—"
        # The other paths the same run timed (files before 2026-12-07 afternoon hold fewer of them): all but the
        # one the default took, named as bench_gpu's variant names them.
        taken = r.get("variant", "").split("(")[0]
        others = [(name, r.get(key)) for key, name in (("small_us", "small"), ("us_l2_prefetch", "small, L2 prefetch"),
                                                        ("us_no_prefetch", "no prefetch"), ("large_us", "large"),
                                                        ("dequant_us", "dequantized"), ("wgmma_us", "wgmma"))
                  if r.get(key) is not None and r.get(key) >= 0 and name != taken]
        other = ", ".join(f"{v:.1f} ({name})" for name, v in others) or "—"
        print(f"| {r['shape']} | {r['rows']}×{r['cols']} | `{r['format']}` | {r['n']} | {r['us']:.1f} | {r['gbs']:.0f} | {r['pct_copy']:.0f}% "
              f"| {num(r.get('read_floor_us'))} | {other} | {r['cublas_us']:.1f} | {r['x_cublas']:.2f} | {i4} | {xi4} | {r.get('variant', '')} |")
    for s in gpu.get("stack", []):
        print()
        print(f"Llama-3-8B linear stack, n = {s['n']}: {s['us']:.0f} µs vs {s['cublas_us']:.0f} µs bf16 "
              f"({s['cublas_us'] / s['us']:.2f}× faster), {s['weight_bytes'] / 1e9:.2f} GB vs {s['cublas_weight_bytes'] / 1e9:.2f} GB "
              f"({s['cublas_weight_bytes'] / s['weight_bytes']:.2f}× less memory)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
