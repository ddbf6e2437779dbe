#!/usr/bin/env python3
"""Differential test: ferrum's tokenizers against HF `tokenizers` on generated strings.

For Qwen3, Llama-3 and BERT, 10,000 generated strings (mixed scripts, emoji, whitespace runs, digits, code,
special-token text) must give the ids HF gives (with and without special-token parsing, with and
without BOS/CLS framing), and decoding must give HF's text (so decode(encode(s)) == s wherever
HF round-trips). The SPM and GPT-2 vocabularies and the other BERT loaders get 3,000 strings. ferrum runs through `ferrum tokenize/detokenize --batch-file`, one process each.

References: Qwen3 and Llama-3 tokenizer.json as shipped; for the llama.cpp vocab GGUFs, HF
tokenizers built from the GGUF vocabulary the way transformers' converters build them.
"""
import json
import os
import random
import struct
import subprocess
import sys
import tempfile

N_STRINGS = 10_000  # per tokenizer; fewer for the variants that share code with one already checked
N_VARIANT = 3_000


def skip(msg):
    print(f"SKIP: {msg}")
    sys.exit(77)


try:
    import tokenizers
    from tokenizers import decoders, models, normalizers, pre_tokenizers, processors
except ImportError as e:
    skip(f"missing Python package: {e}")

FERRUM = os.environ.get("FERRUM_BIN")
SHARED = os.environ.get("FERRUM_SHARED") or os.environ.get("FERRUM_SHARED_DEFAULT", "")
if not FERRUM or not os.path.exists(FERRUM):
    skip("FERRUM_BIN is not set")
TOK = os.path.join(SHARED, "tokenizers")
if not os.path.isdir(TOK):
    skip(f"no shared data at {TOK}")

# ------------------------------------------------------------------ string generator

WORDS = ("the of and to in is that for it as was with be by on not he I this are or his from at which but "
         "have an they you were her she there one all we their can has more will would if no time about out "
         "Hello World Tokenizer LLaMA Qwen transformer don't can't it's we're they've I'd you'll HELLO O'Neil "
         "naïve café résumé coöperate façade Führer straße Ångström İstanbul ıi ǅ ﬁ ﬀ").split()
CODE = [
    "def foo(x):\n    return x * 2\n", "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}", "std::vector<int> v{1, 2, 3};",
    "#include <stdio.h>", "x += 1;  // comment", "<div class=\"a\">text</div>", "SELECT * FROM t WHERE id = 42;",
    '{"key": [1, 2.5, null, true]}', "if x != None and y >= 0:", "a->b = c ? d : e;", "$ ls -la | grep '.py'",
    "fn main() -> Result<(), Error> {}", "    ", "\t\t", "/* */", "=>", "!==", "...", "---", "***", "__init__",
    "https://example.com/path?q=1&r=2", "user@example.com", "C:\\Users\\me", "```python\nprint('hi')\n```",
]
SPACES = [" ", "  ", "   ", "\t", "\n", "\r\n", "\n\n", " \n", "\n ", "\r", "\u00a0", "\u3000", "\u2009", "\u200b",
          "\u0085", "\u2028", "\x0b", "\x0c", "\u202f", "\ufeff"]
SCRIPTS = [
    "нещо на Български", "Привет мир", "Γειά σου κόσμε", "مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया",
    "สวัสดีชาวโลก", "កាន់តែពិសេសអាចខលចេញ", "你好，世界！", "我想在apple工作1314151天～", "こんにちは世界", "カタカナとひらがな",
    "안녕하세요 세계", "Cửa Việt", "Tiếng Việt có dấu", "Ελληνικά", "ქართული", "Հայերեն", "ગુજરાતી", "தமிழ்",
    "e\u0301", "A\u030a", "n\u0303o", "\u1100\u1161\u11a8", "\u0041\u0308\u0304", "Å", "Ω", "ﬃ", "①②③", "ｆｕｌｌｗｉｄｔｈ",
]
EMOJI = ["🦙", "😀", "👍🏽", "👨‍👩‍👧", "🏳️‍🌈", "😶‍🌫️", "✅", "❤️", "🇺🇸", "🚀", "🤖", "©", "™", "∑", "→", "½", "²", "€", "£"]
DIGITS = ["0", "7", "42", "123", "1234", "12345", "3.14159", "1,000,000", "٣٤٥", "１２３", "Ⅻ", "2024-01-01", "0x1F"]
APOS = ["'s", "'S", "'t", "'T", "'re", "'RE", "'ve", "'m", "'ll", "'LL", "'d", "’s", "'", "''", "'ſ", "'x"]
BLOCKS = [(0x20, 0x7E), (0xA1, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x5FF), (0x600, 0x6FF),
          (0x900, 0x97F), (0xE00, 0xE7F), (0x1E00, 0x1EFF), (0x2000, 0x206F), (0x2100, 0x214F), (0x2190, 0x21FF),
          (0x2200, 0x22FF), (0x3040, 0x30FF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0xFF00, 0xFFEF),
          (0x1F300, 0x1F64F), (0x1F680, 0x1F6FF)]


def random_chars(rng, n):
    out = []
    for _ in range(n):
        lo, hi = rng.choice(BLOCKS)
        out.append(chr(rng.randint(lo, hi)))
    return "".join(out)


def gen_strings(seed, n, specials):
    rng = random.Random(seed)
    pools = [WORDS, CODE, SPACES, SCRIPTS, EMOJI, DIGITS, APOS, specials or WORDS]
    weights = [30, 12, 14, 10, 6, 8, 5, 4]
    out = []
    for i in range(n):
        parts = []
        for _ in range(rng.randint(1, 10)):
            r = rng.random()
            if r < 0.1:
                parts.append(random_chars(rng, rng.randint(1, 8)))
            elif r < 0.15:
                parts.append("".join(rng.choice(DIGITS[:6]) for _ in range(rng.randint(1, 5))))
            else:
                parts.append(rng.choice(rng.choices(pools, weights)[0]))
            parts.append(rng.choice(["", "", " ", " ", "\n", rng.choice(SPACES)]))
        s = "".join(parts)
        if i % 200 == 0:  # a few long strings
            s = " ".join(s for _ in range(rng.randint(20, 60)))
        out.append(s)
    return out


# ------------------------------------------------------------------ running both sides

def ferrum(args, items):
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False, encoding="utf-8") as f:
        for x in items:
            f.write(json.dumps(x) + "\n")
        path = f.name
    try:
        r = subprocess.run([FERRUM] + args + ["--batch-file", path], capture_output=True)
    finally:
        os.unlink(path)
    if r.returncode != 0:
        print("ferrum failed:", " ".join(args), r.stderr.decode(errors="replace"))
        sys.exit(1)
    lines = r.stdout.decode("utf-8").split("\n")[:-1]  # not splitlines(): U+2028 etc. appear raw
    assert len(lines) == len(items), (len(lines), len(items))
    return [json.loads(line) for line in lines]


failures = []


def compare(label, texts, got, want):
    bad = [i for i in range(len(texts)) if got[i] != want[i]]
    status = "ok" if not bad else f"{len(bad)} MISMATCHES"
    print(f"  {label}: {len(texts)} cases, {status}")
    for i in bad[:5]:
        print(f"    input {texts[i]!r}\n      ferrum {got[i]!r}\n      hf     {want[i]!r}")
    if bad:
        failures.append(label)


def check(name, source, hf, texts):
    """`source`: what ferrum loads (--tokenizer); `hf`: the reference tokenizers.Tokenizer."""
    print(f"{name} ({source})")
    src = ["--tokenizer", source]
    hf.encode_special_tokens = False
    want = [e.ids for e in hf.encode_batch(texts, add_special_tokens=False)]
    got = ferrum(["tokenize"] + src + ["--no-special", "--parse-special"], texts)
    compare("encode (parse special)", texts, got, want)

    hf.encode_special_tokens = True
    want_plain = [e.ids for e in hf.encode_batch(texts, add_special_tokens=True)]
    hf.encode_special_tokens = False
    got_plain = ferrum(["tokenize"] + src, texts)
    compare("encode (framing, special text literal)", texts, got_plain, want_plain)

    decoded = ferrum(["detokenize"] + src, want)
    hf_decoded = hf.decode_batch(want, skip_special_tokens=False)
    compare("decode", texts, decoded, hf_decoded)
    compare("decode (skip special)", texts, ferrum(["detokenize", "--skip-special"] + src, want_plain),
            hf.decode_batch(want_plain, skip_special_tokens=True))
    restored = [i for i, t in enumerate(texts) if hf_decoded[i] == t]
    compare(f"round trip where HF round-trips ({len(restored)})", [texts[i] for i in restored],
            [decoded[i] for i in restored], [texts[i] for i in restored])


# ------------------------------------------------------------------ references for GGUF vocabularies

def gguf_vocab(path):
    """tokenizer.ggml.{tokens,token_type,scores,merges} of a GGUF file (v2/v3 layout)."""
    with open(path, "rb") as f:
        data = f.read()
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        return v[0]

    def string():
        nonlocal pos
        n = take("<Q")
        pos += n
        return data[pos - n:pos].decode("utf-8")

    scalar = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}

    def value(t):
        if t == 8:
            return string()
        if t == 9:
            et, n = take("<I"), take("<Q")
            return [value(et) for _ in range(n)]
        return take(scalar[t])

    assert data[:4] == b"GGUF"
    pos = 8
    take("<Q")  # tensor count
    kv = {}
    for _ in range(take("<Q")):
        key = string()
        kv[key] = value(take("<I"))
    out = {"tokens": kv["tokenizer.ggml.tokens"], "types": kv["tokenizer.ggml.token_type"]}
    for name in ("scores", "merges"):
        if f"tokenizer.ggml.{name}" in kv:
            out[name] = kv[f"tokenizer.ggml.{name}"]
    return out


def special_added(tokens, types):
    # llama.cpp token types: 2 unknown, 3 control, 4 user-defined.
    return [tokenizers.AddedToken(t, special=ty != 4, normalized=False)
            for t, ty in zip(tokens, types) if ty in (2, 3, 4)]


def spm_reference(path):
    """A LlamaTokenizerFast-style tokenizer (transformers' LlamaConverter) from a SentencePiece GGUF."""
    v = gguf_vocab(path)
    vocab = {t: i for i, t in enumerate(v["tokens"])}
    merges = []  # SentencePieceExtractor: every split of a piece into two pieces, ordered by score
    for piece, score in zip(v["tokens"], v["scores"]):
        local = [(piece[:k], piece[k:], score) for k in range(1, len(piece))
                 if piece[:k] in vocab and piece[k:] in vocab]
        merges.extend(sorted(local, key=lambda x: (vocab[x[0]], vocab[x[1]])))
    merges = [(a, b) for a, b, _ in sorted(merges, key=lambda x: x[2], reverse=True)]
    tok = tokenizers.Tokenizer(models.BPE(vocab, merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.add_special_tokens(special_added(v["tokens"], v["types"]))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", vocab["<s>"])])
    return tok


def gpt2_reference(path):
    v = gguf_vocab(path)
    vocab = {t: i for i, t in enumerate(v["tokens"])}
    merges = [tuple(m.split(" ", 1)) for m in v["merges"]]
    tok = tokenizers.Tokenizer(models.BPE(vocab, merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(special_added(v["tokens"], v["types"]))
    return tok


def added_flags_reference(path):
    """GPT-2 with a lowercasing normalizer and added tokens using lstrip / rstrip / single_word /
    normalized, to cover HF's added-token matching rules."""
    tok = gpt2_reference(path)
    tok.normalizer = normalizers.Lowercase()
    tok.add_special_tokens([tokenizers.AddedToken("<mask>", lstrip=True, normalized=False),
                            tokenizers.AddedToken("[RS]", rstrip=True, normalized=False)])
    tok.add_tokens([tokenizers.AddedToken("hello", single_word=True, normalized=True),
                    tokenizers.AddedToken("ab", normalized=True), tokenizers.AddedToken("bc", normalized=False),
                    tokenizers.AddedToken("New York", normalized=False)])
    return tok


def bert_vocab(path):
    """HF WordPiece vocabulary of a llama.cpp BERT GGUF (its converter prefixes word starts with U+2581)."""
    out = []
    for t in gguf_vocab(path)["tokens"]:
        if t.startswith("[") and t.endswith("]"):
            out.append(t)
        elif t.startswith("\u2581"):
            out.append(t[1:])
        else:
            out.append("##" + t)
    return out


def cli_checks():
    """The one-shot CLI forms (ids from llama.cpp's llama-spm.out / llama-bpe.out for "Hello world")."""
    print("CLI")

    def run(*args):
        r = subprocess.run([FERRUM] + list(args), capture_output=True, text=True)
        return r.returncode, r.stdout, r.stderr

    spm = os.path.join(TOK, "gguf-vocab", "ggml-vocab-llama-spm.gguf")
    cases = [
        (("tokenize", "--model", spm, "--text", "Hello world"), (0, "1,15043,3186\n")),
        (("tokenize", "--model", spm, "--text", "Hello world", "--no-special"), (0, "15043,3186\n")),
        (("tokenize", "--model", os.path.join(TOK, "llama3"), "--text", "Hello world<|eot_id|>", "--parse-special"),
         (0, "9906,1917,128009\n")),
        (("detokenize", "--tokenizer", spm, "--ids", "1,15043,3186"), (0, "<s> Hello world\n")),
        (("detokenize", "--tokenizer", spm, "--ids", "1,15043,3186", "--skip-special"), (0, "Hello world\n")),
    ]
    for args, want in cases:
        rc, out, err = run(*args)
        ok = (rc, out) == want
        print(f"  {' '.join(args[:1] + args[3:])}: {'ok' if ok else f'got {(rc, out, err)!r}, want {want!r}'}")
        if not ok:
            failures.append("cli")
    for args in (("tokenize", "--model", "/nonexistent/model", "--text", "x"),
                 ("detokenize", "--tokenizer", spm, "--ids", "1,x")):
        rc, out, err = run(*args)
        ok = rc == 1 and out == "" and len(err.strip().splitlines()) == 1
        print(f"  error {' '.join(args)}: {'ok' if ok else f'rc {rc}, stderr {err!r}'}")
        if not ok:
            failures.append("cli errors")


def main():
    cli_checks()
    with tempfile.TemporaryDirectory(prefix="ferrum_tok_hf_") as work:
        differential_checks(work)
    if failures:
        print("FAILED:", ", ".join(failures))
        sys.exit(1)
    print("all checks passed")


def differential_checks(work):
    for name in ("qwen3", "llama3"):
        path = os.path.join(TOK, name, "tokenizer.json")
        hf = tokenizers.Tokenizer.from_file(path)
        specials = [t.content for t in hf.get_added_tokens_decoder().values()][:40]
        specials += ["<|im_", "<|endoftext|", "<think>", "</think>", "<|begin_of_text|>x", "<<|eot_id|>>"]
        check(name, path, hf, gen_strings(1, N_STRINGS, specials))

    vocab_dir = os.path.join(TOK, "gguf-vocab")
    spm_gguf = os.path.join(vocab_dir, "ggml-vocab-llama-spm.gguf")
    spm = spm_reference(spm_gguf)
    spm_json = os.path.join(work, "spm", "tokenizer.json")
    os.makedirs(os.path.dirname(spm_json))
    spm.save(spm_json)
    spm_texts = gen_strings(2, N_VARIANT, ["<s>", "</s>", "<unk>", "<0x41>", "<s"])
    check("llama-spm tokenizer.json", spm_json, spm, spm_texts)
    check("llama-spm GGUF", spm_gguf, spm, spm_texts)
    # The newer (legacy=False) layout: a Metaspace pre-tokenizer that prepends only at the start.
    spm.normalizer = None
    spm.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    spm.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    spm_json = os.path.join(work, "spm_metaspace", "tokenizer.json")
    os.makedirs(os.path.dirname(spm_json))
    spm.save(spm_json)
    check("llama-spm tokenizer.json with Metaspace", spm_json, spm, spm_texts)

    gpt2_gguf = os.path.join(vocab_dir, "ggml-vocab-gpt-2.gguf")
    check("gpt-2 GGUF", gpt2_gguf, gpt2_reference(gpt2_gguf), gen_strings(3, N_VARIANT, ["<|endoftext|>"]))

    flags = added_flags_reference(gpt2_gguf)
    flags_json = os.path.join(work, "flags", "tokenizer.json")
    os.makedirs(os.path.dirname(flags_json))
    flags.save(flags_json)
    check("gpt-2 tokenizer.json with lstrip/rstrip/single_word/normalized added tokens", flags_json, flags,
          gen_strings(5, N_VARIANT, ["<mask>", " <mask>", "  <mask> ", "[RS]", "[RS]  x", "hello", "Hello", "xhello",
                                     "hello_", "abc", "ABC", "ab", "bc", "New York", "new york", "NEW YORK"]))

    bert_gguf = os.path.join(vocab_dir, "ggml-vocab-bert-bge.gguf")
    bert_dir = os.path.join(work, "bert")
    os.makedirs(bert_dir)
    with open(os.path.join(bert_dir, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(bert_vocab(bert_gguf)) + "\n")
    bert = tokenizers.BertWordPieceTokenizer(os.path.join(bert_dir, "vocab.txt"), lowercase=True)
    bert_json = os.path.join(work, "bert_json", "tokenizer.json")
    os.makedirs(os.path.dirname(bert_json))
    bert.save(bert_json)
    bert_ref = tokenizers.Tokenizer.from_file(bert_json)
    bert_texts = gen_strings(4, N_STRINGS, ["[CLS]", "[SEP]", "[MASK]", "[UNK]", "[PAD]", "[unused1]"])
    check("bert GGUF", bert_gguf, bert_ref, bert_texts)
    check("bert vocab.txt folder", bert_dir, bert_ref, bert_texts[:N_VARIANT])
    check("bert tokenizer.json", bert_json, bert_ref, bert_texts[:N_VARIANT])


if __name__ == "__main__":
    main()
