#!/usr/bin/env python3
"""Qwen3-MoE configurations the shared fixture does not cover: dense layers (mlp_only_layers,
decoder_sparse_step) and un-normalized expert weights (norm_topk_prob false).

Variants of fixtures/hf/qwen3_moe are written with extra random dense-MLP weights and checked
against an independent float64 numpy forward pass, which itself is first checked against the
fixture's Hugging Face transformers logits. Each variant is also converted to GGUF by
`ferrum quantize` (F32), which must keep the dense layers and the weight normalization."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

try:
    from safetensors.numpy import load_file, save_file
except ImportError as e:  # reference libraries missing: skip (ctest code 77)
    print(f"skip: {e}")
    sys.exit(77)

FERRUM = os.environ["FERRUM_BIN"]
SHARED = os.environ.get("FERRUM_SHARED") or os.environ["FERRUM_SHARED_DEFAULT"]
TOL = 1e-4  # max |logit diff| relative to max |logit|, as for the HF fixtures

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from pycheck import check, summary  # noqa: E402


def rms_norm(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def silu(x):
    return x / (1.0 + np.exp(-x))


def is_moe_layer(cfg, i):
    # transformers' Qwen3MoeDecoderLayer rule
    return i not in cfg["mlp_only_layers"] and cfg["num_experts"] > 0 and (i + 1) % cfg["decoder_sparse_step"] == 0


def forward(cfg, w, ids):
    """Qwen3-MoE logits for every position of `ids`, in float64."""
    w = {k: v.astype(np.float64) for k, v in w.items()}
    eps, hd = cfg["rms_norm_eps"], cfg["head_dim"]
    nh, nkv, k_top = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["num_experts_per_tok"]
    theta = cfg.get("rope_theta") or cfg["rope_parameters"]["rope_theta"]
    T = len(ids)
    x = w["model.embed_tokens.weight"][ids]
    inv = 1.0 / theta ** (np.arange(0, hd, 2) / hd)
    ang = np.arange(T)[:, None] * inv[None, :]
    cos, sin = np.cos(np.concatenate([ang, ang], -1)), np.sin(np.concatenate([ang, ang], -1))

    def rope(v):  # [T, heads, hd], rotate-half
        rot = np.concatenate([-v[..., hd // 2:], v[..., :hd // 2]], -1)
        return v * cos[:, None, :] + rot * sin[:, None, :]

    mask = np.triu(np.full((T, T), -np.inf), 1)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = rms_norm(x, w[p + "input_layernorm.weight"], eps)
        q = (h @ w[p + "self_attn.q_proj.weight"].T).reshape(T, nh, hd)
        k = (h @ w[p + "self_attn.k_proj.weight"].T).reshape(T, nkv, hd)
        v = (h @ w[p + "self_attn.v_proj.weight"].T).reshape(T, nkv, hd)
        q = rope(rms_norm(q, w[p + "self_attn.q_norm.weight"], eps))
        k = rope(rms_norm(k, w[p + "self_attn.k_norm.weight"], eps))
        k, v = np.repeat(k, nh // nkv, axis=1), np.repeat(v, nh // nkv, axis=1)
        s = np.einsum("thd,shd->hts", q, k) / np.sqrt(hd) + mask
        s = np.exp(s - s.max(-1, keepdims=True))
        a = np.einsum("hts,shd->thd", s / s.sum(-1, keepdims=True), v).reshape(T, nh * hd)
        x = x + a @ w[p + "self_attn.o_proj.weight"].T
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        if is_moe_layer(cfg, i):
            logits = h @ w[p + "mlp.gate.weight"].T
            prob = np.exp(logits - logits.max(-1, keepdims=True))
            prob /= prob.sum(-1, keepdims=True)
            top = np.argsort(-prob, axis=-1, kind="stable")[:, :k_top]
            out = np.zeros_like(h)
            for t in range(T):
                wt = prob[t, top[t]]
                if cfg["norm_topk_prob"]:
                    wt = wt / wt.sum()
                for e, we in zip(top[t], wt):
                    ep = f"{p}mlp.experts.{e}."
                    y = silu(h[t] @ w[ep + "gate_proj.weight"].T) * (h[t] @ w[ep + "up_proj.weight"].T)
                    out[t] += we * (y @ w[ep + "down_proj.weight"].T)
        else:
            out = (silu(h @ w[p + "mlp.gate_proj.weight"].T) * (h @ w[p + "mlp.up_proj.weight"].T)) @ \
                w[p + "mlp.down_proj.weight"].T
        x = x + out
    return rms_norm(x, w["model.norm.weight"], eps) @ w["lm_head.weight"].T


def logits(model, ids):
    with tempfile.NamedTemporaryFile(suffix=".npy") as f:
        subprocess.run([FERRUM, "logits", "-m", model, "--tokens", ",".join(map(str, ids)), "-o", f.name],
                       check=True, capture_output=True)
        return np.load(f.name)


def variant(base_cfg, base_w, tmp, name, rng, **changes):
    """A copy of the fixture with config `changes`; dense layers get random MLP weights, and MoE
    tensors of dense layers are dropped."""
    cfg = dict(base_cfg, **changes)
    w = {}
    for k, v in base_w.items():
        layer = int(k.split(".")[2]) if k.startswith("model.layers.") else None
        if layer is not None and ".mlp." in k and not is_moe_layer(cfg, layer):
            continue
        w[k] = v
    H, I = cfg["hidden_size"], cfg["intermediate_size"]
    for i in range(cfg["num_hidden_layers"]):
        if not is_moe_layer(cfg, i):
            p = f"model.layers.{i}.mlp."
            w[p + "gate_proj.weight"] = (rng.standard_normal((I, H)) * 0.05).astype(np.float32)
            w[p + "up_proj.weight"] = (rng.standard_normal((I, H)) * 0.05).astype(np.float32)
            w[p + "down_proj.weight"] = (rng.standard_normal((H, I)) * 0.05).astype(np.float32)
    d = os.path.join(tmp, name)
    os.makedirs(d)
    save_file(w, os.path.join(d, "model.safetensors"))
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f)
    return cfg, w, d


def main():
    base = os.path.join(SHARED, "fixtures", "hf", "qwen3_moe")
    if not os.path.isdir(base):
        print("skip: no fixture")
        return 77
    with open(os.path.join(base, "config.json")) as f:
        cfg = json.load(f)
    cfg["num_experts"] = cfg.pop("num_local_experts", cfg.get("num_experts"))
    w = load_file(os.path.join(base, "model.safetensors"))
    exp = load_file(os.path.join(base, "expected.safetensors"))
    ids = exp["case1.all_ids"].tolist()
    ref = exp["case1.logits"]
    err = np.abs(forward(cfg, w, ids) - ref).max() / np.abs(ref).max()
    check(err <= 1e-5, f"numpy reference vs transformers on the fixture: {err:.2e} <= 1e-5")

    rng = np.random.default_rng(7)
    tmp = tempfile.mkdtemp(prefix="ferrum-moe-")
    try:
        for name, changes in [("dense-layer-1", dict(mlp_only_layers=[1])),
                              ("sparse-step-2", dict(decoder_sparse_step=2)),
                              ("unnormalized", dict(norm_topk_prob=False, mlp_only_layers=[0]))]:
            vcfg, vw, d = variant(cfg, w, tmp, name, rng, **changes)
            want = forward(vcfg, vw, ids)
            scale = np.abs(want).max()
            err = np.abs(logits(d, ids) - want).max() / scale
            check(err <= TOL, f"{name}: HF folder vs numpy {err:.2e} <= {TOL:g}")
            out = os.path.join(tmp, name + ".gguf")
            subprocess.run([FERRUM, "quantize", d, out, "F32"], check=True, capture_output=True)
            err = np.abs(logits(out, ids) - want).max() / scale
            check(err <= TOL, f"{name}: F32 GGUF vs numpy {err:.2e} <= {TOL:g}")
    finally:
        shutil.rmtree(tmp)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
