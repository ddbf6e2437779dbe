#!/usr/bin/env python3
"""Closed-loop concurrency sweep against an OpenAI-compatible server (`ferrum serve`, llama.cpp's
server from llama-cpp-python, llama.cpp's native `llama-server`, or any base URL).

At each concurrency level C (default 1,4,16,32,64) C clients each send streaming /v1/completions
requests back to back (a new one as soon as the previous ends) for --level-seconds; requests in
flight at the deadline run to completion. Prompts are random English words, a different sequence
per request (no shared prefix to cache), calibrated against the server's own usage.prompt_tokens
to about --input-len tokens; every request asks for exactly --output-len tokens, greedy
(temperature 0, top_p 1, top_k 0/1, min_p 0, no penalties), with EOS ignored (below). Per level it
reports: requests completed, output tok/s (aggregate: completion tokens streamed inside the level's
window / the window), TTFT p50/p99 (request sent → first non-empty text chunk, queueing included),
inter-token latency p50/p99 (gap between successive text chunks of a stream), mean prompt/output
tokens, short responses and errors. Also TPOT p50/p99 (per request: (last chunk - first chunk) /
(output tokens - 1)) and tokens per chunk: a server may put several tokens in one SSE event when the
client reads slower than it generates (ferrum sends whatever text is pending), which makes the
chunk gaps (ITL) fewer and larger; TPOT is unaffected by that.

  # a ferrum server it starts itself (threads -t, seqs = largest level, context = 1.5 x in + out + 64):
  python3 bench/serve_load.py --ferrum build/tools/ferrum/ferrum --model M.gguf -t 2
  # llama.cpp's server from PyPI llama-cpp-python[server], started here:
  python3 bench/serve_load.py --llamacpp M.gguf -t 2
  # llama.cpp's native server binary, started here with -np (parallel slots) = largest level:
  python3 bench/serve_load.py --llama-server /path/to/llama-server --model M.gguf -t 2
  # a server already running:
  python3 bench/serve_load.py --url http://127.0.0.1:8080 [--api-key K]
  options: --concurrency 1,4,16 --input-len 256 --output-len 128 --level-seconds 60 --json out.json

llama-cpp-python's server (`python3 -m llama_cpp.server`, v0.3.x) has no parallel decoding: one
`Llama` object behind a lock, so concurrent requests queue and run one at a time (its
--n_threads / --n_threads_batch set the threads, --n_ctx the one context, which holds a single
sequence). Its default --interrupt_requests true makes a newly arriving request END the stream in
progress early (it sends [DONE] mid-generation), so it is started with `--interrupt_requests false`
(with --url pointing at one, start it that way yourself). It has no ignore_eos field: EOS is ignored
with `logit_bias` {id: -100} for every end-of-generation token of the GGUF (tokenizer.ggml.eos/eot/eom
ids and the usual EOG token texts, read with PyPI `gguf`; override with --eog-ids) plus
`min_tokens` = --output-len (its MinTokensLogitsProcessor masks EOS until then); `repeat_penalty`
1.0 because its default is 1.1. Its stream has no include_usage chunk, so output tokens are counted
as text chunks (it sends one per token). llama.cpp's native `llama-server` does batch: -np N slots
with continuous batching, and takes `ignore_eos: true` like ferrum; its -c is the total context
shared by the slots, so it is started with -c = N x (1.5 x in + out + 64).

A request whose output is shorter than --output-len counts as "short" (EOS not ignored, or a server
that cut the stream); any non-200 answer, exception or stream without [DONE] counts as an error.
"""
import argparse
import http.client
import json
import os
import random
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

WORDS = ("the of and to in is was he for it with as his on be at by had are but from or have an they which one you were "
         "her all she there would their we him been has when who will more no if out so said what up its about into "
         "than them can only other new some could time these two may then do first any my now such like our over man "
         "me even most made after also did many before must through back years where much your way well down should "
         "because each just those people how too little state good very make world still own see men work long get "
         "here between both life being under never day same another know while last might us great old year off come "
         "since against go came right used take three states himself few house use during without again place around "
         "however home small found thought went say part once general high upon school every does got united left "
         "number course war until always away something fact though water less public put think almost hand enough far "
         "took head yet government system better set told nothing night end why called didn eyes find going look asked "
         "later knew point next program city business give group toward young days let room president side social given "
         "present several order national possible rather second face per among form important often things looked early "
         "white case john become large big need four within felt along children saw best church ever least power "
         "development light thing seemed family interest want members mind country area others done turned although open "
         "god service certain kind problem began different door thus help sense means whole matter perhaps itself york "
         "times law human line above name example action company hands local show five history gave today either act "
         "feet across taken past quite anyone having seen death experience body word half really week field car words "
         "already themselves information tell together college shall money period held keep sure probably free seems "
         "real behind cannot miss political air question making office brought whose special major heard problems ago "
         "became federal moment study available known result street economic boy position reason change south board "
         "individual job society areas west close turn love community true court force full seem").split()

EOG_TEXTS = {"<|endoftext|>", "<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<|eom_id|>", "</s>", "<end_of_turn>",
             "<|end|>", "<|return|>", "<|call|>", "<EOT>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def eog_ids_of(gguf_path):
    """End-of-generation token ids of a GGUF, as llama.cpp's vocab marks them."""
    import gguf  # PyPI gguf
    r = gguf.GGUFReader(gguf_path)
    ids = set()
    for key in ("tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"):
        f = r.fields.get(key)
        if f is not None:
            ids.add(int(f.parts[f.data[0]][0]))
    f = r.fields.get("tokenizer.ggml.tokens")
    if f is not None:
        for i, idx in enumerate(f.data):
            if bytes(f.parts[idx]).decode("utf-8", errors="replace") in EOG_TEXTS:
                ids.add(i)
    return sorted(ids)


class Conn:
    def __init__(self, base, api_key):
        host_port = base.split("://", 1)[1].rstrip("/")
        self.host, port = host_port.rsplit(":", 1)
        self.port = int(port)
        self.headers = {"Content-Type": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"

    def get(self, path, timeout=5):
        c = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            c.request("GET", path, headers=self.headers)
            r = c.getresponse()
            return r.status, r.read().decode("utf-8", "replace")
        finally:
            c.close()

    def post(self, path, body, timeout=600):
        c = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            c.request("POST", path, body=json.dumps(body), headers=self.headers)
            r = c.getresponse()
            return r.status, r.read().decode("utf-8", "replace")
        finally:
            c.close()

    def stream(self, path, body, timeout=600):
        """Returns dict: t_send, t_chunks (time of each non-empty text chunk), text_chunks, usage,
        finish, done, status, error."""
        out = {"t_chunks": [], "usage": None, "finish": None, "done": False, "status": None, "error": None}
        c = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            out["t_send"] = time.perf_counter()
            c.request("POST", path, body=json.dumps(body), headers=dict(self.headers, Accept="text/event-stream"))
            r = c.getresponse()
            out["status"] = r.status
            if r.status != 200:
                out["error"] = f"HTTP {r.status}: {r.read()[:200].decode('utf-8', 'replace')}"
                return out
            while True:
                line = r.readline()
                if not line:
                    break
                if not line.startswith(b"data:"):
                    continue
                payload = line[5:].strip()
                if payload == b"[DONE]":
                    out["done"] = True
                    break
                ev = json.loads(payload)
                now = time.perf_counter()
                if ev.get("usage"):
                    out["usage"] = ev["usage"]
                for ch in ev.get("choices") or []:
                    if ch.get("text"):
                        out["t_chunks"].append(now)
                    if ch.get("finish_reason"):
                        out["finish"] = ch["finish_reason"]
            if not out["done"]:
                out["error"] = "stream ended without [DONE]"
        except Exception as e:  # noqa: BLE001
            out["error"] = f"{type(e).__name__}: {e}"
        finally:
            c.close()
        return out


def pct(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


class Bench:
    def __init__(self, args, conn, model_name, kind, eog_ids):
        self.a, self.conn, self.model, self.kind, self.eog = args, conn, model_name, kind, eog_ids
        self.rng = random.Random(args.seed)
        self.words_per_prompt = None
        self.lock = threading.Lock()

    def body(self, prompt, max_tokens):
        b = {"model": self.model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "top_p": 1.0,
             "stream": True}
        if self.kind in ("ferrum", "llama-server", "url"):
            b["ignore_eos"] = True
        if self.kind in ("ferrum", "url"):
            b["stream_options"] = {"include_usage": True}
        if self.kind in ("llamacpp", "llama-server"):
            b.update(top_k=0 if self.kind == "llama-server" else 1, min_p=0.0, repeat_penalty=1.0)
        if self.kind == "llamacpp":
            b["min_tokens"] = max_tokens
        if self.eog and self.kind in ("llamacpp", "url"):
            b["logit_bias"] = {str(i): -100 for i in self.eog}
        return b

    def prompt(self, n_words):
        with self.lock:
            return " ".join(self.rng.choice(WORDS) for _ in range(n_words))

    def calibrate(self):
        """Words per prompt so the server counts about --input-len prompt tokens."""
        n = max(4, self.a.input_len // 4)  # start short: a prompt over a llama.cpp context is a 500 there
        for _ in range(4):
            b = self.body(self.prompt(n), 1)
            b["stream"] = False
            b.pop("stream_options", None)
            b.pop("min_tokens", None)
            st, text = self.conn.post("/v1/completions", b)
            if st != 200:
                raise RuntimeError(f"calibration request failed: {st} {text[:300]}")
            got = json.loads(text)["usage"]["prompt_tokens"]
            if abs(got - self.a.input_len) <= max(4, self.a.input_len // 50):
                break
            n = max(1, round(n * self.a.input_len / got))
        self.words_per_prompt = n
        return n, got

    def level(self, conc):
        a = self.a
        results = []
        rlock = threading.Lock()
        t0 = time.perf_counter()
        deadline = t0 + a.level_seconds
        count = [0]

        def worker():
            while time.perf_counter() < deadline:
                with rlock:
                    if a.max_requests and count[0] >= a.max_requests:
                        return
                    count[0] += 1
                r = self.conn.stream("/v1/completions", self.body(self.prompt(self.words_per_prompt), a.output_len),
                                     timeout=a.request_timeout)
                with rlock:
                    results.append(r)

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(conc)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        t_end = time.perf_counter()
        window = min(t_end, deadline) - t0

        ok = [r for r in results if not r["error"]]
        errors = [r for r in results if r["error"]]
        ttft, itl, tpot, tokens_in_window, tokens_total, prompt_toks, short, chunks = [], [], [], 0.0, 0, [], 0, 0
        for r in ok:
            n = (r["usage"] or {}).get("completion_tokens") or len(r["t_chunks"])
            tokens_total += n
            if r["usage"] and r["usage"].get("prompt_tokens"):
                prompt_toks.append(r["usage"]["prompt_tokens"])
            if n < a.output_len:
                short += 1
            if r["t_chunks"]:
                chunks += len(r["t_chunks"])
                ttft.append(r["t_chunks"][0] - r["t_send"])
                if n > 1:
                    tpot.append((r["t_chunks"][-1] - r["t_chunks"][0]) / (n - 1))
                itl.extend(b - x for x, b in zip(r["t_chunks"], r["t_chunks"][1:]))
                per_chunk = n / len(r["t_chunks"])
                tokens_in_window += per_chunk * sum(1 for t in r["t_chunks"] if t <= deadline)
        for r in errors:  # partial output of failed streams still counts as served tokens in the window
            tokens_in_window += sum(1 for t in r["t_chunks"] if t <= deadline)
        ms = lambda x: None if x is None else round(1000 * x, 2)  # noqa: E731
        return {
            "concurrency": conc,
            "seconds": round(window, 2),
            "wall_seconds_incl_tail": round(t_end - t0, 2),
            "requests": len(ok),
            "errors": len(errors),
            "error_samples": sorted({r["error"][:160] for r in errors})[:3],
            "short_responses": short,
            "output_tok_s": round(tokens_in_window / window, 2) if window > 0 else None,
            "output_tokens": tokens_total,
            "mean_prompt_tokens": round(statistics.mean(prompt_toks), 1) if prompt_toks else None,
            "mean_output_tokens": round(tokens_total / len(ok), 1) if ok else None,
            "ttft_ms_p50": ms(pct(ttft, 50)), "ttft_ms_p99": ms(pct(ttft, 99)),
            "itl_ms_p50": ms(pct(itl, 50)), "itl_ms_p99": ms(pct(itl, 99)),
            "tpot_ms_p50": ms(pct(tpot, 50)), "tpot_ms_p99": ms(pct(tpot, 99)),
            "tokens_per_chunk": round(tokens_total / chunks, 2) if chunks else None,
        }


def wait_ready(conn, proc, paths, timeout):
    t_end = time.time() + timeout
    while time.time() < t_end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        for p in paths:
            try:
                st, _ = conn.get(p, timeout=2)
                if st == 200:
                    return
            except OSError:
                pass
        time.sleep(0.25)
    raise RuntimeError(f"server not ready after {timeout}s")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--url", help="base URL of a running server, e.g. http://127.0.0.1:8080")
    src.add_argument("--ferrum", metavar="BIN", help="start `BIN serve --model MODEL`")
    src.add_argument("--llamacpp", metavar="GGUF", help="start `python3 -m llama_cpp.server --model GGUF` (llama-cpp-python[server])")
    src.add_argument("--llama-server", metavar="BIN", help="start llama.cpp's native server binary with --model")
    ap.add_argument("--model", help="model path for --ferrum / --llama-server (and the GGUF read for EOG ids with --url)")
    ap.add_argument("--model-name", help="`model` field of requests (default: the first of /v1/models)")
    ap.add_argument("--api-key")
    ap.add_argument("-t", "--threads", type=int, default=os.cpu_count(), help="server threads (default: all cores)")
    ap.add_argument("-c", "--concurrency", default="1,4,16,32,64")
    ap.add_argument("--input-len", type=int, default=256)
    ap.add_argument("--output-len", type=int, default=128)
    ap.add_argument("--level-seconds", type=float, default=60.0, help="time to keep starting requests at each level")
    ap.add_argument("--max-requests", type=int, default=0, help="also stop a level after this many requests (0: no limit)")
    ap.add_argument("--request-timeout", type=float, default=900.0)
    ap.add_argument("--warmup", type=int, default=2, help="requests before the sweep (not measured)")
    ap.add_argument("--eog-ids", help="comma-separated end-of-generation ids to ban with logit_bias (default: from the GGUF)")
    ap.add_argument("--server-args", default="", help="extra arguments for the server it starts")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", metavar="PATH", help="write the results as JSON (- for stdout)")
    ap.add_argument("--server-log", help="file for the started server's output (default: discarded)")
    a = ap.parse_args()
    levels = [int(x) for x in a.concurrency.split(",") if x.strip()]
    ctx = a.input_len * 3 // 2 + a.output_len + 64  # random prompts vary around --input-len

    proc, kind, gguf_path = None, "url", a.model
    if a.url:
        base = a.url.rstrip("/")
    else:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        if a.ferrum:
            kind = "ferrum"
            if not a.model:
                ap.error("--ferrum needs --model")
            cmd = [a.ferrum, "serve", "--model", a.model, "--host", "127.0.0.1", "--port", str(port), "-t", str(a.threads),
                   "--max-num-seqs", str(max(levels)), "--ctx-size", str(ctx), "--max-queue", str(4 * max(levels))]
        elif a.llamacpp:
            kind, gguf_path = "llamacpp", a.llamacpp
            cmd = [sys.executable, "-m", "llama_cpp.server", "--model", a.llamacpp, "--host", "127.0.0.1", "--port", str(port),
                   "--n_threads", str(a.threads), "--n_threads_batch", str(a.threads), "--n_ctx", str(ctx),
                   "--n_batch", "512", "--interrupt_requests", "false", "--verbose", "false"]
        else:
            kind = "llama-server"
            if not a.model:
                ap.error("--llama-server needs --model")
            np_ = max(levels)
            cmd = [a.llama_server, "-m", a.model, "--host", "127.0.0.1", "--port", str(port), "-t", str(a.threads),
                   "-tb", str(a.threads), "-np", str(np_), "-c", str(np_ * ctx), "--cont-batching"]
        cmd += shlex.split(a.server_args)
        log = open(a.server_log, "w") if a.server_log else subprocess.DEVNULL
        print("starting: " + " ".join(cmd), file=sys.stderr)
        proc = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    conn = Conn(base, a.api_key)
    try:
        wait_ready(conn, proc, ["/health", "/v1/models"], 600)
        if a.model_name:
            model_name = a.model_name
        else:
            st, text = conn.get("/v1/models")
            model_name = json.loads(text)["data"][0]["id"] if st == 200 else "default"
        eog = []
        if a.eog_ids:
            eog = [int(x) for x in a.eog_ids.split(",")]
        elif kind in ("llamacpp", "url") and gguf_path and gguf_path.endswith(".gguf"):
            try:
                eog = eog_ids_of(gguf_path)
            except Exception as e:  # noqa: BLE001
                print(f"warning: could not read EOG ids from {gguf_path}: {e}", file=sys.stderr)
        b = Bench(a, conn, model_name, kind, eog)
        words, got = b.calibrate()
        print(f"server: {kind} {base} model={model_name}; prompts of {words} random words = ~{got} tokens; "
              f"{a.output_len} output tokens; EOG banned by logit_bias: {eog or 'none'}", file=sys.stderr)
        for _ in range(a.warmup):
            r = conn.stream("/v1/completions", b.body(b.prompt(words), min(a.output_len, 16)))
            if r["error"]:
                print(f"warmup error: {r['error']}", file=sys.stderr)
        rows = []
        hdr = (f"{'conc':>4} {'reqs':>5} {'err':>4} {'short':>5} {'out tok/s':>10} {'TTFT p50':>9} {'TTFT p99':>9} "
               f"{'ITL p50':>8} {'ITL p99':>8} {'TPOT p50':>9} {'tok/chunk':>9} {'in/out tok':>11}   (ms)")
        print(hdr)
        for conc in levels:
            row = b.level(conc)
            rows.append(row)
            f = lambda x: "-" if x is None else f"{x:.1f}"  # noqa: E731
            print(f"{conc:>4} {row['requests']:>5} {row['errors']:>4} {row['short_responses']:>5} {f(row['output_tok_s']):>10} "
                  f"{f(row['ttft_ms_p50']):>9} {f(row['ttft_ms_p99']):>9} {f(row['itl_ms_p50']):>8} {f(row['itl_ms_p99']):>8} "
                  f"{f(row['tpot_ms_p50']):>9} {row['tokens_per_chunk'] or '-':>9} "
                  f"{f(row['mean_prompt_tokens']):>5}/{f(row['mean_output_tokens']):<5}", flush=True)
            for e in row["error_samples"]:
                print(f"     error: {e}")
        result = {"server": kind, "base_url": base, "model": model_name, "model_path": a.model or a.llamacpp,
                  "threads": a.threads, "input_len": a.input_len, "output_len": a.output_len,
                  "prompt_words": words, "calibrated_prompt_tokens": got, "level_seconds": a.level_seconds, "eog_banned": eog, "levels": rows}
        if a.json:
            text = json.dumps(result, indent=1)
            if a.json == "-":
                print(text)
            else:
                with open(a.json, "w") as fh:
                    fh.write(text + "\n")
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


if __name__ == "__main__":
    sys.exit(main())
