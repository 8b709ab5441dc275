#!/usr/bin/env python3
"""PyTorch's int4 weight-only kernel (torch.ops.aten._weight_int4pack_mm, group 128, or 64 where 128
does not divide the width, 4.25 bits per weight with bf16 scale and zero) on the shapes of bench_gpu, timed the same way: CUDA events, the L2
flushed (a 256 MiB rewrite) before each call, median of --reps after 3 warm-ups, seeded random data.
Also times torch's bf16 linear (cuBLAS) as a cross-check of bench_gpu's own cuBLAS figures, and checks
the int4 result against its own dequantized weights once per shape.

    torch_int4.py [--json FILE] [--reps N] [--quick]

Skips with a message (exit 0) where PyTorch or a CUDA GPU is missing."""
import argparse
import json
import statistics
import sys

SHAPES = [("SmolLM2-135M q/o", 576, 576), ("SmolLM2-135M gate/up", 1536, 576), ("SmolLM2-135M down", 576, 1536),
          ("Qwen3-0.6B q", 2048, 1024), ("Qwen3-0.6B o", 1024, 2048), ("Qwen3-0.6B gate/up", 3072, 1024),
          ("Qwen3-0.6B down", 1024, 3072), ("Llama-3-8B q/o", 4096, 4096), ("Llama-3-8B gate/up", 14336, 4096),
          ("Llama-3-8B down", 4096, 14336)]
BATCHES = [1, 4, 16, 64, 512]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json")
    ap.add_argument("--reps", type=int, default=100)
    ap.add_argument("--quick", action="store_true", help="Llama-3-8B shapes only")
    args = ap.parse_args()
    try:
        import torch
    except ImportError:
        print("torch_int4.py: skipped: PyTorch is not installed")
        return 0
    if not torch.cuda.is_available():
        print("torch_int4.py: skipped: no CUDA GPU")
        return 0
    dev = torch.device("cuda")
    flush = torch.empty(256 << 20, dtype=torch.uint8, device=dev)

    def time_us(fn):
        for _ in range(3):
            fn()
        torch.cuda.synchronize()
        start = [torch.cuda.Event(enable_timing=True) for _ in range(args.reps)]
        stop = [torch.cuda.Event(enable_timing=True) for _ in range(args.reps)]
        for i in range(args.reps):
            flush.fill_(i & 0xFF)
            start[i].record()
            fn()
            stop[i].record()
        torch.cuda.synchronize()
        return statistics.median(1000.0 * s.elapsed_time(e) for s, e in zip(start, stop))

    rows = []
    gen = torch.Generator(device=dev).manual_seed(1)
    print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}; L2 flushed before each call; median of {args.reps}")
    print(f"{'shape':<22} {'n':>4} {'int4_us':>9} {'bf16_us':>9}")
    for name, out_f, in_f in (SHAPES[-3:] if args.quick else SHAPES):
        GROUP = 128 if in_f % 128 == 0 else 64
        inner_k_tiles = 8 if in_f % 256 == 0 else (4 if in_f % 128 == 0 else 2)
        w = torch.randn(out_f, in_f, device=dev, generator=gen, dtype=torch.float32)
        # Asymmetric 4-bit per group of 128 input columns: q in 0..15, w ≈ (q − 8)·scale + zero.
        wg = w.view(out_f, in_f // GROUP, GROUP)
        lo, hi = wg.amin(-1, keepdim=True), wg.amax(-1, keepdim=True)
        scale = ((hi - lo) / 15).clamp(min=1e-8)
        q = ((wg - lo) / scale).round().clamp(0, 15).to(torch.int32).view(out_f, in_f)
        zero = lo + 8 * scale
        packed_u8 = ((q[:, ::2] << 4) | q[:, 1::2]).to(torch.uint8)
        packed = torch.ops.aten._convert_weight_to_int4pack(packed_u8, inner_k_tiles)
        sz = torch.stack([scale.squeeze(-1), zero.squeeze(-1)], dim=-1)  # [out, in/128, 2]
        sz = sz.transpose(0, 1).contiguous().to(torch.bfloat16)  # [in/128, out, 2], as the kernel reads it
        wdq = ((q.view(out_f, in_f // GROUP, GROUP).float() - 8) * sz.transpose(0, 1)[..., 0:1].float()
               + sz.transpose(0, 1)[..., 1:2].float()).view(out_f, in_f)
        wb = w.to(torch.bfloat16)
        for n in BATCHES:
            x = torch.randn(n, in_f, device=dev, generator=gen).to(torch.bfloat16)
            y = torch.ops.aten._weight_int4pack_mm(x, packed, GROUP, sz)
            ref = x.float() @ wdq.t()
            rel = ((y.float() - ref).norm() / ref.norm()).item()
            if not rel < 2e-2:
                print(f"torch_int4.py: int4 result off by {rel:.3g} (relative) at {name} n={n}: packing misread", file=sys.stderr)
                return 1
            t4 = time_us(lambda: torch.ops.aten._weight_int4pack_mm(x, packed, GROUP, sz))
            tb = time_us(lambda: torch.nn.functional.linear(x, wb))
            rows.append({"shape": name, "rows": out_f, "cols": in_f, "n": n, "group": GROUP, "int4_us": t4, "bf16_us": tb, "int4_rel_err": rel})
            print(f"{name:<22} {n:>4} {t4:9.2f} {tb:9.2f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "reps": args.reps, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
