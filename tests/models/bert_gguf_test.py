#!/usr/bin/env python3
"""The BERT fixture converted by `ferrum quantize` is a GGUF as llama.cpp's converter writes it.

Read back by gguf-py: every tensor name is one of llama.cpp's BERT tensor names (gguf.constants),
none is missing, the pooler is dropped, shapes are the HF shapes, and the metadata says
bert.attention.causal = false, bert.pooling_type = mean, tokenizer.ggml.token_type_count = 2.
`ferrum embed` on the file then matches transformers' mean pooling (expected.safetensors)."""
import os
import subprocess
import sys
import tempfile

try:
    import gguf
    import numpy as np
    from safetensors.numpy import load_file
except ImportError as e:  # reference libraries missing: skip (ctest code 77)
    print(f"skip: {e}")
    sys.exit(77)

FERRUM = os.environ["FERRUM_BIN"]
SHARED = os.environ.get("FERRUM_SHARED") or os.environ["FERRUM_SHARED_DEFAULT"]

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from pycheck import check, summary  # noqa: E402


def main():
    d = os.path.join(SHARED, "fixtures", "hf", "bert")
    if not os.path.isdir(d):
        print("skip: no fixtures")
        return 77
    hf = load_file(os.path.join(d, "model.safetensors"))
    exp = load_file(os.path.join(d, "expected.safetensors"))
    n_layers = 2
    arch = gguf.MODEL_ARCH.BERT
    want = set()
    for t in gguf.MODEL_TENSORS[arch]:
        name = gguf.TENSOR_NAMES[t]
        if t in (gguf.MODEL_TENSOR.OUTPUT_NORM, gguf.MODEL_TENSOR.ATTN_QKV, gguf.MODEL_TENSOR.CLS,
                 gguf.MODEL_TENSOR.CLS_OUT):
            continue  # fused QKV, classifier heads: not in a BertModel checkpoint
        suffixes = [".weight"] if t in (gguf.MODEL_TENSOR.TOKEN_EMBD, gguf.MODEL_TENSOR.TOKEN_TYPES,
                                        gguf.MODEL_TENSOR.POS_EMBD) else [".weight", ".bias"]
        for s in suffixes:
            if "{bid}" in name:
                want |= {name.format(bid=i) + s for i in range(n_layers)}
            else:
                want.add(name + s)
    with tempfile.TemporaryDirectory(prefix="ferrum-bert-gguf-") as tmp:
        out = os.path.join(tmp, "bert-f32.gguf")
        subprocess.run([FERRUM, "quantize", d, out, "F32"], check=True, capture_output=True)
        r = gguf.GGUFReader(out)
        names = {t.name for t in r.tensors}
        check(names == want, f"tensor names are llama.cpp's BERT names ({len(names)} tensors; "
                             f"extra {sorted(names - want)}, missing {sorted(want - names)})")
        t = {x.name: x for x in r.tensors}
        check(np.array_equal(np.array(t["position_embd.weight"].data), hf["embeddings.position_embeddings.weight"]),
              "position_embd.weight == embeddings.position_embeddings.weight")
        check(np.array_equal(np.array(t["blk.1.ffn_down.weight"].data), hf["encoder.layer.1.output.dense.weight"]),
              "blk.1.ffn_down.weight == encoder.layer.1.output.dense.weight")
        f = r.fields
        check(f["general.architecture"].contents() == "bert", "general.architecture = bert")
        check(f["bert.attention.causal"].contents() is False, "bert.attention.causal = false")
        check(f["bert.pooling_type"].contents() == int(gguf.PoolingType.MEAN), "bert.pooling_type = MEAN")
        check(f["tokenizer.ggml.token_type_count"].contents() == 2, "tokenizer.ggml.token_type_count = 2")
        check(abs(f["bert.attention.layer_norm_epsilon"].contents() - 1e-12) < 1e-18, "layer_norm_epsilon = 1e-12")
        for c in range(3):
            ids = ",".join(map(str, exp[f"case{c}.input_ids"].tolist()))
            vec = os.path.join(tmp, "v.npy")
            subprocess.run([FERRUM, "embed", "-m", out, "--tokens", ids, "-o", vec], check=True, capture_output=True)
            ref = exp[f"case{c}.mean_pooled"]
            err = np.abs(np.load(vec) - ref).max() / np.abs(ref).max()
            check(err <= 1e-4, f"case{c}: GGUF mean pooling vs transformers: max rel diff {err:.2e} <= 1e-4")
    return summary()


if __name__ == "__main__":
    sys.exit(main())
