#!/usr/bin/env python3
"""Writes random-weight F16 (or BF16) GGUF models with the exact shapes of real ones, for benchmarks
(random weights run at the same speed as trained ones). Then quantize with
`ferrum quantize OUT-f16.gguf OUT-q4_k_m.gguf Q4_K_M` (and Q8_0, Q6_K).

  python3 bench/make_models.py llama-3.2-1b  /tmp/models/llama-3.2-1b-f16.gguf
  python3 bench/make_models.py qwen3-0.6b    /tmp/models/qwen3-0.6b-f16.gguf
  python3 bench/make_models.py llama-3.1-8b  /tmp/models/llama-3.1-8b-bf16.gguf --dtype bf16

The vocabulary is a placeholder SentencePiece-style list of the real size (llama.cpp needs one to
load the file); token ids, not text, drive the benchmarks.
"""
import argparse

import numpy as np
import gguf

from random_weights import in_order, normal_f32, to_bf16_bits

SHAPES = {
    # meta-llama/Llama-3.2-1B: tied embeddings, GQA 32/8, llama3 RoPE scaling
    "llama-3.2-1b": dict(arch="llama", hidden=2048, layers=16, heads=32, kv_heads=8, head_dim=64, ffn=8192,
                         vocab=128256, theta=500000.0, eps=1e-5, tied=True, qk_norm=False, ctx=131072,
                         llama3=dict(factor=32.0, low=1.0, high=4.0, orig=8192)),
    # Qwen/Qwen3-0.6B: tied embeddings, GQA 16/8, head_dim 128, QK-norm
    "qwen3-0.6b": dict(arch="qwen3", hidden=1024, layers=28, heads=16, kv_heads=8, head_dim=128, ffn=3072,
                       vocab=151936, theta=1000000.0, eps=1e-6, tied=True, qk_norm=True, ctx=40960, llama3=None),
    # meta-llama/Llama-3.1-8B (for the GPU benchmarks)
    "llama-3.1-8b": dict(arch="llama", hidden=4096, layers=32, heads=32, kv_heads=8, head_dim=128, ffn=14336,
                         vocab=128256, theta=500000.0, eps=1e-5, tied=False, qk_norm=False, ctx=131072,
                         llama3=dict(factor=8.0, low=1.0, high=4.0, orig=8192)),
}


def llama3_factors(s):
    import math
    c = s["llama3"]
    dim = s["head_dim"]
    out = []
    for i in range(0, dim, 2):
        freq = 1.0 / (s["theta"] ** (i / dim))
        wavelen = 2 * math.pi / freq
        if wavelen < c["orig"] / c["high"]:
            out.append(1.0)
        elif wavelen > c["orig"] / c["low"]:
            out.append(c["factor"])
        else:
            smooth = (c["orig"] / wavelen - c["low"]) / (c["high"] - c["low"])
            out.append(1.0 / ((1 - smooth) / c["factor"] + smooth))
    return np.array(out, dtype=np.float32)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name", choices=sorted(SHAPES))
    ap.add_argument("out")
    ap.add_argument("--dtype", choices=["f16", "bf16"], default="f16", help="type of the weight matrices")
    ap.add_argument("--layers", type=int, help="fewer layers than the real model (quicker A/B runs)")
    args = ap.parse_args()
    name, out = args.name, args.out
    s = dict(SHAPES[name])
    if args.layers:
        s["layers"] = args.layers
    a = s["arch"]
    w = gguf.GGUFWriter(out, a)
    w.add_name(name + "-random")
    w.add_context_length(s["ctx"])
    w.add_embedding_length(s["hidden"])
    w.add_block_count(s["layers"])
    w.add_feed_forward_length(s["ffn"])
    w.add_head_count(s["heads"])
    w.add_head_count_kv(s["kv_heads"])
    w.add_key_length(s["head_dim"])
    w.add_value_length(s["head_dim"])
    w.add_rope_freq_base(s["theta"])
    w.add_rope_dimension_count(s["head_dim"])
    w.add_layer_norm_rms_eps(s["eps"])
    w.add_vocab_size(s["vocab"])
    w.add_file_type(1 if args.dtype == "f16" else 32)
    toks = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    toks += [f"t{i}" for i in range(s["vocab"] - len(toks))]
    types = [2, 3, 3] + [6] * 256 + [1] * (s["vocab"] - 259)
    w.add_tokenizer_model("llama")
    w.add_token_list(toks)
    w.add_token_scores([0.0] * s["vocab"])
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)

    def mat(rows, cols):
        if args.dtype == "f16":
            return lambda rng: normal_f32(rng, (rows, cols), 0.02).astype(np.float16)
        return lambda rng: to_bf16_bits(normal_f32(rng, (rows, cols), 0.02))

    def norm(n):
        return lambda rng: (1.0 + 0.1 * rng.standard_normal(n, dtype=np.float32)).astype(np.float32)

    H, D = s["hidden"], s["head_dim"]
    plan = [("token_embd.weight", mat(s["vocab"], H))]
    if s["llama3"]:
        plan.append(("rope_freqs.weight", lambda rng: llama3_factors(s)))
    for l in range(s["layers"]):
        p = f"blk.{l}."
        plan += [(p + "attn_norm.weight", norm(H)),
                 (p + "attn_q.weight", mat(s["heads"] * D, H)),
                 (p + "attn_k.weight", mat(s["kv_heads"] * D, H)),
                 (p + "attn_v.weight", mat(s["kv_heads"] * D, H)),
                 (p + "attn_output.weight", mat(H, s["heads"] * D))]
        if s["qk_norm"]:
            plan += [(p + "attn_q_norm.weight", norm(D)), (p + "attn_k_norm.weight", norm(D))]
        plan += [(p + "ffn_norm.weight", norm(H)),
                 (p + "ffn_gate.weight", mat(s["ffn"], H)),
                 (p + "ffn_up.weight", mat(s["ffn"], H)),
                 (p + "ffn_down.weight", mat(H, s["ffn"]))]
    plan.append(("output_norm.weight", norm(H)))
    if not s["tied"]:
        plan.append(("output.weight", mat(s["vocab"], H)))
    for (tensor_name, _), t in zip(plan, in_order([make for _, make in plan])):
        bf16 = t.dtype == np.uint16
        w.add_tensor(tensor_name, t, raw_dtype=gguf.GGMLQuantizationType.BF16 if bf16 else None)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file(progress=False)
    w.close()
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
