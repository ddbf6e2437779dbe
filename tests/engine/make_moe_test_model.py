#!/usr/bin/env python3
"""Writes the batching test's mixture-of-experts model (a ctest fixture): bench/make_moe_model.py's tiny
Qwen3-MoE shape, two layers, quantized to Q4_K_M by `ferrum quantize` (Q4_K and Q6_K expert stacks).

  make_moe_test_model.py OUT.gguf   (FERRUM_BIN: the ferrum binary)"""
import os
import subprocess
import sys

try:
    import gguf  # noqa: F401  (bench/make_moe_model.py writes with it)
    import numpy  # noqa: F401
except ImportError as e:  # reference libraries missing: skip (ctest code 77)
    print(f"skip: {e}")
    sys.exit(77)

out = sys.argv[1]
writer = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench", "make_moe_model.py")
f16 = out + ".f16.gguf"
subprocess.run([sys.executable, writer, f16, "--shape", "tiny", "--layers", "2"], check=True)
subprocess.run([os.environ["FERRUM_BIN"], "quantize", f16, out, "Q4_K_M"], check=True)
os.remove(f16)
