#!/usr/bin/env python3
"""`ferrum run`: the one-shot greedy text of stories260K equals llama.cpp's recorded greedy text; the
interactive chat (driven through a pseudo-terminal) keeps the conversation's KV between turns and
prefills only the new tokens; /clear and /exit work; bad input gives one clear line and exit != 0."""
import os
import re
import subprocess
import sys
import tempfile

try:
    import pexpect
except ImportError as e:
    print(f"skip: {e}")
    sys.exit(77)

FERRUM = os.environ["FERRUM_BIN"]
SHARED = os.environ.get("FERRUM_SHARED") or os.environ["FERRUM_SHARED_DEFAULT"]
MODEL = os.path.join(SHARED, "models", "stories260K.gguf")
FIX = os.path.join(SHARED, "fixtures", "gguf", "stories260K")
CHATML = """{% for m in messages %}<|im_start|>{{ m.role }}
{{ m.content }}<|im_end|>
{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from pycheck import check, summary  # noqa: E402


def main():
    if not os.path.exists(MODEL):
        print("skip: no stories260K")
        return 77
    # One-shot greedy text, same prompt tokenization as llama.cpp (BOS + SentencePiece).
    want = open(os.path.join(FIX, "greedy_text.txt"), encoding="utf-8").read()
    p = subprocess.run([FERRUM, "run", "--model", MODEL, "--raw", "--prompt", "Once upon a time, there was a little girl",
                        "--temp", "0", "-n", "64"], capture_output=True, text=True)
    check(p.returncode == 0 and p.stdout == want, f"one-shot greedy text == llama.cpp's (rc={p.returncode}, got {p.stdout[:60]!r}...)")

    with tempfile.TemporaryDirectory() as tmp:
        tpl = os.path.join(tmp, "chatml.jinja")
        open(tpl, "w").write(CHATML)
        child = pexpect.spawn(FERRUM, ["run", "--model", MODEL, "--chat-template", tpl, "--temp", "0", "-n", "8", "-v",
                                       "--backend", "cpu"], encoding="utf-8", timeout=60)
        stats = re.compile(r"\[prompt (\d+) tokens \((\d+) cached, (\d+) prefilled\)")
        child.expect("> ")
        # A CUDA build opens cuBLAS only for a CUDA backend (linked, cuBLASLt alone made ~150 MB resident).
        with open(f"/proc/{child.pid}/maps") as maps:
            check("libcublas" not in maps.read(), "a CPU run does not map cuBLAS")
        child.sendline("Lily went to the park")
        child.expect(stats)
        n1, c1, p1 = map(int, child.match.groups())
        check(c1 == 0 and p1 == n1, f"first turn prefills the whole prompt ({n1} tokens, {c1} cached)")
        child.expect("> ")
        child.sendline("She saw a dog")
        child.expect(stats)
        n2, c2, p2 = map(int, child.match.groups())
        check(n2 > n1 and c2 >= n1 and p2 == n2 - c2 and p2 < n2,
              f"second turn prefills only new tokens ({n2} tokens: {c2} cached, {p2} prefilled)")
        child.expect("> ")
        child.sendline("/clear")
        child.expect(r"\(conversation cleared\)")
        child.expect("> ")
        child.sendline("She saw a dog")
        child.expect(stats)
        n3, c3, p3 = map(int, child.match.groups())
        check(c3 == 0 and p3 == n3, f"after /clear the prompt is prefilled in full ({n3} tokens, {c3} cached)")
        child.expect("> ")
        child.sendline("/exit")
        child.expect(pexpect.EOF)
        child.close()
        check(child.exitstatus == 0, f"/exit ends with status 0 (got {child.exitstatus})")

    for args, needle in [
        (["run", "--model", MODEL, "--bogus-flag"], "bogus"),
        (["run", "--model", "/nonexistent/model.gguf", "--prompt", "hi"], "model.gguf"),
        (["run", "--model", MODEL, "--raw", "--ctx-size", "8", "--prompt", "Once upon a time there was a big dog and a cat"],
         "context"),
        (["run", "--model", MODEL, "--prompt", "hi"], "chat template"),
    ]:
        p = subprocess.run([FERRUM] + args, capture_output=True, text=True)
        lines = [l for l in p.stderr.splitlines() if l.strip()]
        check(p.returncode != 0 and p.returncode < 128 and len(lines) >= 1 and needle in p.stderr,
              f"{' '.join(args[1:])[:60]}: rc={p.returncode}, {lines[:1]}")
    # No --model, no FERRUM_MODEL and an empty model cache: say how to get the default model.
    env = {k: v for k, v in os.environ.items() if k != "FERRUM_MODEL"}
    with tempfile.TemporaryDirectory() as cache:
        p = subprocess.run([FERRUM, "run", "--prompt", "hi"], capture_output=True, text=True,
                           env=dict(env, FERRUM_CACHE=cache))
    check(p.returncode == 1 and "scripts/fetch_models" in p.stderr and "--model" in p.stderr,
          f"run without a model and an empty cache: rc={p.returncode}, {p.stderr.strip()[:100]}")
    return summary()


if __name__ == "__main__":
    sys.exit(main())
