#!/usr/bin/env python3
"""Perplexity forward of a Hugging Face Llama folder on the GPU by the peers tqbench's GPU path is measured
against (issue 24): plain PyTorch (a Llama forward written here over torch ops: embedding, RMSNorm, RoPE,
scaled_dot_product_attention with GQA, SwiGLU) and transformers' LlamaForCausalLM, on the same tokens in the
same call. Prints one JSON line per peer: perplexity, tokens/s, peak GPU bytes.

    python3 bench/peers/torch_perplexity.py --model DIR --text FILE --ctx 2048 --chunks 16 --batch 4 [--fp32]

Scoring is llama.cpp's and tqbench's `llamacpp` method: where the tokenizer adds BOS (tokenizer_config.json's
add_bos_token; absent: no) the stream starts with BOS and each chunk's first token is replaced by it, otherwise
the chunks are the text's tokens as they are; the logits of positions ctx/2 .. ctx-2 are scored against the next
token (llama-perplexity's set). (Replacing the first token by BOS without the tokenizer asking for it, as this
script did before, moved the random 8B folder's perplexity by 0.6% from tqbench's on the same text.) Both peers compute
logits only for the scored positions (transformers' logits_to_keep), so the output head costs them what it
costs tqbench. Timing: CUDA-synchronized wall time over every chunk after one untimed warm-up batch; the
weights load first, untimed. Runs where torch, transformers and safetensors are (the GPU machine).
"""
import argparse
import json
import math
import os
import sys
import time


def load_weights(folder, dtype, device):
    from safetensors.torch import load_file
    index = os.path.join(folder, "model.safetensors.index.json")
    files = sorted(set(json.load(open(index))["weight_map"].values())) if os.path.exists(index) else ["model.safetensors"]
    w = {}
    for f in files:
        for k, t in load_file(os.path.join(folder, f), device=device).items():
            w[k] = t.to(dtype)
    return w


class PlainLlama:
    """The Llama forward over torch ops (Llama-3 style: rotate-half RoPE, GQA, SwiGLU, untied or tied head)."""

    def __init__(self, folder, dtype, device):
        import torch
        self.c = json.load(open(os.path.join(folder, "config.json")))
        self.w = load_weights(folder, dtype, device)
        c = self.c
        self.hd = c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]
        theta = c.get("rope_theta") or c.get("rope_parameters", {}).get("rope_theta", 10000.0)
        self.inv_freq = 1.0 / (theta ** (torch.arange(0, self.hd, 2, device=device, dtype=torch.float32) / self.hd))
        self.head = self.w.get("lm_head.weight", self.w["model.embed_tokens.weight"])
        self.dtype = dtype

    def rms(self, x, w):
        import torch
        v = x.float().pow(2).mean(-1, keepdim=True)
        return w * (x.float() * torch.rsqrt(v + self.c["rms_norm_eps"])).to(x.dtype)

    def forward(self, ids, keep):
        import torch
        import torch.nn.functional as F
        c, w, hd = self.c, self.w, self.hd
        B, T = ids.shape
        nh, nkv = c["num_attention_heads"], c["num_key_value_heads"]
        x = w["model.embed_tokens.weight"][ids]
        pos = torch.arange(T, device=ids.device, dtype=torch.float32)
        ang = torch.outer(pos, self.inv_freq)
        cos = torch.cat([ang.cos(), ang.cos()], -1).to(self.dtype)
        sin = torch.cat([ang.sin(), ang.sin()], -1).to(self.dtype)

        def rope(t):
            t1, t2 = t[..., : hd // 2], t[..., hd // 2:]
            return t * cos + torch.cat([-t2, t1], -1) * sin

        for l in range(c["num_hidden_layers"]):
            p = f"model.layers.{l}."
            h = self.rms(x, w[p + "input_layernorm.weight"])
            q = (h @ w[p + "self_attn.q_proj.weight"].T).view(B, T, nh, hd).transpose(1, 2)
            k = (h @ w[p + "self_attn.k_proj.weight"].T).view(B, T, nkv, hd).transpose(1, 2)
            v = (h @ w[p + "self_attn.v_proj.weight"].T).view(B, T, nkv, hd).transpose(1, 2)
            a = F.scaled_dot_product_attention(rope(q), rope(k), v, is_causal=True, enable_gqa=True)
            x = x + a.transpose(1, 2).reshape(B, T, nh * hd) @ w[p + "self_attn.o_proj.weight"].T
            h = self.rms(x, w[p + "post_attention_layernorm.weight"])
            g = F.silu(h @ w[p + "mlp.gate_proj.weight"].T) * (h @ w[p + "mlp.up_proj.weight"].T)
            x = x + g @ w[p + "mlp.down_proj.weight"].T
        x = self.rms(x[:, -keep:], w["model.norm.weight"])
        return x @ self.head.T


def adds_bos(model):
    """tokenizer_config.json's add_bos_token, as tqbench's tokenizer reads it (absent: False)."""
    path = os.path.join(model, "tokenizer_config.json")
    return bool(json.load(open(path)).get("add_bos_token", False)) if os.path.isfile(path) else False


def chunks_of(tokens, ctx, n, bos):
    """llama-perplexity's chunks: with a BOS (bos not None) the stream starts with it and so does every chunk."""
    if bos is not None:
        tokens = [bos] + list(tokens)
    out = []
    for k in range(n):
        c = list(tokens[k * ctx:(k + 1) * ctx])
        if bos is not None:
            c[0] = bos
        out.append(c)
    return out


def run(name, forward, batches, ctx, torch):
    # llama-perplexity's (and tqbench's) scored set: the logits of positions ctx/2 .. ctx - 2 predict tokens
    # ctx/2 + 1 .. ctx - 1 (ctx/2 - 1 tokens per chunk); the last position's logits are computed and unused.
    first = ctx // 2
    keep = ctx - first
    nll, count = 0.0, 0
    with torch.inference_mode():
        forward(batches[0], keep)  # warm-up (kernels, allocator)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        outs = [forward(b, keep) for b in batches]
        torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        for b, logits in zip(batches, outs):
            lp = torch.log_softmax(logits[:, :-1].float(), -1)
            target = b[:, first + 1:]
            nll -= lp.gather(-1, target.unsqueeze(-1)).sum().item()
            count += target.numel()
    tokens = sum(b.numel() for b in batches)
    return {"peer": name, "ppl": math.exp(nll / count), "scored": count, "tokens": tokens,
            "tokens_per_s": tokens / seconds, "seconds": seconds, "peak_bytes": torch.cuda.max_memory_allocated()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--text", required=True, help="text file, tokenized with the folder's tokenizer.json")
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--chunks", type=int, default=16)
    ap.add_argument("--batch", type=int, default=4, help="chunks per forward")
    ap.add_argument("--fp32", action="store_true", help="compute in fp32 (the agreement reference) instead of bf16")
    ap.add_argument("--peers", default="torch,transformers")
    ap.add_argument("--json", help="also write the lines here")
    a = ap.parse_args()
    import torch
    from tokenizers import Tokenizer
    if not torch.cuda.is_available():
        sys.exit("torch_perplexity.py: no CUDA GPU")
    dtype = torch.float32 if a.fp32 else torch.bfloat16
    config = json.load(open(os.path.join(a.model, "config.json")))
    bos = (config.get("bos_token_id") or 0) if adds_bos(a.model) else None
    ids = Tokenizer.from_file(os.path.join(a.model, "tokenizer.json")).encode(open(a.text, encoding="utf-8").read(),
                                                                             add_special_tokens=False).ids
    n = min(a.chunks, (len(ids) + (bos is not None)) // a.ctx)
    if n < 1:
        sys.exit(f"torch_perplexity.py: {a.text} has {len(ids)} tokens, fewer than one chunk of {a.ctx}")
    chunks = chunks_of(ids, a.ctx, n, bos)
    batches = [torch.tensor(chunks[i:i + a.batch], device="cuda") for i in range(0, n, a.batch)]
    lines = []
    gpu = torch.cuda.get_device_name()
    for peer in a.peers.split(","):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        if peer == "torch":
            m = PlainLlama(a.model, dtype, "cuda")
            forward = m.forward
        elif peer == "transformers":
            import transformers
            m = transformers.AutoModelForCausalLM.from_pretrained(a.model, dtype=dtype, attn_implementation="sdpa").cuda().eval()
            forward = lambda b, keep: m(input_ids=b, logits_to_keep=keep, use_cache=False).logits
        else:
            sys.exit(f"torch_perplexity.py: unknown peer {peer} (torch, transformers)")
        torch.cuda.synchronize()
        load_s = time.perf_counter() - t0
        r = run(peer, forward, batches, a.ctx, torch)
        r.update(model=a.model, ctx=a.ctx, chunks=n, batch=a.batch, dtype="fp32" if a.fp32 else "bf16", load_s=load_s,
                 gpu=gpu, torch=torch.__version__)
        if peer == "transformers":
            r["transformers"] = transformers.__version__
        print(json.dumps(r), flush=True)
        lines.append(r)
        del m, forward
    if a.json:
        with open(a.json, "w") as f:
            f.write("".join(json.dumps(r) + "\n" for r in lines))


if __name__ == "__main__":
    main()
