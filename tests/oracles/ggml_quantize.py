#!/usr/bin/env python3
"""Test oracle for llama.cpp's legacy block formats: gguf-py's numpy quantizers (PyPI gguf), which
reproduce ggml's reference quantization bit for bit.

    ggml_quantize.py TYPE IN.f32 ROWS COLS OUT.bin

IN.f32: ROWS x COLS float32, row-major. OUT.bin: the quantized blocks, row-major, as a GGUF file stores them.
"""
import sys

import numpy as np
from gguf import GGMLQuantizationType, quants


def main():
    qtype, src, rows, cols, dst = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    x = np.fromfile(src, dtype=np.float32).reshape(rows, cols)
    q = quants.quantize(x, GGMLQuantizationType[qtype.upper()])
    np.ascontiguousarray(q).tofile(dst)


if __name__ == "__main__":
    main()
