#!/usr/bin/env python3
"""Bounded load test of `ferrum serve` on stories260K (loopback only).

N concurrent clients (FERRUM_LOAD_CLIENTS, default 64) send requests back to back for
FERRUM_LOAD_SECONDS (default 15; the note's run uses 120): ~80% streaming completions/chats (random
lengths, temperatures, stop strings, token-id and text prompts, a few non-streaming), ~10% that
disconnect mid-stream, ~10% malformed or invalid bodies. The server runs with fewer sequence slots
and KV blocks than clients, so requests queue and compete for blocks.

Checks: the server never dies; every request gets a full response (SSE ending in [DONE] with one
finish_reason and a consistent usage chunk) or a clean OpenAI-shaped 4xx error, none times out;
ferrum_requests_total's finished+cancelled equals the streams that started; at the end
ferrum_kv_blocks_used, ferrum_running_seqs and ferrum_queue_depth return to 0; RSS (VmRSS from
/proc/PID/status) in the second half stays within FERRUM_LOAD_RSS_SLACK (default 10% + 8 MiB) of
the first half's peak. Prints a summary (requests, tokens, errors, RSS).

Environment: FERRUM_BIN, FERRUM_SHARED, FERRUM_LOAD_SECONDS, FERRUM_LOAD_CLIENTS,
FERRUM_LOAD_THREADS (server -t, default 1), FERRUM_LOAD_ARGS (extra `ferrum serve` arguments),
FERRUM_LOAD_SEED. Skips (77) without the model."""
import collections
import json
import os
import random
import shlex
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from server_util import (STORIES, Checker, Server, error_shape_problem, get_metrics, metric, request,  # noqa: E402
                         rss_kib, stream)

FERRUM = os.environ.get("FERRUM_BIN") or os.path.join(os.environ.get("FERRUM_BUILD_DIR", "build"), "tools", "ferrum", "ferrum")
SECONDS = float(os.environ.get("FERRUM_LOAD_SECONDS", "15"))
CLIENTS = int(os.environ.get("FERRUM_LOAD_CLIENTS", "64"))
THREADS = int(os.environ.get("FERRUM_LOAD_THREADS", "1"))
SEED = int(os.environ.get("FERRUM_LOAD_SEED", "1234"))
RSS_SLACK = float(os.environ.get("FERRUM_LOAD_RSS_SLACK", "0.10"))
RSS_SLACK_KIB = 8 * 1024
CTX = 512
MODEL = "stories260K"
TEMPLATE = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}assistant:"
WORDS = ("once upon a time there was a little girl named lily she loved to play outside with her dog "
         "tom the sun was hot and the birds sang in the big green tree one day mom said let us go to "
         "the park and they ran fast because they were happy").split()
check = Checker()


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.c = collections.Counter()
        self.tokens = 0
        self.problems = []  # (kind, description), first few kept

    def add(self, key, tokens=0, problem=None):
        with self.lock:
            self.c[key] += 1
            self.tokens += tokens
            if problem is not None and len(self.problems) < 30:
                self.problems.append(f"{key}: {problem}")


def text_prompt(rng):
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 40)))


def sampling(rng):
    body = {"temperature": rng.choice([0, 0, 0.5, 0.8, 1.0]), "max_tokens": rng.randint(1, 200)}
    if rng.random() < 0.5:
        body["seed"] = rng.randint(0, 2**31)
    if rng.random() < 0.3:
        body["top_p"] = rng.choice([0.5, 0.9, 1.0])
    if rng.random() < 0.2:
        body["top_k"] = rng.choice([1, 10, 40])
    if rng.random() < 0.2:
        body["stop"] = rng.choice(["the", ["park", "."], "\n"])
    if rng.random() < 0.3:
        body["ignore_eos"] = True
    if rng.random() < 0.1:
        body["presence_penalty"] = 0.5
        body["frequency_penalty"] = 0.2
    return body


def good_request(rng):
    """(path, body) of a valid request."""
    body = sampling(rng)
    body["model"] = MODEL
    if rng.random() < 0.5:
        path = "/v1/completions"
        body["prompt"] = text_prompt(rng) if rng.random() < 0.7 else [1] + [rng.randint(3, 511) for _ in range(rng.randint(1, 100))]
    else:
        path = "/v1/chat/completions"
        body["messages"] = [{"role": "user", "content": text_prompt(rng)}]
        if rng.random() < 0.3:
            body["messages"].insert(0, {"role": "system", "content": text_prompt(rng)})
    return path, body


def bad_request(rng):
    """(path, raw body bytes, expected status set) of an invalid request."""
    p = rng.choice(["/v1/completions", "/v1/chat/completions"])
    chat = p.endswith("chat/completions")
    good = {"model": MODEL, "max_tokens": 8}
    if chat:
        good["messages"] = [{"role": "user", "content": "hi"}]
    else:
        good["prompt"] = "hi"
    long = {"messages": [{"role": "user", "content": "x " * 2000}]} if chat else {"prompt": list(range(3, 500)) * 2}
    choices = [
        (b'{"model": "stories260K", "prompt": "abc', {400}),
        (b'\x00\xff\xfe garbage', {400}),
        (b'', {400}),
        (b'null', {400}),
        (json.dumps(dict(good, max_tokens="many")).encode(), {400}),
        (json.dumps(dict(good, temperature=[1])).encode(), {400}),
        (json.dumps(dict(good, n=3)).encode(), {400}),
        (json.dumps(dict(good, model="gpt-5")).encode(), {404}),
        (json.dumps(dict(good, max_tokens=10**6)).encode(), {400}),
        (json.dumps(dict(good, **long)).encode(), {400}),
        (json.dumps(dict(good, stop={"a": 1})).encode(), {400}),
        (json.dumps(dict(good, stream="yes")).encode(), {400}),
        (json.dumps(dict(good, logit_bias=[1, 2])).encode(), {400}),
        ((json.dumps(dict(good, stream=True))[:-5]).encode(), {400}),
    ]
    body, want = rng.choice(choices)
    return p, body, want


def client(idx, deadline, tally):
    rng = random.Random(SEED * 1000 + idx)
    while time.time() < deadline:
        r = rng.random()
        try:
            if r < 0.10:
                path, body, want = bad_request(rng)
                st, resp = request("POST", BASE + path, body=body, timeout=120)
                problem = error_shape_problem(resp)
                if st == 429 and problem is None:
                    tally.add("rejected_429")
                elif st in want and problem is None:
                    tally.add("bad_request_clean_error")
                else:
                    tally.add("bad_request_unclean", problem=f"{path} {body[:80]!r}: want {want}, got {st} {problem or ''} {str(resp)[:120]}")
            elif r < 0.20:
                path, body = good_request(rng)
                body["stream"] = True
                body["max_tokens"] = rng.randint(32, 256)
                body["ignore_eos"] = True
                cut_after = rng.randint(1, 12)
                st, events, done, err = stream(BASE + path, body, timeout=120, on_event=lambda i, e: i + 1 < cut_after)
                if st == 200 and not done:
                    tally.add("disconnected")
                elif st == 200 and done:
                    tally.add("disconnect_but_finished_first")
                elif st == 429 and error_shape_problem(err) is None:
                    tally.add("rejected_429")
                else:
                    tally.add("disconnect_unexpected_status", problem=f"{st} {str(err)[:160]}")
            else:
                path, body = good_request(rng)
                if rng.random() < 0.9:
                    body["stream"] = True
                    body["stream_options"] = {"include_usage": True}
                    st, events, done, err = stream(BASE + path, body, timeout=120)
                    if st == 429 and error_shape_problem(err) is None:
                        tally.add("rejected_429")
                        continue
                    problem = validate_stream(path, body, st, events, done, err)
                    if problem:
                        tally.add("stream_incomplete", problem=f"{path} max_tokens={body['max_tokens']}: {problem}")
                    else:
                        tally.add("stream_ok", tokens=events[-1]["usage"]["completion_tokens"])
                else:
                    st, resp = request("POST", BASE + path, body=body, timeout=120)
                    if st == 429 and error_shape_problem(resp) is None:
                        tally.add("rejected_429")
                        continue
                    problem = validate_full(path, body, st, resp)
                    if problem:
                        tally.add("full_invalid", problem=f"{path}: {problem}")
                    else:
                        tally.add("full_ok", tokens=resp["usage"]["completion_tokens"])
        except Exception as e:  # noqa: BLE001  (timeouts, resets: each is a lost request)
            tally.add("lost", problem=f"{type(e).__name__}: {e}")


def validate_usage(body, usage, finish):
    if not isinstance(usage, dict):
        return f"no usage: {usage}"
    ct, pt, tt = usage.get("completion_tokens"), usage.get("prompt_tokens"), usage.get("total_tokens")
    if not (isinstance(ct, int) and isinstance(pt, int) and tt == ct + pt and pt > 0):
        return f"usage inconsistent {usage}"
    if ct > body["max_tokens"]:
        return f"{ct} tokens > max_tokens {body['max_tokens']}"
    if finish == "length" and ct != body["max_tokens"]:
        return f"finish length with {ct} != max_tokens {body['max_tokens']}"
    if body.get("ignore_eos") and not body.get("stop") and finish != "length":
        return f"ignore_eos without stop but finish {finish}"
    return None


def validate_stream(path, body, st, events, done, err):
    if st != 200:
        return f"status {st} {str(err)[:160]}"
    if not done:
        return f"no [DONE] after {len(events)} events"
    if not events or "usage" not in events[-1] or events[-1].get("choices"):
        return "last event is not the include_usage chunk"
    fins = [e["choices"][0].get("finish_reason") for e in events if e.get("choices")]
    fins = [f for f in fins if f]
    if len(fins) != 1 or fins[0] not in ("stop", "length"):
        return f"finish_reasons {fins}"
    return validate_usage(body, events[-1]["usage"], fins[0])


def validate_full(path, body, st, resp):
    if st != 200 or not isinstance(resp, dict):
        return f"status {st} {str(resp)[:160]}"
    try:
        c = resp["choices"][0]
        fin = c["finish_reason"]
        text = c["message"]["content"] if "chat" in path else c["text"]
    except (KeyError, IndexError, TypeError) as e:
        return f"malformed response ({e}): {str(resp)[:160]}"
    if fin not in ("stop", "length") or not isinstance(text, str):
        return f"finish_reason {fin}"
    return validate_usage(body, resp.get("usage"), fin)


def monitor(srv, stop, samples, t0):
    while not stop.is_set():
        rss = rss_kib(srv.pid)
        row = {"t": time.time() - t0, "rss_kib": rss}
        try:
            m, _ = get_metrics(srv.base, timeout=10)
            for k in ("queue_depth", "running_seqs", "kv_blocks_used"):
                row[k] = metric(m, "ferrum_" + k)
        except Exception as e:  # noqa: BLE001
            row["metrics_error"] = str(e)
        samples.append(row)
        stop.wait(1.0)


def main():
    global BASE
    if not os.path.exists(STORIES):
        print(f"skip: no {STORIES}")
        return 77
    if not os.path.exists(FERRUM):
        print(f"skip: no ferrum binary at {FERRUM}")
        return 77
    with tempfile.TemporaryDirectory() as tmp:
        tpl = os.path.join(tmp, "chat.jinja")
        with open(tpl, "w") as f:
            f.write(TEMPLATE)
        args = ["--chat-template", tpl, "--ctx-size", CTX, "-t", THREADS, "--max-num-seqs", 32, "--max-num-batched-tokens", 256,
                "--max-queue", 1024, "--kv-blocks", 256, "--shutdown-timeout", 10] + shlex.split(os.environ.get("FERRUM_LOAD_ARGS", ""))
        try:
            srv = Server(FERRUM, STORIES, *args)
        except RuntimeError as e:
            check(False, f"server start: {e}")
            return 1
        BASE = srv.base
        print(f"server {srv.base} pid {srv.pid}: {' '.join(srv.cmd[1:])}")
        print(f"{CLIENTS} clients for {SECONDS:.0f} s")
        tally = Tally()
        samples = []
        stop = threading.Event()
        t0 = time.time()
        mon = threading.Thread(target=monitor, args=(srv, stop, samples, t0), daemon=True)
        mon.start()
        deadline = t0 + SECONDS
        threads = [threading.Thread(target=client, args=(i, deadline, tally), daemon=True) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(max(1.0, deadline + 150 - time.time()))
        wall = time.time() - t0
        drain = max(0.0, time.time() - deadline)
        hung = sum(t.is_alive() for t in threads)
        stop.set()
        mon.join(15)

        alive = srv.alive()
        check(alive, f"server alive after the load (exit code {srv.proc.returncode})")
        check(hung == 0, f"every client thread finished ({hung} still waiting 150 s after the deadline)")
        c = tally.c
        started = c["stream_ok"] + c["full_ok"] + c["stream_incomplete"] + c["full_invalid"] + c["disconnected"] + c["disconnect_but_finished_first"]
        total = sum(c.values())
        for p in tally.problems[:15]:
            print("    " + p)
        check(c["lost"] == 0, f"no request lost (timeouts / resets / bad framing): {c['lost']}")
        check(c["stream_incomplete"] + c["full_invalid"] == 0,
              f"every valid request got a full response ({c['stream_incomplete']} incomplete streams, {c['full_invalid']} invalid bodies)")
        check(c["bad_request_unclean"] + c["disconnect_unexpected_status"] == 0,
              f"every invalid request got a clean OpenAI error ({c['bad_request_unclean']} not)")
        check(c["stream_ok"] > CLIENTS, f"load was real: {c['stream_ok']} complete streams")

        final = {}
        if alive:
            end = time.time() + 10
            while True:
                try:
                    m, _ = get_metrics(srv.base)
                    final = {k: metric(m, "ferrum_" + k) for k in
                             ("kv_blocks_used", "kv_blocks_free", "kv_blocks_total", "running_seqs", "queue_depth",
                              "kv_waste_tokens", "preemptions_total", "generation_tokens_total", "prompt_tokens_total")}
                    for oc in ("finished", "cancelled", "error", "rejected"):
                        final[oc] = metric(m, "ferrum_requests_total", outcome=oc)
                except Exception as e:  # noqa: BLE001
                    final = {"error": str(e)}
                if (final.get("kv_blocks_used") == 0 and final.get("running_seqs") == 0 and final.get("queue_depth") == 0) or time.time() > end:
                    break
                time.sleep(0.5)
            check(final.get("kv_blocks_used") == 0 and final.get("kv_blocks_free") == final.get("kv_blocks_total"),
                  f"KV blocks all free at the end: used {final.get('kv_blocks_used')}, free {final.get('kv_blocks_free')} of {final.get('kv_blocks_total')}")
            check(final.get("running_seqs") == 0 and final.get("queue_depth") == 0,
                  f"nothing running or queued at the end: running {final.get('running_seqs')}, queue {final.get('queue_depth')}")
            fc = (final.get("finished") or 0) + (final.get("cancelled") or 0)
            check(fc == started, f"server's finished+cancelled ({final.get('finished')}+{final.get('cancelled')}) == streams/requests started ({started})")
            check((final.get("generation_tokens_total") or 0) >= tally.tokens,
                  f"server generation tokens {final.get('generation_tokens_total')} >= tokens the clients counted in full responses {tally.tokens}")
            # ferrum counts every request refused before admission (any 4xx, 429 included) as "rejected".
            refused = c["rejected_429"] + c["bad_request_clean_error"]
            check((final.get("rejected") or 0) == refused,
                  f"rejected counter {final.get('rejected')} == refused requests seen ({c['rejected_429']} 429 + "
                  f"{c['bad_request_clean_error']} 4xx)")
            check((final.get("error") or 0) == 0, f"no admitted request failed (error counter {final.get('error')})")

        # RSS: the second half's peak within the slack of the first half's peak.
        rss = [(s["t"], s["rss_kib"]) for s in samples if s.get("rss_kib")]
        half = SECONDS / 2
        first = [r for t, r in rss if t <= half]
        second = [r for t, r in rss if half < t <= SECONDS + 5]
        if first and second:
            bound = max(first) * (1 + RSS_SLACK) + RSS_SLACK_KIB
            check(max(second) <= bound, f"RSS stable: first-half peak {max(first) / 1024:.1f} MiB, second-half peak "
                                        f"{max(second) / 1024:.1f} MiB (bound {bound / 1024:.1f} MiB)")
        else:
            check(False, f"RSS sampled in both halves ({len(first)}, {len(second)} samples)")
        peak_q = max((s.get("queue_depth") or 0) for s in samples) if samples else None
        peak_run = max((s.get("running_seqs") or 0) for s in samples) if samples else None
        peak_kv = max((s.get("kv_blocks_used") or 0) for s in samples) if samples else None

        summary = {
            "clients": CLIENTS, "seconds": round(wall, 1), "drain_seconds_after_deadline": round(drain, 1),
            "requests": total, "outcomes": dict(c),
            "completion_tokens_in_full_responses": tally.tokens, "tokens_per_s": round(tally.tokens / wall, 1),
            "rss_mib": {"start": round(rss[0][1] / 1024, 1) if rss else None,
                        "first_half_peak": round(max(first) / 1024, 1) if first else None,
                        "second_half_peak": round(max(second) / 1024, 1) if second else None,
                        "end": round(rss[-1][1] / 1024, 1) if rss else None},
            "peaks": {"queue_depth": peak_q, "running_seqs": peak_run, "kv_blocks_used": peak_kv},
            "final_metrics": final,
            "timeline_every_5s": [{k: (round(v, 1) if isinstance(v, float) else v) for k, v in row.items()}
                                  for row in samples[::5]],
        }
        print("summary " + json.dumps(summary, indent=1))
        rc = srv.stop()
        check(rc == 0, f"server exits 0 on SIGTERM after the load (got {rc})")
        if not alive or rc != 0:
            print(srv.log()[-3000:])
        srv.cleanup()
    print(f"{len(check.failures)} failure(s)")
    for f in check.failures:
        print("  FAILED: " + f)
    return 1 if check.failures else 0


BASE = None

if __name__ == "__main__":
    sys.exit(main())
