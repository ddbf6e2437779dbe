#!/usr/bin/env python3
"""Tokenizer throughput: ferrum vs HF `tokenizers`, one thread each, Qwen3 vocabulary.

The input is 1 MB of mixed English prose and code (the system's license texts and Python standard
library sources, interleaved in fixed order). ferrum's time is measured inside its process
(`ferrum tokenize --timing`, around encode() only); HF's around Tokenizer.encode(). Both start with
a cold word cache ("first pass") and then encode the same text again ("warm", best of 3).
Wall-clock and thread CPU time are both reported: on a busy machine only the CPU time is stable.

  python3 bench/tokenize_speed.py [--ferrum build/tools/ferrum/ferrum] [--tokenizer ../shared/tokenizers/qwen3/tokenizer.json]
"""
import argparse
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import time

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
import tokenizers  # noqa: E402  (after the thread settings)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 1_000_000
PASSES = 4


def mixed_text():
    prose = sorted(glob.glob("/usr/share/common-licenses/*"))
    code = sorted(glob.glob(os.path.join(os.path.dirname(os.__file__), "*.py")))
    if not prose or not code:
        sys.exit("needs /usr/share/common-licenses and the Python standard library sources")
    chunks = []
    total = 0
    i = 0
    while total < SIZE:
        path = (prose if i % 2 == 0 else code)[(i // 2) % (len(prose) if i % 2 == 0 else len(code))]
        with open(path, encoding="utf-8", errors="replace") as f:
            t = f.read()[:20_000]
        chunks.append(t)
        total += len(t.encode())
        i += 1
    return "".join(chunks).encode()[:SIZE].decode(errors="ignore")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ferrum", default=os.environ.get("FERRUM_BIN", os.path.join(ROOT, "build/tools/ferrum/ferrum")))
    ap.add_argument("--tokenizer", default=os.path.join(ROOT, "../shared/tokenizers/qwen3/tokenizer.json"))
    args = ap.parse_args()
    text = mixed_text()
    mb = len(text.encode()) / 1e6

    hf = tokenizers.Tokenizer.from_file(args.tokenizer)
    hf_wall, hf_cpu, hf_ids = [], [], None
    for _ in range(PASSES):
        w0, c0 = time.perf_counter(), time.thread_time()
        hf_ids = hf.encode(text, add_special_tokens=False).ids
        hf_cpu.append(time.thread_time() - c0)
        hf_wall.append(time.perf_counter() - w0)

    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        for _ in range(PASSES):
            f.write(json.dumps(text) + "\n")
        batch = f.name
    try:
        r = subprocess.run([args.ferrum, "tokenize", "--tokenizer", args.tokenizer, "--batch-file", batch,
                            "--no-special", "--timing"], capture_output=True, text=True)
    finally:
        os.unlink(batch)
    if r.returncode != 0:
        sys.exit(f"ferrum failed: {r.stderr}")
    timings = re.findall(r"in ([0-9.]+) ms .*cpu ([0-9.]+) ms", r.stderr)
    fe_wall = [float(w) / 1e3 for w, _ in timings]
    fe_cpu = [float(c) / 1e3 for _, c in timings]
    if json.loads(r.stdout.splitlines()[0]) != hf_ids:
        sys.exit("ferrum and HF ids differ on the benchmark text")

    print(f"input: {mb:.2f} MB mixed English/code, {len(hf_ids)} tokens ({os.path.basename(os.path.dirname(args.tokenizer))}), 1 thread")
    print(f"{'MB/s':8} {'wall first':>11} {'wall warm':>11} {'cpu first':>11} {'cpu warm':>11}")
    for name, w, c in (("ferrum", fe_wall, fe_cpu), ("HF", hf_wall, hf_cpu)):
        print(f"{name:8} {mb / w[0]:11.2f} {mb / min(w[1:]):11.2f} {mb / c[0]:11.2f} {mb / min(c[1:]):11.2f}")
    print(f"ferrum / HF (cpu): {hf_cpu[0] / fe_cpu[0]:.1f}x first pass, {min(hf_cpu[1:]) / min(fe_cpu[1:]):.1f}x warm")


if __name__ == "__main__":
    main()
