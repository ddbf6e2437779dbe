#!/usr/bin/env python3
"""`ferrum serve` against the real `openai` Python client (PyPI) and raw HTTP.

Starts three servers on free loopback ports:
  main  stories260K, --chat-template (a small Jinja file), --api-key, 16 seqs, 64-token prefill chunks
  bert  fixtures/hf/bert (random BERT, token ids only) for /v1/embeddings
  tiny  stories260K, no template, --served-model-name tiny, --max-num-seqs 1 --max-queue 1
and checks: /v1/models; completions (string and token-id prompts) equal llama.cpp's recorded greedy
text; max_tokens → finish_reason "length"; stop strings (stream and not) cut the text before the stop;
chat stream == non-stream for the same seed, usage and include_usage chunk; sampling fields and
logit_bias; embeddings (float / base64 / client-decoded) equal `ferrum embed`; every error kind's
status and OpenAI error shape, the server serving on afterwards; bearer auth; 16 concurrent
temperature-0 requests (plus 4 seeded ones) give exactly their solo outputs; /metrics; queue full →
429; SIGTERM during a stream and SIGINT → exit 0.

Skips (77) without `openai`/`numpy` or the models. FERRUM_BIN is the ferrum binary."""
import base64
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback

try:
    import numpy as np
    import openai
except ImportError as e:
    print(f"skip: {e}")
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from server_util import (BERT, STORIES, STORIES_FIX, Checker, Server, error_shape_problem, get_metrics,  # noqa: E402
                         metric, request, stream)

FERRUM = os.environ.get("FERRUM_BIN") or os.path.join(os.environ.get("FERRUM_BUILD_DIR", "build"), "tools", "ferrum", "ferrum")
KEY = "sk-ferrum-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
TEMPLATE = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}"
PROMPT = "Once upon a time, there was a little girl"
check = Checker()
stats = {"completion_tokens": 0, "ok_requests": 0, "errors_sent": 0}


def section(fn):
    """Runs one group of checks; an exception is one failure and the others still run."""
    def run(*a, **kw):
        print(f"--- {fn.__name__}", flush=True)
        t0 = time.time()
        try:
            fn(*a, **kw)
        except Exception as e:  # noqa: BLE001
            traceback.print_exc()
            check(False, f"{fn.__name__}: raised {type(e).__name__}: {e}")
        print(f"    ({time.time() - t0:.1f} s)", flush=True)
    return run


def count(resp):
    stats["ok_requests"] += 1
    stats["completion_tokens"] += resp.usage.completion_tokens
    return resp


def greedy_reference():
    text = open(os.path.join(STORIES_FIX, "greedy_text.txt"), encoding="utf-8").read()
    prompt_ids = [int(x) for x in open(os.path.join(STORIES_FIX, "prompt_ids.txt")).read().split()]
    greedy_ids = [int(x) for x in open(os.path.join(STORIES_FIX, "greedy_ids.txt")).read().split()]
    return text, prompt_ids, greedy_ids


def raw_error(base, path, body, want_status, what, headers=None, method="POST"):
    stats["errors_sent"] += 1
    st, resp = request(method, base + path, body=body, headers=headers if headers is not None else AUTH)
    problem = error_shape_problem(resp)
    check(st == want_status and problem is None,
          f"{what}: {method} {path} {str(body)[:90]!r} -> want {want_status} + error shape, got {st} "
          f"{'' if problem is None else problem} {str(resp)[:160]}")
    return resp


@section
def test_models(client):
    models = client.models.list()
    ids = [m.id for m in models.data]
    check(ids == ["stories260K"], f"/v1/models lists the file stem: {ids}")
    check(all(m.object == "model" for m in models.data), "/v1/models entries are object=model")
    st, body = request("GET", client.base_url.__str__().rstrip("/") + "/models", headers=AUTH)
    check(st == 200 and isinstance(body, dict) and body.get("object") == "list", f"raw /v1/models object=list: {st} {str(body)[:120]}")


@section
def test_completions(client, base):
    text, prompt_ids, greedy_ids = greedy_reference()
    r = count(client.completions.create(model="stories260K", prompt=PROMPT, max_tokens=64, temperature=0))
    c = r.choices[0]
    check(c.text == text, f"string prompt, temperature 0: text == llama.cpp greedy text (got {c.text[:80]!r}...)")
    check(c.finish_reason == "length", f"64 tokens without EOS: finish_reason length (got {c.finish_reason})")
    u = r.usage
    check((u.prompt_tokens, u.completion_tokens, u.total_tokens) == (len(prompt_ids), 64, len(prompt_ids) + 64),
          f"usage = ({len(prompt_ids)}, 64, {len(prompt_ids) + 64}) (got {u.prompt_tokens}, {u.completion_tokens}, {u.total_tokens})")
    check(r.object == "text_completion" and r.model == "stories260K" and bool(r.id),
          f"completion object/model/id: {r.object} {r.model} {r.id}")

    r2 = count(client.completions.create(model="stories260K", prompt=prompt_ids, max_tokens=64, temperature=0))
    check(r2.choices[0].text == text, f"token-id prompt gives the same greedy text (got {r2.choices[0].text[:80]!r})")
    check(r2.usage.prompt_tokens == len(prompt_ids), f"token-id prompt: prompt_tokens {r2.usage.prompt_tokens}")

    # Streaming completion: text pieces concatenate to the same text; include_usage chunk at the end.
    chunks = list(client.completions.create(model="stories260K", prompt=PROMPT, max_tokens=64, temperature=0, stream=True,
                                            stream_options={"include_usage": True}))
    streamed = "".join(ch.choices[0].text for ch in chunks if ch.choices)
    check(streamed == text, f"streamed completion == greedy text (got {streamed[:80]!r})")
    fins = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    check(fins == ["length"], f"stream: one finish_reason, length (got {fins})")
    usage_chunks = [ch for ch in chunks if ch.usage is not None]
    check(len(usage_chunks) == 1 and usage_chunks[0] is chunks[-1] and not chunks[-1].choices
          and usage_chunks[0].usage.completion_tokens == 64,
          f"stream include_usage: exactly one final chunk with usage and no choices "
          f"({[(bool(c.choices), c.usage) for c in usage_chunks]})")
    stats["completion_tokens"] += 64

    # max_tokens → length, exact count.
    r = count(client.completions.create(model="stories260K", prompt=PROMPT, max_tokens=5, temperature=0))
    check(r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 5,
          f"max_tokens=5: finish length, 5 tokens (got {r.choices[0].finish_reason}, {r.usage.completion_tokens})")
    check(text.startswith(r.choices[0].text) and r.choices[0].text, f"max_tokens=5 text is a prefix of the greedy text: {r.choices[0].text!r}")

    # Stop strings: the text stops right before the first stop string, finish_reason stop.
    for stop in ["red ball", ["zebra", "red ball", "qqq"]]:
        want = text[:text.index("red ball")]
        r = count(client.completions.create(model="stories260K", prompt=PROMPT, max_tokens=64, temperature=0, stop=stop))
        c = r.choices[0]
        check(c.text == want and c.finish_reason == "stop",
              f"stop={stop!r}: text cut before it, finish stop (got {c.finish_reason}, {c.text[-40:]!r}, want end {want[-40:]!r})")
        check(r.usage.completion_tokens < 64, f"stop={stop!r}: generation ended early ({r.usage.completion_tokens} tokens)")
        chunks = list(client.completions.create(model="stories260K", prompt=PROMPT, max_tokens=64, temperature=0, stop=stop,
                                                stream=True))
        s = "".join(ch.choices[0].text for ch in chunks if ch.choices)
        check(s == want and "red ball" not in s, f"stream stop={stop!r}: streamed text == non-stream (got end {s[-40:]!r})")
        stats["ok_requests"] += 1
    # A stop string that never occurs changes nothing.
    r = count(client.completions.create(model="stories260K", prompt=PROMPT, max_tokens=64, temperature=0, stop=["xyzzy"]))
    check(r.choices[0].text == text and r.choices[0].finish_reason == "length", "stop that never occurs: full text, length")

    # logit_bias: -100 on the greedy first token changes the first token; +100 on one token forces it.
    first = count(client.completions.create(model="stories260K", prompt=prompt_ids, max_tokens=1, temperature=0)).choices[0].text
    banned = count(client.completions.create(model="stories260K", prompt=prompt_ids, max_tokens=1, temperature=0,
                                             logit_bias={str(greedy_ids[0]): -100})).choices[0].text
    check(first == text[:len(first)] and banned != first, f"logit_bias -100 on greedy token {greedy_ids[0]}: {first!r} -> {banned!r}")
    one = count(client.completions.create(model="stories260K", prompt=prompt_ids, max_tokens=1, temperature=0,
                                          logit_bias={"432": 100})).choices[0].text
    four = count(client.completions.create(model="stories260K", prompt=prompt_ids, max_tokens=4, temperature=0,
                                           logit_bias={"432": 100})).choices[0].text
    check(one and four == one * 4, f"logit_bias +100 forces token 432 every step: {one!r} x4 -> {four!r}")

    # ignore_eos keeps going to max_tokens (stories often ends a story with EOS within 300 tokens).
    r = count(client.completions.create(model="stories260K", prompt=PROMPT, max_tokens=300, temperature=0,
                                        extra_body={"ignore_eos": True}))
    check(r.usage.completion_tokens == 300 and r.choices[0].finish_reason == "length",
          f"ignore_eos: 300 tokens, length (got {r.usage.completion_tokens}, {r.choices[0].finish_reason})")

    # Raw SSE framing: every event is a data: line with JSON, ends with data: [DONE].
    st, events, done, err = stream(base + "/v1/completions", {"model": "stories260K", "prompt": PROMPT, "max_tokens": 8,
                                                              "temperature": 0, "stream": True}, headers=AUTH)
    check(st == 200 and done and events and all(e.get("object") == "text_completion" for e in events),
          f"raw SSE: {len(events)} text_completion events then [DONE] (status {st}, done {done}, {err})")
    stats["ok_requests"] += 1
    stats["completion_tokens"] += 8


@section
def test_chat(client, base):
    msgs = [{"role": "system", "content": "Lily"}, {"role": "user", "content": "Lily and the big dog went to the park."}]
    for temp, seed in [(0.8, 1234), (0.0, None)]:
        kw = dict(model="stories260K", messages=msgs, max_tokens=48, temperature=temp)
        if seed is not None:
            kw["seed"] = seed
        r = count(client.chat.completions.create(**kw))
        m = r.choices[0].message
        check(r.object == "chat.completion" and m.role == "assistant" and isinstance(m.content, str) and m.content,
              f"chat T={temp}: object chat.completion, assistant message ({r.object}, {m.role}, {m.content[:50]!r})")
        u = r.usage
        check(u.total_tokens == u.prompt_tokens + u.completion_tokens and 0 < u.completion_tokens <= 48 and u.prompt_tokens > 5,
              f"chat T={temp}: usage consistent {u.prompt_tokens}+{u.completion_tokens}={u.total_tokens}")
        check((r.choices[0].finish_reason == "length") == (u.completion_tokens == 48) and r.choices[0].finish_reason in ("stop", "length"),
              f"chat T={temp}: finish_reason {r.choices[0].finish_reason} matches {u.completion_tokens} tokens")
        again = count(client.chat.completions.create(**kw))
        check(again.choices[0].message.content == m.content, f"chat T={temp} seed={seed}: repeated request, same text")

        chunks = list(client.chat.completions.create(**kw, stream=True, stream_options={"include_usage": True}))
        text = "".join((ch.choices[0].delta.content or "") for ch in chunks if ch.choices)
        check(text == m.content, f"chat T={temp} seed={seed}: streamed text == non-streamed ({text[:60]!r} vs {m.content[:60]!r})")
        check(all(ch.object == "chat.completion.chunk" for ch in chunks) and len({ch.id for ch in chunks}) == 1,
              "chat stream: chat.completion.chunk objects with one id")
        check(any(ch.choices and ch.choices[0].delta.role == "assistant" for ch in chunks), "chat stream: a delta carries role assistant")
        fins = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
        check(fins == [r.choices[0].finish_reason], f"chat stream: one finish_reason equal to non-stream's ({fins})")
        last = chunks[-1]
        check(last.usage is not None and not last.choices and
              (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) ==
              (u.prompt_tokens, u.completion_tokens, u.total_tokens),
              f"chat stream include_usage: last chunk has the non-stream usage ({last.usage})")
        check(all(ch.usage is None for ch in chunks[:-1]), "chat stream: usage only on the last chunk")
        stats["completion_tokens"] += u.completion_tokens
        stats["ok_requests"] += 1
    # Without include_usage there is no usage chunk.
    chunks = list(client.chat.completions.create(model="stories260K", messages=msgs, max_tokens=8, temperature=0, stream=True))
    check(all(ch.usage is None for ch in chunks) and all(ch.choices for ch in chunks),
          "chat stream without include_usage: no usage chunk")
    stats["ok_requests"] += 1
    stats["completion_tokens"] += 8
    # max_completion_tokens (the newer name) → length.
    r = count(client.chat.completions.create(model="stories260K", messages=msgs, max_completion_tokens=7, temperature=0,
                                             extra_body={"ignore_eos": True}))
    check(r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 7,
          f"max_completion_tokens=7: length, 7 tokens (got {r.choices[0].finish_reason}, {r.usage.completion_tokens})")
    # Every sampling field at once is accepted.
    r = count(client.chat.completions.create(
        model="stories260K", messages=msgs, max_tokens=16, temperature=0.7, top_p=0.9, presence_penalty=0.5,
        frequency_penalty=0.3, seed=7, stop=["\n\n", "zzz"], logit_bias={"13": -5}, n=1,
        extra_body={"top_k": 20, "min_p": 0.05, "repetition_penalty": 1.1, "ignore_eos": False}))
    check(r.choices[0].finish_reason in ("stop", "length"), f"all sampling fields accepted: {r.choices[0].finish_reason}")


@section
def test_errors(client, base, tiny_base):
    big = list(range(3, 403)) * 6  # 2400 ids: over stories260K's context
    cases = [
        ("/v1/completions", b'{"model": "stories260K", "prompt": ', 400, "malformed JSON"),
        ("/v1/completions", b'', 400, "empty body"),
        ("/v1/completions", b'[1, 2, 3]', 400, "body not an object"),
        ("/v1/chat/completions", b'{"model": "stories260K", "messages": [{"role": "user", "content": "hi"}],}', 400, "trailing comma"),
        ("/v1/completions", {"model": "stories260K", "prompt": PROMPT, "max_tokens": "ten"}, 400, "max_tokens a string"),
        ("/v1/completions", {"model": "stories260K", "prompt": PROMPT, "temperature": "hot"}, 400, "temperature a string"),
        ("/v1/completions", {"model": "stories260K", "prompt": PROMPT, "max_tokens": -3}, 400, "negative max_tokens"),
        ("/v1/completions", {"model": "stories260K", "prompt": 42}, 400, "prompt a number"),
        ("/v1/completions", {"model": "stories260K", "prompt": [1, "a", 3]}, 400, "prompt list mixing ids and text"),
        ("/v1/completions", {"model": "stories260K", "prompt": [1, 99999]}, 400, "token id out of vocab"),
        ("/v1/completions", {"model": "stories260K", "prompt": PROMPT, "stop": 5}, 400, "stop a number"),
        ("/v1/completions", {"model": "stories260K", "prompt": PROMPT, "logit_bias": {"abc": 1}}, 400, "logit_bias key not an id"),
        ("/v1/completions", {"model": "stories260K", "prompt": ["a b", "c d"]}, 400, "several prompts"),
        ("/v1/completions", {"model": "stories260K", "prompt": PROMPT, "n": 2}, 400, "n=2"),
        ("/v1/chat/completions", {"model": "stories260K", "messages": [{"role": "user", "content": "hi"}], "n": 2}, 400, "chat n=2"),
        ("/v1/chat/completions", {"model": "stories260K", "messages": "hi"}, 400, "messages a string"),
        ("/v1/chat/completions", {"model": "stories260K"}, 400, "messages missing"),
        ("/v1/chat/completions", {"model": "stories260K", "messages": [{"content": 5}]}, 400, "message content a number"),
        ("/v1/completions", {"model": "no-such-model", "prompt": PROMPT}, 404, "unknown model"),
        ("/v1/chat/completions", {"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]}, 404, "chat unknown model"),
        ("/v1/completions", {"model": "stories260K", "prompt": PROMPT, "max_tokens": 100000}, 400, "max_tokens over the context"),
        ("/v1/completions", {"model": "stories260K", "prompt": big, "max_tokens": 4}, 400, "prompt over the context"),
        ("/v1/completions", {"model": "stories260K", "prompt": big, "max_tokens": 4, "stream": True}, 400, "stream: prompt over the context"),
        ("/v1/embeddings", {"model": "stories260K", "input": [1, 2, 3]}, 400, "embeddings on a decoder"),
    ]
    for path, body, st, what in cases:
        raw_error(base, path, body, st, what)
    # Known paths with the wrong method: 405 (unknown paths stay 404).
    raw_error(base, "/v1/completions", None, 405, "GET on a POST route", method="GET")
    raw_error(base, "/v1/models", {"x": 1}, 405, "POST on a GET route")
    raw_error(base, "/v1/nothing-here", {"x": 1}, 404, "unknown path")
    # The official client raises the matching exceptions.
    for exc, kw, what in [
        (openai.BadRequestError, dict(n=2), "n=2"),
        (openai.NotFoundError, dict(model="gpt-4o"), "unknown model"),
        (openai.BadRequestError, dict(max_tokens=100000), "over context"),
    ]:
        args = dict(model="stories260K", messages=[{"role": "user", "content": "hi"}], max_tokens=4)
        args.update(kw)
        try:
            client.chat.completions.create(**args)
            check(False, f"openai client {what}: expected {exc.__name__}, got a completion")
        except exc as e:
            check(isinstance(e.body, dict) and "message" in e.body, f"openai client {what}: {exc.__name__} ({e.status_code}) {str(e.body)[:100]}")
        except openai.APIError as e:
            check(False, f"openai client {what}: expected {exc.__name__}, got {type(e).__name__} {getattr(e, 'status_code', '')} {e}")
    # Chat without a template (the tiny server has none; stories260K's GGUF has none) → 400 saying so.
    resp = raw_error(tiny_base, "/v1/chat/completions", {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}, 400,
                     "chat without a template", headers={})
    msg = json.dumps(resp).lower()
    check("template" in msg, f"no-template error mentions the template: {msg[:160]}")
    # Still serving.
    st, body = request("GET", base + "/health")
    check(st == 200 and body == {"status": "ok"}, f"after errors /health 200 {{'status':'ok'}} (got {st} {body})")
    r = count(client.completions.create(model="stories260K", prompt=PROMPT, max_tokens=4, temperature=0))
    check(r.usage.completion_tokens == 4, "after errors a completion still works")


@section
def test_auth(base):
    body = {"model": "stories260K", "prompt": PROMPT, "max_tokens": 2}
    raw_error(base, "/v1/completions", body, 401, "no Authorization header", headers={})
    raw_error(base, "/v1/completions", body, 401, "wrong key", headers={"Authorization": "Bearer wrong"})
    raw_error(base, "/v1/completions", body, 401, "not a bearer", headers={"Authorization": KEY})
    raw_error(base, "/v1/models", None, 401, "models without a key", headers={}, method="GET")
    st, _ = request("POST", base + "/v1/completions", body=body, headers=AUTH)
    check(st == 200, f"right key -> 200 (got {st})")
    stats["ok_requests"] += 1
    stats["completion_tokens"] += 2
    st, _ = request("GET", base + "/health")
    check(st == 200, f"/health needs no key (got {st})")
    bad = openai.OpenAI(base_url=base + "/v1", api_key="wrong", max_retries=0, timeout=30)
    try:
        bad.models.list()
        check(False, "openai client with a wrong key: expected AuthenticationError")
    except openai.AuthenticationError as e:
        check(e.status_code == 401, "openai client with a wrong key: AuthenticationError 401")
    except openai.APIError as e:
        check(False, f"openai client with a wrong key: got {type(e).__name__} {e}")


DET_PROMPTS = [
    "Once upon a time", "Lily", "The little dog ran to the park and", "Tom had a big red ball.",
    "One day, a cat", "Mom said", "The sun was hot and the birds", "Sam and Sue went to the store to buy",
    "There was a tree", "Ben was sad because his toy was broken. He", "The fish", "A girl named Mia loved to sing",
    "It was a rainy day", "The bunny hopped", "Grandma baked a cake for", "The boat sailed on the big blue sea and the wind",
]


@section
def test_determinism(client):
    """16 temperature-0 requests (different prompts and lengths, some as token ids) plus 4 seeded
    sampled ones: sent concurrently they give exactly what each gives alone."""
    reqs = []
    for i, p in enumerate(DET_PROMPTS):
        reqs.append(dict(prompt=p, max_tokens=24 + 4 * i, temperature=0))
    for i in range(4):
        reqs.append(dict(prompt=DET_PROMPTS[i * 3], max_tokens=40, temperature=1.0, top_p=0.95, seed=100 + i))
    reqs.append(dict(prompt=list(range(3, 300)), max_tokens=16, temperature=0))  # long prompt: chunked prefill

    def one(kw):
        r = client.completions.create(model="stories260K", extra_body={"ignore_eos": True}, **kw)
        return r.choices[0].text, r.usage.completion_tokens

    solo = [one(kw) for kw in reqs]
    check(all(n == kw["max_tokens"] for (_, n), kw in zip(solo, reqs)), "solo runs: each produced max_tokens (ignore_eos)")
    for rnd, order in enumerate([list(range(len(reqs))), list(reversed(range(len(reqs))))]):
        got = [None] * len(reqs)
        barrier = threading.Barrier(len(reqs))

        def worker(i):
            barrier.wait()
            try:
                got[i] = one(reqs[i])
            except Exception as e:  # noqa: BLE001
                got[i] = (f"<{type(e).__name__}: {e}>", -1)

        threads = [threading.Thread(target=worker, args=(i,)) for i in order]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        bad = [i for i in range(len(reqs)) if got[i] != solo[i]]
        for i in bad[:4]:
            print(f"    request {i} {reqs[i]!r:.80}:\n      alone   {solo[i][0][:100]!r}\n      batched {str(got[i][0])[:100]!r}")
        check(not bad, f"determinism round {rnd + 1}: {len(reqs)} concurrent requests == their solo outputs "
                       f"(mismatch in {bad})")
    stats["ok_requests"] += 3 * len(reqs)
    stats["completion_tokens"] += 3 * sum(kw["max_tokens"] for kw in reqs)


@section
def test_embeddings(bert, tmp):
    client = openai.OpenAI(base_url=bert.base + "/v1", api_key="unused", max_retries=0, timeout=60)
    ids = [client.models.list().data[0].id]
    check(ids == ["bert"], f"BERT server model name is the folder name: {ids}")
    name = ids[0]
    inputs = [[101, 7, 42, 999, 3, 102], [101, 5, 102], [2] * 40]
    r = client.embeddings.create(model=name, input=inputs, encoding_format="float")
    vecs = [np.array(d.embedding, dtype=np.float32) for d in sorted(r.data, key=lambda d: d.index)]
    check(len(r.data) == 3 and [d.index for d in r.data] == [0, 1, 2] and all(v.shape == (128,) for v in vecs),
          f"3 inputs -> 3 vectors of 128 in order ({[(d.index, len(d.embedding)) for d in r.data]})")
    check(r.object == "list" and all(d.object == "embedding" for d in r.data), "embedding response objects")
    check(r.usage is not None and r.usage.prompt_tokens == sum(map(len, inputs)) and r.usage.total_tokens == r.usage.prompt_tokens,
          f"embedding usage counts the ids ({r.usage})")
    single = client.embeddings.create(model=name, input=inputs[1], encoding_format="float")
    v1 = np.array(single.data[0].embedding, dtype=np.float32)
    check(len(single.data) == 1 and np.allclose(v1, vecs[1], rtol=1e-5, atol=1e-6),
          f"one list of ints == the same input in a batch (max diff {np.abs(v1 - vecs[1]).max():.2e})")
    # base64: float32 little-endian, the same numbers.
    st, body = request("POST", bert.base + "/v1/embeddings", {"model": name, "input": inputs, "encoding_format": "base64"})
    ok = st == 200 and isinstance(body, dict) and len(body.get("data", [])) == 3
    check(ok, f"base64 request 200 with 3 items (got {st} {str(body)[:120]})")
    if ok:
        b64 = [np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in body["data"]]
        diff = max(float(np.abs(a - b).max()) for a, b in zip(b64, vecs)) if all(a.shape == b.shape for a, b in zip(b64, vecs)) else None
        check(diff is not None and diff <= 1e-6 * max(1.0, float(np.abs(vecs[0]).max())),
              f"base64 vectors == float vectors (max diff {diff})")
        if diff is not None and diff > 0:
            print(f"    note: float JSON does not round-trip float32 exactly (max diff {diff:.2e})")
    # The client's default (it asks for base64 and decodes it).
    d = client.embeddings.create(model=name, input=inputs)
    dv = [np.array(x.embedding, dtype=np.float32) for x in d.data]
    check(all(np.allclose(a, b, rtol=1e-6, atol=1e-7) for a, b in zip(dv, vecs)), "openai client default (base64, decoded) == float")
    # `ferrum embed` on the same ids (its default pooling/normalization = the server's).
    for k, ids_ in enumerate(inputs):
        out = os.path.join(tmp, f"emb{k}.npy")
        p = subprocess.run([FERRUM, "embed", "-m", BERT, "--tokens", ",".join(map(str, ids_)), "-o", out, "-t", "1"],
                           capture_output=True, text=True)
        if not check(p.returncode == 0, f"ferrum embed input {k} ran (rc {p.returncode} {p.stderr[-200:]})"):
            continue
        ref = np.load(out).astype(np.float32).reshape(-1)
        diff = float(np.abs(ref - vecs[k]).max()) if ref.shape == vecs[k].shape else float("inf")
        check(diff <= 1e-5 * max(1.0, float(np.abs(ref).max())), f"input {k} ({len(ids_)} ids): server == `ferrum embed` (max diff {diff:.2e})")
    # Errors specific to the encoder server.
    raw_error(bert.base, "/v1/chat/completions", {"model": name, "messages": [{"role": "user", "content": "hi"}]}, 400,
              "chat on an encoder", headers={})
    raw_error(bert.base, "/v1/completions", {"model": name, "prompt": [101, 5, 102]}, 400, "completions on an encoder", headers={})
    raw_error(bert.base, "/v1/embeddings", {"model": name, "input": "hello world"}, 400, "text input without a tokenizer", headers={})
    raw_error(bert.base, "/v1/embeddings", {"model": name, "input": [[101, 5], [1, "x"]]}, 400, "embedding ids of the wrong type", headers={})
    raw_error(bert.base, "/v1/embeddings", {"model": name, "input": [101, 5000]}, 400, "embedding id out of vocab", headers={})
    raw_error(bert.base, "/v1/embeddings", {"model": name, "input": [101] * 600}, 400, "embedding input over 512 positions", headers={})
    raw_error(bert.base, "/v1/embeddings", {"model": name, "input": [101, 5], "encoding_format": "hex"}, 400, "encoding_format hex", headers={})
    raw_error(bert.base, "/v1/embeddings", {"model": "nope", "input": [101, 5]}, 404, "embeddings unknown model", headers={})
    st, _ = request("POST", bert.base + "/v1/embeddings", {"model": name, "input": [101, 5, 102]})
    check(st == 200, f"bert server still serves after errors ({st})")


@section
def test_metrics(base, expect_min_requests, expect_min_tokens, expect_min_rejected):
    names = ["ferrum_prompt_tokens_total", "ferrum_generation_tokens_total", "ferrum_queue_depth", "ferrum_running_seqs",
             "ferrum_kv_blocks_used", "ferrum_kv_blocks_free", "ferrum_kv_blocks_total", "ferrum_kv_waste_tokens",
             "ferrum_preemptions_total"]
    m, text = get_metrics(base)
    deadline = time.time() + 5
    while (metric(m, "ferrum_kv_blocks_used") or 0) != 0 and time.time() < deadline:
        time.sleep(0.2)
        m, text = get_metrics(base)
    missing = [n for n in names if metric(m, n) is None]
    check(not missing, f"/metrics has {len(names)} plain series (missing {missing})")
    for oc in ("finished", "cancelled", "error", "rejected"):
        check(metric(m, "ferrum_requests_total", outcome=oc) is not None, f"/metrics ferrum_requests_total{{outcome=\"{oc}\"}} present")
    fin = metric(m, "ferrum_requests_total", outcome="finished") or 0
    rej = metric(m, "ferrum_requests_total", outcome="rejected") or 0
    check(fin >= expect_min_requests, f"finished requests {fin} >= {expect_min_requests} made by this test")
    # ferrum counts every request refused before admission (4xx, 429) as "rejected"; "error" is a
    # failure after admission (none here).
    check(rej >= expect_min_rejected, f"refused requests counted as rejected: {rej} >= {expect_min_rejected} 4xx answers sent here")
    gen = metric(m, "ferrum_generation_tokens_total") or 0
    check(gen >= expect_min_tokens, f"generation tokens {gen} >= {expect_min_tokens} counted by this test")
    check((metric(m, "ferrum_prompt_tokens_total") or 0) > 0, "prompt tokens counted")
    used, free, total = (metric(m, f"ferrum_kv_blocks_{k}") for k in ("used", "free", "total"))
    check(used == 0 and total and free == total, f"idle: kv blocks used 0, free == total ({used}, {free}, {total})")
    check(metric(m, "ferrum_running_seqs") == 0 and metric(m, "ferrum_queue_depth") == 0,
          f"idle: running {metric(m, 'ferrum_running_seqs')} queue {metric(m, 'ferrum_queue_depth')}")
    for h in ("ferrum_time_to_first_token_seconds", "ferrum_inter_token_latency_seconds"):
        cnt = metric(m, h + "_count")
        inf = metric(m, h + "_bucket", le="+Inf")
        buckets = sorted((float(dict(k[1])["le"]), v) for k, v in m.items() if k[0] == h + "_bucket" and dict(k[1]).get("le") != "+Inf")
        mono = all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:]))
        check(cnt is not None and cnt > 0 and inf == cnt and metric(m, h + "_sum") is not None and len(buckets) >= 3 and mono,
              f"histogram {h}: count {cnt}, +Inf bucket {inf}, {len(buckets)} finite buckets, cumulative {mono}")
    check("# TYPE ferrum_time_to_first_token_seconds histogram" in text, "histogram has a # TYPE line")


@section
def test_tiny_server(tiny):
    """--served-model-name, --max-num-seqs 1 --max-queue 1: overflow is 429, the rest complete."""
    c = openai.OpenAI(base_url=tiny.base + "/v1", api_key="unused", max_retries=0, timeout=60)
    ids = [m.id for m in c.models.list().data]
    check(ids == ["tiny"], f"--served-model-name tiny: /v1/models {ids}")
    raw_error(tiny.base, "/v1/completions", {"model": "stories260K", "prompt": PROMPT}, 404, "file stem after --served-model-name", headers={})
    r = c.completions.create(model="tiny", prompt=PROMPT, max_tokens=4, temperature=0)
    check(r.model == "tiny" and r.usage.completion_tokens == 4, f"request with the served name works ({r.model})")

    m0, _ = get_metrics(tiny.base)
    rej0 = metric(m0, "ferrum_requests_total", outcome="rejected") or 0
    n = 24
    results = [None] * n
    barrier = threading.Barrier(n)

    def worker(i):
        barrier.wait()
        results[i] = request("POST", tiny.base + "/v1/completions", {"model": "tiny", "prompt": PROMPT, "max_tokens": 480,
                                                                     "temperature": 0, "ignore_eos": True}, timeout=120)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(150)
    codes = [r[0] if r else None for r in results]
    n429 = codes.count(429)
    check(n429 >= 1 and codes.count(200) >= 1 and n429 + codes.count(200) == n,
          f"{n} simultaneous requests on 1 seq + queue 1: some 429, the rest 200 (got {codes})")
    for st, body in [r for r in results if r and r[0] == 429][:1]:
        problem = error_shape_problem(body)
        check(problem is None, f"429 body has the OpenAI error shape {problem or ''}")
    for st, body in [r for r in results if r and r[0] == 200]:
        check(body["usage"]["completion_tokens"] == 480 and body["choices"][0]["finish_reason"] == "length",
              f"admitted request completed: {body['usage']['completion_tokens']} tokens")
    m, _ = get_metrics(tiny.base)
    rej = (metric(m, "ferrum_requests_total", outcome="rejected") or 0) - rej0
    check(rej == n429, f"ferrum_requests_total{{outcome=\"rejected\"}} grew by the {n429} 429s (got {rej})")


@section
def test_sigterm_during_stream(srv):
    """16 streams in flight, SIGTERM after the first token: exit code 0, no client left hanging,
    each stream either complete (finish_reason + [DONE]) or cut off."""
    n = 16
    results = [None] * n
    first = threading.Event()

    def client(i):
        try:
            st, events, done, err = stream(srv.base + "/v1/completions",
                                           {"model": "stories260K", "prompt": DET_PROMPTS[i], "max_tokens": 480,
                                            "temperature": 0, "ignore_eos": True, "stream": True},
                                           headers=AUTH, timeout=60, on_event=lambda k, e: first.set() or True)
            fin = [e["choices"][0].get("finish_reason") for e in events if e.get("choices")]
            results[i] = ("complete" if done and fin and fin[-1] == "length" else "cut" if st == 200 else f"status {st}")
        except Exception as e:  # noqa: BLE001  (the server may close the connection: allowed)
            results[i] = f"cut ({type(e).__name__})"
        first.set()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    check(first.wait(30), "streams started")
    srv.signal(signal.SIGTERM)
    t0 = time.time()
    # A request arriving during the shutdown is not taken: connection refused or 503.
    time.sleep(0.2)
    try:
        st, body = request("POST", srv.base + "/v1/completions", {"model": "stories260K", "prompt": "Hi", "max_tokens": 2},
                           headers=AUTH, timeout=10)
        late = f"status {st}"
        check(st == 503 and error_shape_problem(body) is None if srv.alive() else st != 200,
              f"request during shutdown refused (got {st} {str(body)[:120]})")
    except OSError as e:
        late = f"{type(e).__name__}"
        check(True, f"request during shutdown refused ({late})")
    try:
        rc = srv.proc.wait(30)
    except subprocess.TimeoutExpired:
        rc = "still running after 30 s"
    dt = time.time() - t0
    for t in threads:
        t.join(30)
    summary = {k: sum(1 for r in results if str(r).startswith(k)) for k in ("complete", "cut", "status", "None")}
    check(rc == 0, f"SIGTERM with {n} streams in flight: exit code 0 (got {rc}) after {dt:.1f} s; streams {summary}")
    check(not any(t.is_alive() for t in threads), "no streaming client left hanging")
    if rc != 0:
        print(srv.log()[-2000:])


def main():
    if not os.path.exists(STORIES):
        print(f"skip: no {STORIES}")
        return 77
    if not os.path.exists(FERRUM):
        print(f"skip: no ferrum binary at {FERRUM}")
        return 77
    t_start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        tpl = os.path.join(tmp, "chat.jinja")
        with open(tpl, "w") as f:
            f.write(TEMPLATE)
        servers = []
        try:
            main_srv = Server(FERRUM, STORIES, "--chat-template", tpl, "--api-key", KEY, "--max-num-seqs", 24,
                              "--max-num-batched-tokens", 64, "--ctx-size", 512, "-t", 1, "--shutdown-timeout", 10)
            servers.append(main_srv)
            print(f"main server {main_srv.base} (pid {main_srv.pid}): {main_srv.listening_line} "
                  f"(/health 503 seen while loading: {main_srv.saw_503})")
            check(main_srv.listening_line is not None and f"listening on http://127.0.0.1:{main_srv.port}" in main_srv.listening_line,
                  "stderr has 'listening on http://127.0.0.1:PORT'")
            tiny = Server(FERRUM, STORIES, "--served-model-name", "tiny", "--max-num-seqs", 1, "--max-queue", 1, "--ctx-size", 512, "-t", 1,
                          "--shutdown-timeout", 5)
            servers.append(tiny)
            bert = None
            if os.path.exists(os.path.join(BERT, "config.json")):
                bert = Server(FERRUM, BERT, "-t", 1)
                servers.append(bert)
            client = openai.OpenAI(base_url=main_srv.base + "/v1", api_key=KEY, max_retries=0, timeout=60)

            test_models(client)
            test_completions(client, main_srv.base)
            test_chat(client, main_srv.base)
            e0 = stats["errors_sent"]
            test_errors(client, main_srv.base, tiny.base)
            test_auth(main_srv.base)
            main_errors = stats["errors_sent"] - e0 - 1  # one of them went to the tiny server
            test_determinism(client)
            if bert is not None:
                test_embeddings(bert, tmp)
            else:
                print("note: no BERT fixture, embeddings not tested")
            test_metrics(main_srv.base, stats["ok_requests"], stats["completion_tokens"], main_errors)
            test_tiny_server(tiny)
            check(main_srv.alive(), "main server still alive before the shutdown test")
            test_sigterm_during_stream(main_srv)

            for srv, sig in [(tiny, signal.SIGTERM)] + ([(bert, signal.SIGINT)] if bert else []):
                alive = srv.alive()
                check(alive, f"server {srv.base} still alive at the end")
                if alive:
                    srv.signal(sig)
                    try:
                        rc = srv.proc.wait(20)
                    except subprocess.TimeoutExpired:
                        rc = "timeout"
                    check(rc == 0, f"idle server exits 0 on {sig.name} (got {rc})")
        except RuntimeError as e:
            check(False, f"server start: {e}")
        finally:
            for s in servers:
                if s.proc and s.proc.poll() is None:
                    s.proc.kill()
                    s.proc.wait()
                if s.proc and s.proc.returncode not in (0, None, -9) and s.proc.returncode < 0:
                    print(f"server {s.cmd} died from signal {-s.proc.returncode}:\n{s.log()[-3000:]}")
                s.cleanup()
    print(f"{time.time() - t_start:.1f} s, {len(check.failures)} failure(s)")
    for f in check.failures:
        print("  FAILED: " + f)
    return 1 if check.failures else 0


if __name__ == "__main__":
    sys.exit(main())
