#!/usr/bin/env python3
"""`ferrum bench`: with -d (llama-bench's --n-depth) each depth gets its own pp and tg rows, measured after
that many tokens were put in the cache; a depth the KV capacity cannot hold is one clear error."""
import json
import os
import subprocess
import sys

FERRUM = os.environ["FERRUM_BIN"]
SHARED = os.environ.get("FERRUM_SHARED") or os.environ["FERRUM_SHARED_DEFAULT"]
MODEL = os.path.join(SHARED, "models", "stories260K.gguf")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from pycheck import check, summary  # noqa: E402


def main():
    base = [FERRUM, "bench", "-m", MODEL, "--backend", "cpu", "-t", "1", "-p", "16", "-n", "8", "-r", "1"]
    p = subprocess.run(base + ["-d", "0,40", "--json"], capture_output=True, text=True)
    check(p.returncode == 0, f"bench -d 0,40 exits 0 (rc={p.returncode}, {p.stderr.strip()[:200]})")
    rows = json.loads(p.stdout) if p.returncode == 0 else []
    got = [(r["test"], r["depth"]) for r in rows]
    want = [("pp16", 0), ("tg8", 0), ("pp16 @ d40", 40), ("tg8 @ d40", 40)]
    check(got == want, f"rows {got} == {want}")
    check(all(r["tokens_per_s"] > 0 for r in rows), "every row has a positive rate")

    # The KV capacity must hold depth + prompt + generated tokens.
    p = subprocess.run(base + ["-d", "100", "--kv-capacity", "64"], capture_output=True, text=True)
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    check(p.returncode == 1 and len(lines) == 1 and "KV capacity" in lines[0],
          f"depth beyond --kv-capacity: one error line, rc 1 (rc={p.returncode}, {lines})")
    p = subprocess.run(base + ["-d", "-5"], capture_output=True, text=True)
    check(p.returncode != 0 and "--n-depth" in p.stderr, f"negative depth rejected (rc={p.returncode})")
    return summary()


if __name__ == "__main__":
    sys.exit(main())
