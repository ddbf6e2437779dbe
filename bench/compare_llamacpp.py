#!/usr/bin/env python3
"""Side-by-side speed of ferrum and llama.cpp on the same GGUF file, same thread count, same
machine, alternating runs. llama.cpp comes from PyPI `llama-cpp-python` built from source with
native CPU flags:

  CMAKE_ARGS="-DGGML_NATIVE=ON" pip install --no-cache-dir llama-cpp-python
  # where the CPU advertises AMX and llama.cpp's AMX path crashes (a VM here, 2026-11-29):
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=ON
    -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON" pip install --no-cache-dir llama-cpp-python
  python3 bench/compare_llamacpp.py MODEL.gguf [MODEL2.gguf ...] -t 2 -p 128 -n 64 -r 3 [-d 1024]

Prints pp/tg tokens/s of both (mean ± sd over repetitions) and ferrum / llama.cpp ratios. With -d, both
engines first put that many tokens in the cache (untimed), as llama-bench -d and ferrum bench -d do.
"""
import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
import time


def ferrum_bench(binary, model, threads, pp, tg, reps, mmap, depth):
    out = subprocess.run([binary, "bench", "-m", model, "-t", str(threads), "-p", str(pp), "-n", str(tg), "-r",
                          str(reps), "-d", str(depth), "--json"] + ([] if mmap else ["--no-mmap"]),
                         check=True, capture_output=True, text=True).stdout
    rows = json.loads(out)
    return {r["test"]: (r["tokens_per_s"], r["stddev"]) for r in rows}


def llamacpp_bench(model, threads, pp, tg, reps, mmap, depth):
    import llama_cpp as lc
    lc.llama_backend_init()
    mp = lc.llama_model_default_params()
    mp.use_mmap = mmap
    m = lc.llama_model_load_from_file(model.encode(), mp)
    if not m:
        raise RuntimeError(f"llama.cpp could not load {model}")
    cp = lc.llama_context_default_params()
    cp.n_ctx = depth + pp + tg + 16
    cp.n_batch = max(pp, 512)
    cp.n_ubatch = max(pp, 512)
    cp.n_threads = threads
    cp.n_threads_batch = threads
    ctx = lc.llama_init_from_model(m, cp)
    vocab = lc.llama_n_vocab(lc.llama_model_get_vocab(m))
    import random
    rnd = random.Random(42)
    prompt = [rnd.randrange(vocab) for _ in range(pp)]
    context = [rnd.randrange(vocab) for _ in range(depth)]

    def decode(tokens, pos0):
        b = lc.llama_batch_init(len(tokens), 0, 1)
        b.n_tokens = len(tokens)
        for i, t in enumerate(tokens):
            b.token[i] = t
            b.pos[i] = pos0 + i
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = 0
            b.logits[i] = i == len(tokens) - 1
        rc = lc.llama_decode(ctx, b)
        lc.llama_batch_free(b)
        if rc != 0:
            raise RuntimeError(f"llama_decode failed: {rc}")

    def restart():  # empty cache, then the depth
        mem = lc.llama_get_memory(ctx) if hasattr(lc, "llama_get_memory") else None
        if mem is not None:
            lc.llama_memory_clear(mem, True)
        else:
            lc.llama_kv_self_clear(ctx)
        # The depth's tokens, untimed, in batches of n_batch.
        for i in range(0, depth, cp.n_batch):
            decode(context[i:i + cp.n_batch], i)

    pp_rates, tg_rates = [], []
    for rep in range(-1, reps):  # one warm-up round
        if pp:
            restart()
            t0 = time.perf_counter()
            decode(prompt, depth)
            lc.llama_synchronize(ctx)
            if rep >= 0:
                pp_rates.append(pp / (time.perf_counter() - t0))
        if tg:
            restart()
            t0 = time.perf_counter()
            tok = prompt[0] if prompt else 1  # -p 0: decode from an arbitrary token
            for i in range(tg):
                decode([tok], depth + i)
                logits = lc.llama_get_logits_ith(ctx, -1)
                tok = max(range(min(vocab, 64)), key=lambda j: logits[j])  # cheap stand-in for sampling
            lc.llama_synchronize(ctx)
            if rep >= 0:
                tg_rates.append(tg / (time.perf_counter() - t0))
    lc.llama_free(ctx)
    lc.llama_model_free(m)
    res = {}
    at = f" @ d{depth}" if depth else ""
    if pp_rates:
        res[f"pp{pp}{at}"] = (statistics.mean(pp_rates), statistics.stdev(pp_rates) if len(pp_rates) > 1 else 0.0)
    if tg_rates:
        res[f"tg{tg}{at}"] = (statistics.mean(tg_rates), statistics.stdev(tg_rates) if len(tg_rates) > 1 else 0.0)
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+")
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("-p", "--n-prompt", type=int, default=128)
    ap.add_argument("-n", "--n-gen", type=int, default=64)
    ap.add_argument("-r", "--repetitions", type=int, default=3)
    ap.add_argument("-d", "--n-depth", type=int, default=0, help="tokens in the cache before pp and tg")
    ap.add_argument("--rounds", type=int, default=2, help="alternating ferrum/llama.cpp rounds")
    ap.add_argument("--ferrum", default=os.environ.get("FERRUM_BIN", "build/tools/ferrum/ferrum"))
    ap.add_argument("--no-mmap", action="store_true",
                    help="both engines load the weights into memory instead of mapping the file")
    a = ap.parse_args()
    import llama_cpp
    print(f"llama.cpp via llama-cpp-python {llama_cpp.__version__}; threads {a.threads}"
          f"{'; --no-mmap (both)' if a.no_mmap else ''}")
    print(f"| model | test | ferrum t/s | llama.cpp t/s | ratio |")
    print(f"|---|---|---:|---:|---:|")
    for model in a.models:
        fr, lr = {}, {}
        for _ in range(a.rounds):  # alternate so drift (thermal, other load) hits both
            for k, v in ferrum_bench(a.ferrum, model, a.threads, a.n_prompt, a.n_gen, a.repetitions,
                                     not a.no_mmap, a.n_depth).items():
                fr.setdefault(k, []).append(v[0])
            for k, v in llamacpp_bench(model, a.threads, a.n_prompt, a.n_gen, a.repetitions, not a.no_mmap,
                                       a.n_depth).items():
                lr.setdefault(k, []).append(v[0])
        for k in fr:
            f, l = statistics.mean(fr[k]), statistics.mean(lr[k])
            print(f"| {os.path.basename(model)} | {k} | {f:.2f} | {l:.2f} | {f / l:.2f}x |")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
