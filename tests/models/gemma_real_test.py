#!/usr/bin/env python3
"""The real Gemma 3 270M (Q4_K_M GGUF from scripts/fetch_models) against llama.cpp (llama-cpp-python).

Skipped (exit 77) unless the model is in the cache ($FERRUM_CACHE/models or ~/.cache/ferrum/models;
FERRUM_GEMMA_GGUF names another file) and `llama_cpp` is importable. llama.cpp runs with an F32 KV
cache and without flash attention (as for the fixtures in ../shared/fixtures/gguf), 2 threads.

1. Tokenizer: ferrum's ids equal llama.cpp's for a Gemma chat prompt (special tokens parsed) and for
   ~30 texts (scripts, whitespace, emoji, special-token look-alikes), with and without BOS.
2. The chat prompt is written in Gemma's turn format here (this GGUF, made from the base model, has
   no template; Jinja rendering is tested with real templates in tests/tokenizer).
3. Architecture, exactly: the weights dequantized to an F32 GGUF (gguf-py) take away activation
   rounding. On it, ferrum's logits (every row) match an independent float64 numpy forward pass
   within 1e-4 x max |logit| (the HF fixtures' rule) for the chat prompt (prefill and token-by-token
   decode) and for a prompt longer than the 512-token sliding window, and llama.cpp's for the chat
   prompt within issue 3's tolerance (max |diff| <= 0.6, rms <= 0.1; llama.cpp's fp16 GELU table
   makes it differ from float64 by up to ~0.5 on long prompts).
4. Q4_K_M as shipped: ferrum rounds activations to Q8_0/Q8_K like llama.cpp, but this model
   (|logit| up to ~100) turns a single rounding flip into logit shifts of ~1: llama.cpp's own
   batched and token-by-token runs differ by far more than 0.6/0.1. ferrum must stay within that
   spread of llama.cpp (the 0.6/0.1 figures are printed for the record) and agree on the top token
   wherever llama.cpp's top-2 margin is larger than the spread.
5. Greedy: 3 prompts, up to 32 tokens; ferrum's ids equal llama.cpp's, or at the first difference
   both tokens are llama.cpp's top 2 with a margin below 0.6 (issue 3's max tolerance)."""
import json
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import llama_cpp  # noqa: F401
    from llama_cpp import Llama
except ImportError as e:
    print(f"skip: {e}")
    sys.exit(77)

FERRUM = os.environ["FERRUM_BIN"]
CACHE = os.environ.get("FERRUM_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "ferrum")
MODEL = os.environ.get("FERRUM_GEMMA_GGUF") or os.path.join(CACHE, "models", "gemma-3-270m-q4_k_m.gguf")
THREADS = 2
TOL_MAX, TOL_RMS = 0.6, 0.1  # issue 3: ferrum vs llama.cpp
EOG = {1, 106}  # <eos>, <end_of_turn>

MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant. Answer in one short paragraph."},
    {"role": "user", "content": "Why is the sky blue during the day but red at sunset?"},
    {"role": "assistant", "content": "Sunlight scatters off air molecules; blue light scatters the most."},
    {"role": "user", "content": "  And why are clouds white?  "},
]

TEXTS = [
    "Hello world", " Hello  world ", "What is the capital of France?", "\n\nfoo\n", "  leading spaces", "trailing   ",
    "def f(x):\n    return x * 2\n", "Café naïve résumé", "東京は日本の首都です。", "Emoji 😀🚀 test", "1234567890 3.14159",
    "<start_of_turn>user\nhi<end_of_turn>\n", "<bos>text", "a\tb\tc", "don't can't won't", "   ", "ÅÄÖ åäö ß",
    "\u00a0nbsp", "<unused0> <mask>", "x" * 100, "🙂" * 5, "\r\n windows", "Привет, как дела?", "مرحبا بالعالم", "हिन्दी",
    "한국어 텍스트", "ğüşıöç", "<start_of_image>", "< start_of_turn >",
    "Wikipedia is a free online encyclopedia, created and edited by volunteers around the world.",
]

# Completion prompts: this GGUF is the pretrained (not instruction-tuned) model.
GREEDY_PROMPTS = [
    "Question: What is the capital of France?\nAnswer:",
    "The three primary colors are",
    "Photosynthesis is the process by which",
]
GREEDY_N = 32

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from pycheck import check, summary  # noqa: E402


def ferrum(*args):
    p = subprocess.run([FERRUM, *args], capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"ferrum {' '.join(args[:1])} failed: {p.stderr.strip()}")
    return p.stdout


def ferrum_logits(model, ids, out, mode="prefill"):
    ferrum("logits", "-m", model, "--tokens", ",".join(map(str, ids)), "-o", out, "--mode", mode, "-t", str(THREADS))
    return np.load(out, mmap_mode="r")


def llama(model, n_ctx):
    return Llama(model_path=model, logits_all=True, n_threads=THREADS, n_threads_batch=THREADS, n_ctx=n_ctx,
                 n_batch=n_ctx, n_ubatch=n_ctx, type_k=0, type_v=0, flash_attn=False, verbose=False)


def llama_logits(llm, ids, batched=True):
    llm.reset()
    if batched:
        llm.eval(ids)
    else:
        for t in ids:
            llm.eval([t])
    return np.array(llm.scores[: len(ids)], dtype=np.float32)


def diff(a, b):
    """max |a - b| and rms(a - b), 64 rows at a time (a row is 262144 logits)."""
    assert a.shape == b.shape, (a.shape, b.shape)
    m, ss = 0.0, 0.0
    for i in range(0, a.shape[0], 64):
        d = np.abs(np.asarray(a[i:i + 64], dtype=np.float64) - np.asarray(b[i:i + 64], dtype=np.float64))
        m, ss = max(m, float(d.max())), ss + float((d * d).sum())
    return m, (ss / a.size) ** 0.5


def dequantize_to_f32(src, dst):
    from gguf import GGUFReader, GGUFWriter, GGUFValueType, GGMLQuantizationType
    from gguf.quants import dequantize
    r = GGUFReader(src)
    arch = r.fields["general.architecture"].contents()
    w = GGUFWriter(dst, arch)
    for k, f in r.fields.items():
        if k.startswith("GGUF.") or k == "general.architecture":
            continue
        v = 0 if k == "general.file_type" else f.contents()
        if f.types[0] == GGUFValueType.ARRAY:
            w.add_key_value(k, v, f.types[0], sub_type=f.types[-1])
        else:
            w.add_key_value(k, v, f.types[0])
    for t in r.tensors:
        a = dequantize(t.data, t.tensor_type).astype(np.float32)
        w.add_tensor(t.name, a.reshape([int(x) for x in reversed(t.shape)]), raw_dtype=GGMLQuantizationType.F32)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def numpy_forward(path, ids):
    """Gemma 3 in float64 from an F32 GGUF (llama.cpp's converter stores the RMSNorm weights as 1 + w)."""
    from gguf import GGUFReader
    r = GGUFReader(path)
    meta = {k: f.contents() for k, f in r.fields.items() if k.startswith("gemma3.")}
    T = {t.name: t.data for t in r.tensors}
    W = lambda name: np.asarray(T[name], dtype=np.float64)  # noqa: E731  [out, in]
    L, H, KV = meta["gemma3.block_count"], meta["gemma3.attention.head_count"], meta["gemma3.attention.head_count_kv"]
    hd, win, eps = meta["gemma3.attention.key_length"], meta["gemma3.attention.sliding_window"], \
        meta["gemma3.attention.layer_norm_rms_epsilon"]
    n, emb = len(ids), T["token_embd.weight"]

    def rms(x, w):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w

    def rope(x, base):  # NeoX halves
        inv = base ** (-np.arange(0, hd // 2) * 2.0 / hd)
        ang = np.arange(n)[:, None] * inv[None, :]
        c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        a, b = x[..., :hd // 2], x[..., hd // 2:]
        return np.concatenate([a * c - b * s, b * c + a * s], -1)

    x = np.asarray(emb[ids], dtype=np.float64) * np.sqrt(float(emb.shape[1]))
    i, j = np.arange(n)[:, None], np.arange(n)[None, :]
    for il in range(L):
        p = f"blk.{il}."
        local = il % 6 < 5  # llama.cpp: every 6th layer global; local layers: window, RoPE base 10000
        h = rms(x, W(p + "attn_norm.weight"))
        q = rope(rms((h @ W(p + "attn_q.weight").T).reshape(n, H, hd), W(p + "attn_q_norm.weight")),
                 10000.0 if local else meta["gemma3.rope.freq_base"])
        k = rope(rms((h @ W(p + "attn_k.weight").T).reshape(n, KV, hd), W(p + "attn_k_norm.weight")),
                 10000.0 if local else meta["gemma3.rope.freq_base"])
        v = (h @ W(p + "attn_v.weight").T).reshape(n, KV, hd)
        masked = (j > i) | ((i - j >= win) if local else False)
        out = np.empty((n, H, hd))
        for hh in range(H):
            s = np.where(masked, -np.inf, q[:, hh] @ k[:, hh * KV // H].T / np.sqrt(hd))
            s = np.exp(s - s.max(1, keepdims=True))
            out[:, hh] = (s / s.sum(1, keepdims=True)) @ v[:, hh * KV // H]
        x = x + rms(out.reshape(n, H * hd) @ W(p + "attn_output.weight").T, W(p + "post_attention_norm.weight"))
        h = rms(x, W(p + "ffn_norm.weight"))
        g = h @ W(p + "ffn_gate.weight").T
        g = 0.5 * g * (1 + np.tanh(np.sqrt(2 / np.pi) * (g + 0.044715 * g ** 3))) * (h @ W(p + "ffn_up.weight").T)
        x = x + rms(g @ W(p + "ffn_down.weight").T, W(p + "post_ffw_norm.weight"))
    x = rms(x, W("output_norm.weight"))
    logits = np.empty((n, emb.shape[0]), dtype=np.float32)
    for c in range(0, emb.shape[0], 32768):  # tied head, in vocabulary chunks
        logits[:, c:c + 32768] = x @ np.asarray(emb[c:c + 32768], dtype=np.float64).T
    return logits


def main():
    if not os.path.isfile(MODEL):
        print(f"skip: {MODEL} not found (scripts/fetch_models gemma)")
        return 77
    with tempfile.TemporaryDirectory(prefix="ferrum-gemma-") as tmp:
        # 2. The chat prompt in Gemma's turn format (<start_of_turn>ROLE ... <end_of_turn>, the model's
        # turn opened at the end; the system message joins the first user turn). This GGUF has no template.
        turns, system = [], ""
        for m in MESSAGES:
            if m["role"] == "system":
                system = m["content"] + "\n\n"
                continue
            role = "model" if m["role"] == "assistant" else "user"
            text = (system if role == "user" else "") + m["content"].strip()
            system = "" if role == "user" else system
            turns.append(f"<start_of_turn>{role}\n{text}<end_of_turn>\n")
        chat = "<bos>" + "".join(turns) + "<start_of_turn>model\n"

        # 1. Tokenizer.
        vocab = Llama(model_path=MODEL, vocab_only=True, verbose=False)
        chat_ids = vocab.tokenize(chat.encode(), add_bos=False, special=True)
        got = [int(x) for x in ferrum("tokenize", "--model", MODEL, "--no-special", "--parse-special",
                                      "--text", chat).split(",")]
        check(got == chat_ids, f"chat prompt tokens == llama.cpp's ({len(chat_ids)} ids, BOS from the template)")
        batch = os.path.join(tmp, "texts.jsonl")
        with open(batch, "w") as f:
            f.writelines(json.dumps(t) + "\n" for t in TEXTS)
        bad = []
        for special, bos in ((True, True), (False, True), (True, False)):
            flags = (["--parse-special"] if special else []) + ([] if bos else ["--no-special"])
            lines = ferrum("tokenize", "--model", MODEL, "--batch-file", batch, *flags).splitlines()
            for text, line in zip(TEXTS, lines):
                if json.loads(line) != vocab.tokenize(text.encode(), add_bos=bos, special=special):
                    bad.append((text, special, bos))
        check(not bad and len(lines) == len(TEXTS),
              f"{3 * len(TEXTS)} texts x (special, BOS) tokenized as llama.cpp does" + (f": {bad[:3]}" if bad else ""))
        del vocab

        # 3. Architecture with F32 weights: chat prompt (prefill + decode) and a prompt past the window.
        f32 = os.path.join(tmp, "gemma-f32.gguf")
        dequantize_to_f32(MODEL, f32)
        long_text = " ".join(["The quick brown fox jumps over the lazy dog while the cat sleeps in the sun."] * 40)
        llm = llama(f32, 128)
        long_ids = llm.tokenize(long_text.encode(), add_bos=True, special=False)[:600]
        ref = llama_logits(llm, chat_ids)
        m, r = diff(ferrum_logits(f32, chat_ids, os.path.join(tmp, "f32.npy")), ref)
        check(m <= TOL_MAX and r <= TOL_RMS,
              f"F32 weights, chat prompt: all {len(chat_ids)} rows vs llama.cpp max |diff| {m:.4f} <= {TOL_MAX}, "
              f"rms {r:.5f} <= {TOL_RMS}")
        del llm, ref
        for name, ids, modes in (("chat prompt", chat_ids, ("prefill", "decode")),
                                 (f"{len(long_ids)}-token prompt (window 512)", long_ids, ("prefill",))):
            ref = numpy_forward(f32, ids)
            tol = 1e-4 * float(np.abs(ref).max())
            for mode in modes:
                m, r = diff(ferrum_logits(f32, ids, os.path.join(tmp, "f32.npy"), mode), ref)
                check(m <= tol, f"F32 weights, {name}, {mode}: all {len(ids)} rows vs float64 numpy max |diff| "
                                f"{m:.2e} <= {tol:.2e} (1e-4 x max |logit|), rms {r:.1e}")
            del ref
        os.remove(f32)

        # 4. Q4_K_M: ferrum vs llama.cpp, against llama.cpp's own batched vs token-by-token spread.
        llm = llama(MODEL, 512)
        ref = llama_logits(llm, chat_ids)
        ref_seq = llama_logits(llm, chat_ids, batched=False)
        floor_max, floor_rms = diff(ref_seq, ref)
        print(f"     llama.cpp batched vs token-by-token: max |diff| {floor_max:.3f}, rms {floor_rms:.3f}")
        for mode in ("prefill", "decode"):
            got = np.array(ferrum_logits(MODEL, chat_ids, os.path.join(tmp, "q.npy"), mode))
            m, r = diff(got, ref)
            print(f"     Q4_K_M {mode}: max |diff| {m:.3f}, rms {r:.3f} (issue 3's {TOL_MAX} / {TOL_RMS}: "
                  f"{'within' if m <= TOL_MAX and r <= TOL_RMS else 'exceeded, as by llama.cpp itself'})")
            check(m <= floor_max and r <= floor_rms,
                  f"Q4_K_M, chat prompt, {mode}: ferrum vs llama.cpp (max {m:.3f}, rms {r:.3f}) within llama.cpp's "
                  f"own batched vs token-by-token spread (max {floor_max:.3f}, rms {floor_rms:.3f})")
            top2 = np.sort(ref, axis=1)[:, -2:]
            decided = (top2[:, 1] - top2[:, 0]) > floor_max
            agree = got.argmax(1) == ref.argmax(1)
            check(bool(agree[decided].all()),
                  f"Q4_K_M {mode}: same top token on all {int(decided.sum())} rows whose llama.cpp top-2 margin "
                  f"> {floor_max:.3f} (all rows: {int(agree.sum())}/{len(agree)})")

        # 5. Greedy continuations.
        for prompt in GREEDY_PROMPTS:
            ids = llm.tokenize(prompt.encode(), add_bos=True, special=False)
            llm.reset()
            llm.eval(ids)
            want, rows = [], []
            for _ in range(GREEDY_N):
                row = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
                want.append(int(row.argmax()))
                rows.append(row)
                if want[-1] in EOG:
                    break
                llm.eval([want[-1]])
            got = [int(x) for x in ferrum("generate", "-m", MODEL, "--tokens", ",".join(map(str, ids)),
                                          "-n", str(len(want)), "-t", str(THREADS)).split(",")]
            text = llm.detokenize(want).decode(errors="replace")
            k = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), None)
            if k is None:
                check(got == want, f"greedy {prompt!r}: {len(want)} ids == llama.cpp's: {text!r}")
                continue
            # At the fork: both picks are llama.cpp's top 2, and close in llama.cpp's and in ferrum's logits.
            row = rows[k]
            f_row = ferrum_logits(MODEL, ids + want[:k], os.path.join(tmp, "fork.npy"))[-1]
            top2 = [int(x) for x in np.argsort(-row)[:2]]
            m_llama = float(row[want[k]] - row[got[k]])
            m_ferrum = float(f_row[got[k]] - f_row[want[k]])
            check(got[k] in top2 and m_llama < TOL_MAX and m_ferrum < TOL_MAX,
                  f"greedy {prompt!r}: forks at token {k} (llama.cpp {want[k]}, ferrum {got[k]}), its top-2 margin "
                  f"{m_llama:.3f} in llama.cpp's logits, {m_ferrum:.3f} in ferrum's, < {TOL_MAX}; common text "
                  f"{llm.detokenize(want[:k]).decode(errors='replace')!r}")
    return summary()


if __name__ == "__main__":
    sys.exit(main())
