#!/usr/bin/env python3
"""Writes a seeded random-weight Llama as a Hugging Face folder (bf16, sharded safetensors, config.json,
tokenizer.json): a model of a real model's shapes for speed and memory measurements of the GPU forward
(issue 24), made on the GPU machine itself (16 GB for Llama-3-8B's shapes, which no carry folder holds).

    python3 bench/make_random_llama.py --shape llama3-8b --out /tmp/llama3-8b-random --tokenizer-from carry/books-14m

Weights are N(0, 0.02²) (norms 1), drawn with torch's generator from --seed on the device (CUDA when there is
one), so the same seed gives the same folder. The tokenizer is copied from --tokenizer-from (its ids must be
below the vocabulary size: books-14m's 4,096-token vocabulary fits every shape here); tokens are only ids to a
random model, so any text through it measures speed and agreement. Needs torch and safetensors (what
transformers installs).
"""
import argparse
import json
import os
import shutil
import sys

SHAPES = {
    # Meta-Llama-3-8B's config.json: the shapes that matter for speed and memory.
    "llama3-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                      num_key_value_heads=8, head_dim=128, vocab_size=128256, rope_theta=500000.0,
                      max_position_embeddings=8192, rms_norm_eps=1e-5, tie_word_embeddings=False),
    # A quick one for checking the scripts.
    "tiny": dict(hidden_size=256, intermediate_size=768, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=64, vocab_size=4096, rope_theta=10000.0,
                 max_position_embeddings=2048, rms_norm_eps=1e-5, tie_word_embeddings=False),
}


def tensor_shapes(c):
    h, i, v = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
    q, kv = c["num_attention_heads"] * c["head_dim"], c["num_key_value_heads"] * c["head_dim"]
    out = [("model.embed_tokens.weight", (v, h))]
    for l in range(c["num_hidden_layers"]):
        p = f"model.layers.{l}."
        out += [(p + "input_layernorm.weight", (h,)), (p + "post_attention_layernorm.weight", (h,)),
                (p + "self_attn.q_proj.weight", (q, h)), (p + "self_attn.k_proj.weight", (kv, h)),
                (p + "self_attn.v_proj.weight", (kv, h)), (p + "self_attn.o_proj.weight", (h, q)),
                (p + "mlp.gate_proj.weight", (i, h)), (p + "mlp.up_proj.weight", (i, h)),
                (p + "mlp.down_proj.weight", (h, i))]
    out.append(("model.norm.weight", (h,)))
    if not c["tie_word_embeddings"]:
        out.append(("lm_head.weight", (v, h)))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="llama3-8b")
    ap.add_argument("--layers", type=int, help="override the number of layers (a shorter model of the same widths)")
    ap.add_argument("--out", required=True, help="folder to write (must not exist, or be empty)")
    ap.add_argument("--tokenizer-from", required=True, help="a Hugging Face folder whose tokenizer.json is copied")
    ap.add_argument("--max-positions", type=int, help="override max_position_embeddings (long-context decode: Llama-3.1's 131072)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shard-gb", type=float, default=5.0, help="shard size in GB")
    a = ap.parse_args()
    try:
        import torch
        from safetensors.torch import save_file
    except ImportError as e:
        sys.exit(f"make_random_llama.py: needs torch and safetensors ({e})")
    tok = os.path.join(a.tokenizer_from, "tokenizer.json")
    if not os.path.isfile(tok):
        sys.exit(f"make_random_llama.py: --tokenizer-from {a.tokenizer_from}: no tokenizer.json there")
    if os.path.exists(a.out) and os.listdir(a.out):
        sys.exit(f"make_random_llama.py: --out {a.out} exists and is not empty")
    os.makedirs(a.out, exist_ok=True)
    c = dict(SHAPES[a.shape])
    if a.layers:
        c["num_hidden_layers"] = a.layers
    if a.max_positions:
        c["max_position_embeddings"] = a.max_positions
    config = dict(architectures=["LlamaForCausalLM"], model_type="llama", hidden_act="silu", attention_bias=False,
                  mlp_bias=False, bos_token_id=0, eos_token_id=0, dtype="bfloat16", torch_dtype="bfloat16",
                  rope_parameters={"rope_theta": c["rope_theta"], "rope_type": "default"}, **c)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    gen = torch.Generator(device=device).manual_seed(a.seed)
    shards, current, size, index = [], {}, 0, {}
    limit = int(a.shard_gb * 1e9)

    def flush():
        nonlocal current, size
        if current:
            shards.append(current)
            current, size = {}, 0

    shapes = tensor_shapes(c)
    for name, shape in shapes:
        if name.endswith("norm.weight"):
            t = torch.ones(shape, dtype=torch.bfloat16, device=device)
        else:
            t = (torch.randn(shape, generator=gen, device=device, dtype=torch.float32) * 0.02).to(torch.bfloat16)
        nbytes = t.numel() * 2
        if size and size + nbytes > limit:
            flush()
        current[name] = t.cpu()
        size += nbytes
    flush()
    total = 0
    for k, shard in enumerate(shards):
        fname = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, os.path.join(a.out, fname), metadata={"format": "pt"})
        for name, t in shard.items():
            index[name] = fname
            total += t.numel() * 2
    with open(os.path.join(a.out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": index}, f, indent=1)
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
    shutil.copy(tok, os.path.join(a.out, "tokenizer.json"))
    params = sum(int(torch.tensor(s).prod()) if len(s) else 1 for _, s in shapes)
    print(f"{a.out}: {a.shape} ({c['num_hidden_layers']} layers), {params / 1e9:.3f} B parameters, "
          f"{total / 1e9:.2f} GB bf16 in {len(shards)} shards, seed {a.seed}")


if __name__ == "__main__":
    main()
