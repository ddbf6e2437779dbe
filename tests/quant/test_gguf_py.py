"""Ferrum's dequantizers and quantizers against gguf-py's numpy reference implementation.

argv[1]: the quant_helper executable. Checks, bit for bit:
  * dequantization of random blocks of every type gguf-py can dequantize;
  * dequantization of every tensor of the synthetic GGUF fixtures (as gguf-py reads them);
  * quantization of random data to every type gguf-py can quantize.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
from gguf import GGMLQuantizationType as T, GGUFReader
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize, quantize

HELPER = sys.argv[1]
SHARED = os.environ.get("FERRUM_SHARED") or os.environ.get("FERRUM_SHARED_DEFAULT", "")
TMP = tempfile.mkdtemp(prefix="ferrum_quant_")
failures = []

# Byte offsets of the fp16 scale fields per block, so random blocks hold finite, sensible scales.
FP16_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q8_0: [0],
    T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
}


def helper(*args):
    subprocess.run([HELPER, *args], check=True)


def check(name, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + name + (": " + detail if detail and not ok else ""))
    if not ok:
        failures.append(name)


def random_blocks(rng, qtype, n_blocks):
    block, size = GGML_QUANT_SIZES[qtype]
    if qtype in (T.F16, T.BF16):
        vals = rng.standard_normal(n_blocks * 64).astype(np.float32)
        raw = vals.astype(np.float16) if qtype == T.F16 else quantize(vals, T.BF16)
        return np.frombuffer(raw.tobytes(), dtype=np.uint8)
    raw = rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint8)
    for off in FP16_FIELDS[qtype]:
        scales = (rng.standard_normal(n_blocks) * 0.05).astype(np.float16)
        raw[:, off:off + 2] = scales.view(np.uint8).reshape(n_blocks, 2)
    return raw.reshape(-1)


def check_random_dequant(rng):
    for qtype in [T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q8_0, T.Q4_K, T.Q5_K, T.Q6_K]:
        raw = random_blocks(rng, qtype, 300)
        inp, out = os.path.join(TMP, "in.bin"), os.path.join(TMP, "out.f32")
        raw.tofile(inp)
        helper("dequant", qtype.name, inp, out)
        ours = np.fromfile(out, dtype=np.float32)
        ref = dequantize(raw, qtype).reshape(-1).astype(np.float32)
        same = ours.shape == ref.shape and np.array_equal(ours, ref)
        check(f"dequant random {qtype.name}", same,
              f"max |diff| {np.max(np.abs(ours - ref)) if ours.shape == ref.shape else 'shape'}")


def check_gguf_files():
    synth = os.path.join(SHARED, "fixtures/gguf/synth")
    files = sorted(f for f in os.listdir(synth) if f.endswith(".gguf")) if os.path.isdir(synth) else []
    if not files:
        print("skip: no synthetic GGUF fixtures under", synth)
        return
    for f in files:
        outdir = os.path.join(TMP, f)
        os.makedirs(outdir, exist_ok=True)
        helper("dequant-gguf", os.path.join(synth, f), outdir)
        bad = []
        tensors = GGUFReader(os.path.join(synth, f)).tensors
        for t in tensors:
            ref = dequantize(t.data, t.tensor_type).reshape(-1).astype(np.float32)
            ours = np.fromfile(os.path.join(outdir, t.name + ".f32"), dtype=np.float32)
            if ours.shape != ref.shape or not np.array_equal(ours, ref):
                bad.append(t.name)
        check(f"dequant {f} ({len(tensors)} tensors)", not bad, ", ".join(bad))


def check_quantize(rng):
    data = (rng.standard_normal(256 * 64) * rng.uniform(0.01, 3.0, size=256 * 64)).astype(np.float32)
    data[:32] = 0.0  # an all-zero block
    data[32:64] = np.linspace(-1, 1, 32, dtype=np.float32)  # ties of the rounding rules
    data[64:96] = 0.5  # constant block
    for qtype in [T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q8_0]:
        inp, out = os.path.join(TMP, "in.f32"), os.path.join(TMP, "out.bin")
        data.tofile(inp)
        helper("quant", qtype.name, inp, out)
        ours = np.fromfile(out, dtype=np.uint8)
        ref = np.frombuffer(quantize(data, qtype).tobytes(), dtype=np.uint8)
        same = ours.shape == ref.shape and np.array_equal(ours, ref)
        n_bad = int(np.count_nonzero(ours != ref)) if ours.shape == ref.shape else -1
        check(f"quantize {qtype.name} byte-identical", same, f"{n_bad} bytes differ")


def main():
    rng = np.random.default_rng(20240601)
    check_random_dequant(rng)
    check_gguf_files()
    check_quantize(rng)
    print(f"{len(failures)} failed" if failures else "all passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
