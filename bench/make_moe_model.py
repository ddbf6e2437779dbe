#!/usr/bin/env python3
"""Writes a random-weight F16 GGUF with the shapes of Qwen/Qwen3-30B-A3B but fewer layers, for MoE
benchmarks (random weights run at the speed of trained ones; the router spreads tokens over the
experts much as a trained one does). Every layer has the real layer's shapes: 128 experts, top-8,
expert FFN 768, hidden 2048, 32 query / 4 KV heads of 128, QK-norm, vocabulary 151936, untied head.

  python3 bench/make_moe_model.py /tmp/models/qwen3-moe-4l-f16.gguf [--layers 4] [--shape tiny]
  ferrum quantize /tmp/models/qwen3-moe-4l-f16.gguf /tmp/models/qwen3-moe-4l-q4_k_m.gguf Q4_K_M
  ferrum bench -m /tmp/models/qwen3-moe-4l-q4_k_m.gguf -p 128 -n 32 -t 2

--shape tiny writes a small model of the same architecture (hidden 256, 16 experts of 256, top-4, 4 / 2
heads of 64, vocabulary 512) whose matrices are still whole 256-column super-blocks, for tests.

Tensors are generated and written one at a time (the F16 file is about 6 GB at 4 layers, 1.2 GB per
layer plus 1.2 GB of embedding and head), so memory stays below one expert stack (~0.4 GB).
"""
import argparse

import numpy as np
import gguf

from random_weights import in_order, normal_f32

SHAPES = {
    "qwen3-30b-a3b": dict(hidden=2048, heads=32, kv_heads=4, head_dim=128, ffn=6144, experts=128, experts_used=8,
                          expert_ffn=768, vocab=151936, theta=1000000.0, eps=1e-6, ctx=40960),
    "tiny": dict(hidden=256, heads=4, kv_heads=2, head_dim=64, ffn=512, experts=16, experts_used=4, expert_ffn=256,
                 vocab=512, theta=1000000.0, eps=1e-6, ctx=2048),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--shape", choices=sorted(SHAPES), default="qwen3-30b-a3b")
    args = ap.parse_args()
    s = SHAPES[args.shape]
    w = gguf.GGUFWriter(args.out, "qwen3moe")
    w.add_name(f"{args.shape}-shaped-{args.layers}l-random")
    w.add_context_length(s["ctx"])
    w.add_embedding_length(s["hidden"])
    w.add_block_count(args.layers)
    w.add_feed_forward_length(s["ffn"])
    w.add_head_count(s["heads"])
    w.add_head_count_kv(s["kv_heads"])
    w.add_key_length(s["head_dim"])
    w.add_value_length(s["head_dim"])
    w.add_rope_freq_base(s["theta"])
    w.add_rope_dimension_count(s["head_dim"])
    w.add_layer_norm_rms_eps(s["eps"])
    w.add_expert_count(s["experts"])
    w.add_expert_used_count(s["experts_used"])
    w.add_expert_feed_forward_length(s["expert_ffn"])
    w.add_expert_weights_norm(True)
    w.add_vocab_size(s["vocab"])
    w.add_file_type(1)
    # A placeholder vocabulary of the real size (llama.cpp needs one to load the file).
    toks = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    toks += [f"t{i}" for i in range(s["vocab"] - len(toks))]
    w.add_tokenizer_model("llama")
    w.add_token_list(toks)
    w.add_token_scores([0.0] * s["vocab"])
    w.add_token_types([2, 3, 3] + [6] * 256 + [1] * (s["vocab"] - 259))
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)

    def mat(*shape):
        return lambda rng: normal_f32(rng, shape, 0.02).astype(np.float16)

    def norm(n):
        return lambda rng: (1.0 + 0.1 * rng.standard_normal(n, dtype=np.float32)).astype(np.float32)

    H, D, E, F = s["hidden"], s["head_dim"], s["experts"], s["expert_ffn"]
    plan = [("token_embd.weight", mat(s["vocab"], H))]
    for l in range(args.layers):
        p = f"blk.{l}."
        plan += [
            (p + "attn_norm.weight", norm(H)),
            (p + "attn_q.weight", mat(s["heads"] * D, H)),
            (p + "attn_k.weight", mat(s["kv_heads"] * D, H)),
            (p + "attn_v.weight", mat(s["kv_heads"] * D, H)),
            (p + "attn_output.weight", mat(H, s["heads"] * D)),
            (p + "attn_q_norm.weight", norm(D)),
            (p + "attn_k_norm.weight", norm(D)),
            (p + "ffn_norm.weight", norm(H)),
            (p + "ffn_gate_inp.weight", lambda rng: normal_f32(rng, (E, H), 0.02)),
            (p + "ffn_gate_exps.weight", mat(E, F, H)),
            (p + "ffn_up_exps.weight", mat(E, F, H)),
            (p + "ffn_down_exps.weight", mat(E, H, F)),
        ]
    plan += [("output_norm.weight", norm(H)), ("output.weight", mat(s["vocab"], H))]

    shapes = {
        "token_embd.weight": ((s["vocab"], H), np.float16), "output.weight": ((s["vocab"], H), np.float16),
        "output_norm.weight": ((H,), np.float32), "attn_norm.weight": ((H,), np.float32),
        "ffn_norm.weight": ((H,), np.float32), "attn_q_norm.weight": ((D,), np.float32),
        "attn_k_norm.weight": ((D,), np.float32), "attn_q.weight": ((s["heads"] * D, H), np.float16),
        "attn_k.weight": ((s["kv_heads"] * D, H), np.float16), "attn_v.weight": ((s["kv_heads"] * D, H), np.float16),
        "attn_output.weight": ((H, s["heads"] * D), np.float16), "ffn_gate_inp.weight": ((E, H), np.float32),
        "ffn_gate_exps.weight": ((E, F, H), np.float16), "ffn_up_exps.weight": ((E, F, H), np.float16),
        "ffn_down_exps.weight": ((E, H, F), np.float16),
    }
    for name, _ in plan:
        shape, dtype = shapes[name.split(".", 2)[-1] if name.startswith("blk.") else name]
        w.add_tensor_info(name, shape, np.dtype(dtype), int(np.prod(shape)) * np.dtype(dtype).itemsize)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    # Expert stacks are 0.4 GB: a lookahead of 8 tensors keeps memory within a few GB.
    for t in in_order([make for _, make in plan], lookahead=8):
        w.write_tensor_data(t)
    w.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
