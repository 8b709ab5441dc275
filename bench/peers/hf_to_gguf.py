#!/usr/bin/env python3
"""A Hugging Face Llama folder (safetensors, byte-level BPE tokenizer.json) as an fp32 GGUF, for the peers that
read GGUF only (llama.cpp's llama-imatrix and llama-quantize; tqbench export's GGUF writer copies a GGUF source).

llama.cpp's own converter needs PyTorch, which the development VM does not have; this one needs numpy and PyPI's
gguf. It writes what a llama-architecture GGUF holds: the hyperparameters, the tokenizer as "gpt2" BPE (tokens,
types, merges; the GPT-2 pre-tokenizer, which is what a ByteLevel pre-tokenizer with its default regex is), and the
tensors under GGUF's names in fp32. Q and K rows are reordered per head from Hugging Face's rotate-half RoPE pairing
(i, i + d/2) to GGUF's adjacent pairing (2i, 2i + 1), as GGUF's llama layout expects.

    hf_to_gguf.py FOLDER OUT.gguf

Checked by running tqbench's perplexity on FOLDER and on OUT.gguf (bench/peers/imatrix_peer.sh does)."""
import json
import struct
import sys
from pathlib import Path

import numpy as np

try:
    import gguf
except ImportError:
    sys.exit("hf_to_gguf.py: needs PyPI's gguf (scripts/setup.sh puts it in .venv: run with .venv/bin/python)")


def read_safetensors(path):
    """{name: float32 array} of one safetensors file (F32, F16 or BF16 tensors)."""
    raw = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        buf = raw[base + a:base + b]
        dt = info["dtype"]
        if dt == "BF16":
            v = (np.frombuffer(buf, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
        elif dt == "F16":
            v = np.frombuffer(buf, dtype=np.float16).astype(np.float32)
        elif dt == "F32":
            v = np.frombuffer(buf, dtype=np.float32).copy()
        else:
            sys.exit(f"hf_to_gguf.py: {path}: tensor {name} has dtype {dt}; F32, F16 or BF16 expected")
        out[name] = v.reshape(info["shape"])
    return out


def rope_pairs_adjacent(w, heads):
    """Rows of a q or k projection (heads · d × in) from the rotate-half pairing to the adjacent one, per head."""
    d = w.shape[0] // heads
    return w.reshape(heads, 2, d // 2, -1).swapaxes(1, 2).reshape(w.shape)


def main(argv):
    if len(argv) != 3:
        print(__doc__)
        return 2
    folder, out = Path(argv[1]), argv[2]
    cfg = json.loads((folder / "config.json").read_text())
    if cfg.get("model_type") != "llama":
        sys.exit(f"hf_to_gguf.py: {folder}/config.json: model_type {cfg.get('model_type')!r}; only 'llama' is converted")
    tensors = {}
    for f in sorted(folder.glob("*.safetensors")):
        tensors.update(read_safetensors(f))
    n_head, n_kv, dim = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["hidden_size"]
    head_dim = cfg.get("head_dim", dim // n_head)
    rope_theta = cfg.get("rope_theta", cfg.get("rope_parameters", {}).get("rope_theta", 10000.0))

    w = gguf.GGUFWriter(out, "llama")
    w.add_name(folder.name)
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(dim)
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(float(rope_theta))
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_vocab_size(cfg["vocab_size"])
    w.add_file_type(gguf.LlamaFileType.ALL_F32)

    tok = json.loads((folder / "tokenizer.json").read_text())
    model = tok["model"]
    if model["type"] != "BPE" or (tok.get("pre_tokenizer") or {}).get("type") != "ByteLevel":
        sys.exit(f"hf_to_gguf.py: {folder}/tokenizer.json: a byte-level BPE tokenizer expected")
    vocab = sorted(model["vocab"].items(), key=lambda kv: kv[1])
    special = {t["id"] for t in tok.get("added_tokens", []) if t.get("special")}
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list([t for t, _ in vocab])
    w.add_token_types([gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL for _, i in vocab])
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    w.add_token_merges(merges)
    tcfg = json.loads((folder / "tokenizer_config.json").read_text()) if (folder / "tokenizer_config.json").exists() else {}
    if cfg.get("bos_token_id") is not None:
        w.add_bos_token_id(cfg["bos_token_id"])
    if cfg.get("eos_token_id") is not None:
        w.add_eos_token_id(cfg["eos_token_id"])
    w.add_add_bos_token(bool(tcfg.get("add_bos_token", True)))

    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight", "lm_head.weight": "output.weight"}
    per_layer = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
                 "self_attn.o_proj": "attn_output", "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
                 "mlp.down_proj": "ffn_down"}
    for name, v in tensors.items():
        if name in names:
            target = names[name]
        else:
            parts = name.split(".")
            if len(parts) < 5 or parts[0] != "model" or parts[1] != "layers":
                sys.exit(f"hf_to_gguf.py: tensor {name} has no GGUF name here")
            key = ".".join(parts[3:-1])
            if key not in per_layer:
                sys.exit(f"hf_to_gguf.py: tensor {name} has no GGUF name here")
            target = f"blk.{parts[2]}.{per_layer[key]}.{parts[-1]}"
            if key == "self_attn.q_proj":
                v = rope_pairs_adjacent(v, n_head)
            elif key == "self_attn.k_proj":
                v = rope_pairs_adjacent(v, n_kv)
        w.add_tensor(target, np.ascontiguousarray(v, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"{out}: {len(tensors)} tensors, fp32")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
