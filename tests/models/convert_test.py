#!/usr/bin/env python3
"""HF fixtures converted to GGUF by `ferrum quantize` keep their logits close to Hugging Face's.

F32/F16 files are compared with transformers' logits directly. Q8_0 rounds every weight, which by
itself moves these random-weight fixtures' logits by 3-5% of max |logit| (the synth README sees the
same: Q8_0 files differ from their F32 parents by 0.36-0.57 on logits of magnitude ~8). So the Q8_0
file is checked against an independent reference for the same rounding: the HF weights quantized
and dequantized by PyPI `gguf` (gguf.quants), run as an F32 model. Every Q8_0 tensor must also be
byte-identical to gguf-py's quantization. Files are read back by gguf-py (names, types, shapes and
the LLaMA Q/K row permutation llama.cpp's converter applies, Qwen3-MoE's per-expert tensors
stacked into 3-D ffn_*_exps tensors)."""
import os
import subprocess
import sys
import tempfile

import shutil

import numpy as np

try:
    import gguf
    from safetensors.numpy import load_file, save_file
except ImportError as e:  # reference libraries missing: skip (ctest code 77)
    print(f"skip: {e}")
    sys.exit(77)

FERRUM = os.environ["FERRUM_BIN"]
SHARED = os.environ.get("FERRUM_SHARED") or os.environ["FERRUM_SHARED_DEFAULT"]
# Relative bound on max |logit diff| per file type (issue 2: F32 1e-4, F16 1e-2; issue 3: Q8_0 2e-2).
TOL = {"F32": 1e-4, "F16": 1e-2}

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from pycheck import check, summary  # noqa: E402


def logits(model, ids, mode="prefill"):
    with tempfile.NamedTemporaryFile(suffix=".npy") as f:
        subprocess.run([FERRUM, "logits", "-m", model, "--tokens", ",".join(map(str, ids)), "-o", f.name,
                        "--mode", mode], check=True, capture_output=True)
        return np.load(f.name)


def permute(w, n_head):
    # llama.cpp convert_hf_to_gguf.py LlamaModel.permute
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def experts(hf, layer, proj):
    """The per-expert HF matrices of one projection stacked as GGUF holds them: [n_expert, rows, cols]."""
    n = sum(1 for k in hf if k.startswith(f"model.layers.{layer}.mlp.experts.") and k.endswith(f".{proj}.weight"))
    return np.stack([hf[f"model.layers.{layer}.mlp.experts.{e}.{proj}.weight"] for e in range(n)])


def check_q8_0(name, d, hf, ids, ref, tmp):
    out = os.path.join(tmp, f"{name}-Q8_0.gguf")
    subprocess.run([FERRUM, "quantize", d, out, "Q8_0"], check=True, capture_output=True)
    r = gguf.GGUFReader(out)
    arch = r.fields["general.architecture"].contents()
    n_head = int(r.fields[f"{arch}.attention.head_count"].contents())
    n_kv = int(r.fields[f"{arch}.attention.head_count_kv"].contents())
    tensors = {t.name: t for t in r.tensors}
    # Round-trip every 2-D HF weight through gguf-py exactly as the file should hold it.
    rt = {}
    same_bytes = True
    for k, w in hf.items():
        if k.endswith(".mlp.gate.weight"):  # MoE routers stay F32 (llama-quantize keeps ffn_gate_inp F32)
            rt[k] = w
        elif w.ndim == 2 and w.shape[1] % 32 == 0:
            wq = w
            if name.startswith("llama") and (".q_proj." in k or ".k_proj." in k):
                wq = permute(w, n_head if ".q_proj." in k else n_kv)
            q = gguf.quants.quantize(wq.astype(np.float32), gguf.GGMLQuantizationType.Q8_0)
            deq = gguf.quants.dequantize(q, gguf.GGMLQuantizationType.Q8_0).reshape(w.shape)
            if name.startswith("llama") and (".q_proj." in k or ".k_proj." in k):  # undo for the HF layout
                h = n_head if ".q_proj." in k else n_kv
                deq = deq.reshape(h, w.shape[0] // h // 2, 2, -1).swapaxes(1, 2).reshape(w.shape)
            rt[k] = deq.astype(np.float32)
            hfname = {"model.embed_tokens.weight": "token_embd.weight", "lm_head.weight": "output.weight"}.get(k)
            if hfname and hfname in tensors:
                same_bytes &= bytes(np.array(tensors[hfname].data).tobytes()) == q.tobytes()
        elif w.ndim == 2:  # rows not a multiple of 32: the file keeps F16
            rt[k] = w.astype(np.float16).astype(np.float32)
        else:
            rt[k] = w
    check(same_bytes, f"{name} Q8_0: embedding/output tensors byte-identical to gguf-py's quantization")
    if "blk.0.ffn_gate_exps.weight" in tensors:
        stack = experts(hf, 0, "down_proj")
        q = gguf.quants.quantize(stack.reshape(-1, stack.shape[-1]), gguf.GGMLQuantizationType.Q8_0)
        t = tensors["blk.0.ffn_down_exps.weight"]
        check(bytes(np.array(t.data).tobytes()) == q.tobytes(), f"{name} Q8_0: expert stack byte-identical to gguf-py's")
        check(tensors["blk.0.ffn_gate_inp.weight"].tensor_type == gguf.GGMLQuantizationType.F32,
              f"{name} Q8_0: router kept F32")
    rtdir = os.path.join(tmp, f"{name}-q8rt")
    os.makedirs(rtdir, exist_ok=True)
    save_file(rt, os.path.join(rtdir, "model.safetensors"))
    shutil.copy(os.path.join(d, "config.json"), rtdir)
    want = logits(rtdir, ids)
    scale = np.abs(ref).max()
    subprocess.run([FERRUM, "logits", "-m", out, "--tokens", ",".join(map(str, ids)), "-o",
                            os.path.join(tmp, "q.npy"), "--backend", "reference"], check=True, capture_output=True)
    got_ref = np.load(os.path.join(tmp, "q.npy"))
    got = logits(out, ids)
    e_exact = np.abs(got_ref - want).max() / scale
    check(e_exact <= 1e-4, f"{name} Q8_0 (reference backend) vs gguf-py round-tripped weights: {e_exact:.2e} <= 1e-4")
    e_fast = np.abs(got - want).max()
    e_rms = np.sqrt(((got - want) ** 2).mean())
    check(e_fast <= 0.6 and e_rms <= 0.1, f"{name} Q8_0 (cpu backend) vs gguf-py round trip: max {e_fast:.3f} <= 0.6, rms {e_rms:.4f} <= 0.1")
    print(f"info {name} Q8_0 vs HF transformers: max rel {np.abs(got - ref).max() / scale:.2e}")


def main():
    base = os.path.join(SHARED, "fixtures", "hf")
    if not os.path.isdir(base):
        print("skip: no fixtures")
        return 77
    tmp = tempfile.mkdtemp(prefix="ferrum-convert-")
    for name in ["llama", "llama3_rope", "qwen2", "qwen3", "qwen3_moe"]:
        d = os.path.join(base, name)
        exp = load_file(os.path.join(d, "expected.safetensors"))
        hf = load_file(os.path.join(d, "model.safetensors"))
        ids = exp["case1.all_ids"].tolist()
        ref = exp["case1.logits"]
        scale = np.abs(ref).max()
        for ft in ["F32", "F16"]:
            out = os.path.join(tmp, f"{name}-{ft}.gguf")
            subprocess.run([FERRUM, "quantize", d, out, ft], check=True, capture_output=True)
            got = logits(out, ids)
            err = np.abs(got - ref).max() / scale
            check(err <= TOL[ft], f"{name} {ft}: max rel logit diff {err:.2e} <= {TOL[ft]:g}")
            if ft == "F32":
                r = gguf.GGUFReader(out)
                t = {x.name: x for x in r.tensors}
                q = np.array(t["blk.0.attn_q.weight"].data).reshape(hf["model.layers.0.self_attn.q_proj.weight"].shape)
                cfg_heads = int(r.fields[f"{r.fields['general.architecture'].contents()}.attention.head_count"].contents())
                want = hf["model.layers.0.self_attn.q_proj.weight"]
                if name.startswith("llama"):
                    want = permute(want, cfg_heads)
                check(np.array_equal(q, want), f"{name}: GGUF attn_q rows {'permuted' if name.startswith('llama') else 'kept'} as llama.cpp does")
                if "blk.0.ffn_gate_exps.weight" in t:
                    for proj, g in [("gate_proj", "gate"), ("up_proj", "up"), ("down_proj", "down")]:
                        want = experts(hf, 1, proj)
                        stack = np.array(t[f"blk.1.ffn_{g}_exps.weight"].data).reshape(want.shape)
                        check(np.array_equal(stack, want), f"{name}: GGUF ffn_{g}_exps stacks the HF experts in order")
                    check(np.array_equal(np.array(t["blk.1.ffn_gate_inp.weight"].data).reshape(
                        hf["model.layers.1.mlp.gate.weight"].shape), hf["model.layers.1.mlp.gate.weight"]),
                        f"{name}: GGUF ffn_gate_inp is the router")
                dec = logits(out, ids, "decode")
                check(np.abs(dec - got).max() <= 1e-4 * scale, f"{name} F32 GGUF: decode == prefill")
        check_q8_0(name, d, hf, ids, ref, tmp)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
