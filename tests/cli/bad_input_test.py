#!/usr/bin/env python3
"""Corrupt or inconsistent model files give one clear error line (naming the file and the field or
tensor), a non-zero exit code, and no crash. Broken files are made in a temp folder from the shared
fixtures with PyPI `gguf` and plain byte edits."""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

try:
    import gguf
    import numpy as np
except ImportError as e:
    print(f"skip: {e}")
    sys.exit(77)

FERRUM = os.environ["FERRUM_BIN"]
SHARED = os.environ.get("FERRUM_SHARED") or os.environ["FERRUM_SHARED_DEFAULT"]
SYNTH = os.path.join(SHARED, "fixtures", "gguf", "synth", "synth-llama-f32.gguf")
HF = os.path.join(SHARED, "fixtures", "hf", "qwen3")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from pycheck import check, summary  # noqa: E402


def expect_error(args, *needles):
    p = subprocess.run([FERRUM] + args, capture_output=True, text=True)
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    ok = p.returncode == 1 and len(lines) == 1 and all(n in lines[0] for n in needles)
    check(ok, " ".join(args[:3]) + f" -> rc={p.returncode} {lines}")


def write_gguf(path, arch="llama", drop=None, reshape=None):
    """Rewrites the synth model with gguf-py: optionally another architecture name, a tensor
    dropped, or a tensor given a wrong shape."""
    r = gguf.GGUFReader(SYNTH)
    w = gguf.GGUFWriter(path, arch)
    for f in r.fields.values():
        if f.name.startswith("GGUF.") or f.name == "general.architecture":
            continue
        if f.name.startswith("llama."):
            name = arch + f.name[len("llama"):]
        else:
            name = f.name
        vt = f.types[0]
        if vt == gguf.GGUFValueType.ARRAY:
            continue
        w.add_key_value(name, f.contents(), vt)
    for t in r.tensors:
        if t.name == drop:
            continue
        data = np.array(t.data)
        if t.name == reshape:
            data = data.reshape(-1)[: data.size // 2].reshape(data.shape[0] // 2, -1)
        w.add_tensor(t.name, data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    if not os.path.exists(SYNTH) or not os.path.isdir(HF):
        print("skip: no fixtures")
        return 77
    tmp = tempfile.mkdtemp(prefix="ferrum-bad-")
    data = open(SYNTH, "rb").read()

    p = os.path.join(tmp, "truncated.gguf")
    open(p, "wb").write(data[:1000])
    expect_error(["info", p], p, "truncated")
    expect_error(["logits", "-m", p, "--tokens", "1", "-o", os.path.join(tmp, "x.npy")], p)

    p = os.path.join(tmp, "magic.gguf")
    open(p, "wb").write(b"GGUX" + data[4:])
    expect_error(["info", p], p, "magic")

    p = os.path.join(tmp, "cut-data.gguf")
    open(p, "wb").write(data[: len(data) - 4096])
    expect_error(["info", p], p, "output.weight", "past end of file")

    p = os.path.join(tmp, "unknown-arch.gguf")
    write_gguf(p, arch="mamba9")
    expect_error(["info", p], p, "mamba9", "general.architecture")

    p = os.path.join(tmp, "missing.gguf")
    write_gguf(p, drop="blk.1.ffn_up.weight")
    expect_error(["logits", "-m", p, "--tokens", "1,2", "-o", os.path.join(tmp, "x.npy")], p, "blk.1.ffn_up.weight")

    p = os.path.join(tmp, "shape.gguf")
    write_gguf(p, reshape="blk.0.attn_k.weight")
    expect_error(["logits", "-m", p, "--tokens", "1,2", "-o", os.path.join(tmp, "x.npy")], p, "blk.0.attn_k.weight",
                 "shape")

    d = os.path.join(tmp, "badcfg")
    shutil.copytree(HF, d)
    cfg = json.load(open(os.path.join(d, "config.json")))
    cfg["num_attention_heads"] = "four"
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
    expect_error(["info", d], "config.json", "num_attention_heads")
    open(os.path.join(d, "config.json"), "w").write("{not json")
    expect_error(["info", d], "config.json", "JSON")
    cfg["num_attention_heads"] = 4
    cfg["num_key_value_heads"] = 3
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
    expect_error(["info", d], "config.json", "num_key_value_heads")

    expect_error(["info", os.path.join(tmp, "nope.gguf")], "nope.gguf")
    expect_error(["logits", "-m", SYNTH, "--tokens", "1,x", "-o", os.path.join(tmp, "x.npy")], "'x'")
    expect_error(["logits", "-m", SYNTH, "--tokens", "1,512", "-o", os.path.join(tmp, "x.npy")], "512", "vocabulary")
    # GPU options with a host backend are errors, not silently ignored.
    bench = ["bench", "-m", SYNTH, "-p", "8", "-n", "0", "-r", "1", "--backend", "cpu"]
    expect_error(bench + ["--device", "1"], "--device", "cuda backend")
    expect_error(bench + ["--gpu-memory-utilization", "0.5"], "--gpu-memory-utilization", "GPU backend")
    return summary()


if __name__ == "__main__":
    sys.exit(main())
