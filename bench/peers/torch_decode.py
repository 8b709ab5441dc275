#!/usr/bin/env python3
"""Greedy decode speed of a Hugging Face Llama folder on the GPU by the peers tqbench's decode is measured against
(issue 25), in one call: plain PyTorch (a Llama forward over torch ops with a static KV cache) in bf16, eager and as
one CUDA graph per step; the same with PyTorch's int4 weight-only kernel (torch.ops.aten._weight_int4pack_mm,
asymmetric 4-bit, group 128, bf16 scale and zero: 4.25 bits per weight) as a CUDA graph; and transformers'
generate (greedy, its default dynamic cache). Batch 1; the prompt is the first --prompt tokens of --text.

    python3 bench/peers/torch_decode.py --model DIR --text FILE --prompt 512 --tokens 128 [--peers ...]

Prints one JSON line per peer: ms per decode step (median over the timed steps, CUDA events around each step or
graph replay, after --warmup untimed steps), prefill seconds, weight bytes on the GPU, peak GPU bytes, and the first
32 generated token ids (greedy, so that peers and tqbench can be compared token for token).
"""
import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_perplexity import load_weights  # noqa: E402  (the same loader as the perplexity peers)

PROJ = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj",
        "mlp.down_proj")


def int4_pack(w, torch, group=128):
    """(packed, scales_and_zeros) of w (out × in) for _weight_int4pack_mm: q in 0..15, w ≈ (q − 8)·scale + zero."""
    out_f, in_f = w.shape
    inner_k_tiles = 8 if in_f % 256 == 0 else (4 if in_f % 128 == 0 else 2)
    wg = w.float().view(out_f, in_f // group, group)
    lo, hi = wg.amin(-1, keepdim=True), wg.amax(-1, keepdim=True)
    scale = ((hi - lo) / 15).clamp(min=1e-8)
    q = ((wg - lo) / scale).round().clamp(0, 15).to(torch.int32).view(out_f, in_f)
    zero = lo + 8 * scale
    packed = torch.ops.aten._convert_weight_to_int4pack(((q[:, ::2] << 4) | q[:, 1::2]).to(torch.uint8), inner_k_tiles)
    sz = torch.stack([scale.squeeze(-1), zero.squeeze(-1)], dim=-1).transpose(0, 1).contiguous().to(torch.bfloat16)
    return packed, sz


class DecodeLlama:
    """Llama-3-style forward (rotate-half RoPE, GQA, SwiGLU) over a static KV cache of `capacity` positions, so that a
    step has fixed shapes and addresses and can be captured as a CUDA graph; the position is a device tensor."""

    def __init__(self, folder, capacity, int4, torch):
        self.torch = torch
        self.c = c = json.load(open(os.path.join(folder, "config.json")))
        self.w = load_weights(folder, torch.bfloat16, "cuda")
        self.hd = c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]
        self.nh, self.nkv, self.L = c["num_attention_heads"], c["num_key_value_heads"], c["num_hidden_layers"]
        theta = c.get("rope_theta") or c.get("rope_parameters", {}).get("rope_theta", 10000.0)
        self.inv_freq = 1.0 / (theta ** (torch.arange(0, self.hd, 2, device="cuda", dtype=torch.float32) / self.hd))
        self.head = self.w.get("lm_head.weight", self.w["model.embed_tokens.weight"])
        self.cap = capacity
        self.K = [torch.zeros(1, self.nkv, capacity, self.hd, device="cuda", dtype=torch.bfloat16) for _ in range(self.L)]
        self.V = [torch.zeros_like(k) for k in self.K]
        self.int4 = {}
        if int4:
            for l in range(self.L):
                for p in PROJ:
                    name = f"model.layers.{l}.{p}.weight"
                    self.int4[name] = int4_pack(self.w[name], torch)
                    del self.w[name]
            torch.cuda.empty_cache()

    def weight_bytes(self):
        n = sum(t.numel() * t.element_size() for t in self.w.values())
        return n + sum(p.numel() * p.element_size() + s.numel() * s.element_size() for p, s in self.int4.values())

    def linear(self, x, name):
        if name in self.int4:
            packed, sz = self.int4[name]
            return self.torch.ops.aten._weight_int4pack_mm(x.reshape(-1, x.shape[-1]), packed, 128, sz).view(*x.shape[:-1], -1)
        return x @ self.w[name].T

    def rms(self, x, w):
        v = x.float().pow(2).mean(-1, keepdim=True)
        return w * (x.float() * self.torch.rsqrt(v + self.c["rms_norm_eps"])).to(x.dtype)

    def forward(self, ids, pos0):
        """ids: (1, T) on the GPU; pos0: a 0-d int64 GPU tensor, the first position. Returns the last position's logits."""
        torch, F = self.torch, self.torch.nn.functional
        w, hd, nh, nkv = self.w, self.hd, self.nh, self.nkv
        T = ids.shape[1]
        pos = pos0 + torch.arange(T, device="cuda")
        ang = torch.outer(pos.float(), self.inv_freq)
        cos = torch.cat([ang.cos(), ang.cos()], -1).to(torch.bfloat16)
        sin = torch.cat([ang.sin(), ang.sin()], -1).to(torch.bfloat16)
        mask = (torch.arange(self.cap, device="cuda")[None, :] <= pos[:, None])[None, None]  # (1, 1, T, cap)

        def rope(t):
            t1, t2 = t[..., : hd // 2], t[..., hd // 2:]
            return t * cos + torch.cat([-t2, t1], -1) * sin

        x = w["model.embed_tokens.weight"][ids]
        for l in range(self.L):
            p = f"model.layers.{l}."
            h = self.rms(x, w[p + "input_layernorm.weight"])
            q = self.linear(h, p + "self_attn.q_proj.weight").view(1, T, nh, hd).transpose(1, 2)
            k = self.linear(h, p + "self_attn.k_proj.weight").view(1, T, nkv, hd).transpose(1, 2)
            v = self.linear(h, p + "self_attn.v_proj.weight").view(1, T, nkv, hd).transpose(1, 2)
            self.K[l].index_copy_(2, pos, rope(k))
            self.V[l].index_copy_(2, pos, v)
            a = F.scaled_dot_product_attention(rope(q), self.K[l], self.V[l], attn_mask=mask, enable_gqa=True)
            x = x + self.linear(a.transpose(1, 2).reshape(1, T, nh * hd), p + "self_attn.o_proj.weight")
            h = self.rms(x, w[p + "post_attention_layernorm.weight"])
            g = F.silu(self.linear(h, p + "mlp.gate_proj.weight")) * self.linear(h, p + "mlp.up_proj.weight")
            x = x + self.linear(g, p + "mlp.down_proj.weight")
        return self.rms(x[:, -1:], w["model.norm.weight"]) @ self.head.T


def time_steps(step, n, warmup, torch):
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(n)]
    for a, b in ev:
        a.record()
        step()
        b.record()
    torch.cuda.synchronize()
    return [a.elapsed_time(b) for a, b in ev]


def run_plain(a, prompt, int4, graph, torch):
    cap = len(prompt) + a.tokens + a.warmup + 8
    m = DecodeLlama(a.model, cap, int4, torch)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    ids = torch.tensor([prompt], device="cuda")
    tok = torch.zeros(1, 1, dtype=torch.long, device="cuda")
    pos = torch.zeros((), dtype=torch.long, device="cuda")
    out = []
    with torch.inference_mode():
        t0 = time.perf_counter()
        tok.copy_(m.forward(ids, pos).argmax(-1).view(1, 1))
        torch.cuda.synchronize()
        prefill_s = time.perf_counter() - t0
        pos.fill_(len(prompt))
        out.append(int(tok.item()))
        generated = []

        def eager():
            tok.copy_(m.forward(tok, pos).argmax(-1).view(1, 1))
            pos.add_(1)
            generated.append(tok.clone())

        step = eager
        if graph:
            eager()  # warm-up before capture (allocator, kernels)
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                eager()
            torch.cuda.current_stream().wait_stream(s)
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                tok.copy_(m.forward(tok, pos).argmax(-1).view(1, 1))
                pos.add_(1)

            def step():
                g.replay()
                generated.append(tok.clone())
        ms = time_steps(step, a.tokens, a.warmup, torch)
        out += [int(t.item()) for t in generated]
    return {"ms_per_token": statistics.median(ms), "ms_min": min(ms), "ms_max": max(ms), "steps": len(ms), "prefill_s": prefill_s,
            "weight_bytes": m.weight_bytes(), "peak_bytes": torch.cuda.max_memory_allocated(), "tokens": out[:32],
            "context": len(prompt)}


def run_transformers(a, prompt, torch):
    import transformers
    m = transformers.AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.bfloat16, attn_implementation="sdpa").cuda().eval()
    ids = torch.tensor([prompt], device="cuda")
    torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode():
        m.generate(ids, max_new_tokens=4, do_sample=False)  # warm-up
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        m.generate(ids, max_new_tokens=1, do_sample=False)
        torch.cuda.synchronize()
        one = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = m.generate(ids, max_new_tokens=a.tokens + 1, min_new_tokens=a.tokens + 1, do_sample=False)
        torch.cuda.synchronize()
        total = time.perf_counter() - t0
    ms = 1e3 * (total - one) / a.tokens  # the prefill and first token (the 1-token call) taken out
    return {"ms_per_token": ms, "steps": a.tokens, "prefill_s": one, "peak_bytes": torch.cuda.max_memory_allocated(),
            "tokens": out[0, len(prompt):len(prompt) + 32].tolist(), "context": len(prompt), "transformers": transformers.__version__}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--text", required=True)
    ap.add_argument("--prompt", type=int, default=512, help="prompt tokens (the context the steps decode after)")
    ap.add_argument("--tokens", type=int, default=128, help="timed decode steps")
    ap.add_argument("--warmup", type=int, default=8)
    ap.add_argument("--peers", default="torch_graph,torch_int4_graph,torch_eager,transformers")
    ap.add_argument("--json")
    a = ap.parse_args()
    import torch
    from tokenizers import Tokenizer
    if not torch.cuda.is_available():
        sys.exit("torch_decode.py: no CUDA GPU")
    config = json.load(open(os.path.join(a.model, "config.json")))
    ids = Tokenizer.from_file(os.path.join(a.model, "tokenizer.json")).encode(open(a.text, encoding="utf-8").read()[:400000],
                                                                             add_special_tokens=False).ids
    prompt = [config.get("bos_token_id") or 0] + ids[:a.prompt - 1]
    lines = []
    for peer in a.peers.split(","):
        torch.cuda.empty_cache()
        if peer == "torch_eager":
            r = run_plain(a, prompt, False, False, torch)
        elif peer == "torch_graph":
            r = run_plain(a, prompt, False, True, torch)
        elif peer == "torch_int4_graph":
            r = run_plain(a, prompt, True, True, torch)
        elif peer == "transformers":
            r = run_transformers(a, prompt, torch)
        else:
            sys.exit(f"torch_decode.py: unknown peer {peer} (torch_eager, torch_graph, torch_int4_graph, transformers)")
        r.update(peer=peer, model=a.model, gpu=torch.cuda.get_device_name(), torch=torch.__version__)
        print(json.dumps(r), flush=True)
        lines.append(r)
    if a.json:
        with open(a.json, "w") as f:
            f.write("".join(json.dumps(r) + "\n" for r in lines))


if __name__ == "__main__":
    main()
