"""Helpers shared by the `ferrum serve` tests: start a server on a free loopback port and wait for
/health, raw HTTP requests (for what the `openai` client hides: status codes, malformed bodies,
SSE framing), the OpenAI error shape, and a Prometheus text parser for /metrics."""
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time

SHARED = os.environ.get("FERRUM_SHARED") or os.environ.get("FERRUM_SHARED_DEFAULT") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared")
STORIES = os.path.join(SHARED, "models", "stories260K.gguf")
BERT = os.path.join(SHARED, "fixtures", "hf", "bert")
STORIES_FIX = os.path.join(SHARED, "fixtures", "gguf", "stories260K")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`ferrum serve` as a child process; stderr goes to a log file (read it with .log())."""

    def __init__(self, binary, model, *extra, ready_timeout=60.0):
        self.binary, self.model, self.extra = binary, model, [str(x) for x in extra]
        self.proc = None
        self.saw_503 = False
        self.logf = tempfile.NamedTemporaryFile(prefix="ferrum-serve-", suffix=".log", delete=False)
        self.ready_timeout = ready_timeout
        last = None
        for _ in range(3):  # a port taken between free_port() and bind: try another
            self.port = free_port()
            try:
                self._start()
                return
            except RuntimeError as e:
                last = e
                if self.proc.poll() is None:
                    self.stop()
                if "address" not in self.log().lower() and "bind" not in self.log().lower():
                    break
        raise last

    @property
    def base(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self):
        return self.proc.pid

    def log(self):
        try:
            with open(self.logf.name, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def _start(self):
        self.logf.truncate(0)
        self.logf.seek(0)
        # One compute thread unless a test asks for more: outputs do not depend on it, and two
        # threads on a busy 2-core machine wait on each other at every barrier.
        threads = [] if ("-t" in self.extra or "--threads" in self.extra) else ["-t", "1"]
        cmd = [self.binary, "serve", "--model", self.model, "--host", "127.0.0.1", "--port", str(self.port)] + threads + self.extra
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.logf, stdin=subprocess.DEVNULL)
        deadline = time.time() + self.ready_timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ferrum serve exited with {self.proc.returncode} before ready:\n{self.log()[-3000:]}")
            try:
                st, body = request("GET", self.base + "/health", timeout=2)
                if st == 503:
                    self.saw_503 = True
                elif st == 200:
                    self.listening_line = next((l for l in self.log().splitlines() if "listening on http://" in l), None)
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"ferrum serve not ready after {self.ready_timeout}s:\n{self.log()[-3000:]}")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)

    def stop(self, timeout=20.0):
        """SIGTERM, wait; SIGKILL if it does not exit. Returns the exit code (None if killed)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return None
        return self.proc.returncode

    def cleanup(self):
        self.stop()
        try:
            os.unlink(self.logf.name)
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.cleanup()


def _split(url):
    m = re.match(r"http://([^/:]+):(\d+)(/.*)?$", url)
    return m.group(1), int(m.group(2)), m.group(3) or "/"


def request(method, url, body=None, headers=None, timeout=60):
    """One HTTP request; body: bytes, str or a JSON-able object. Returns (status, parsed JSON or text)."""
    host, port, path = _split(url)
    h = dict(headers or {})
    if body is not None and not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode("utf-8")
    if body is not None:
        h.setdefault("Content-Type", "application/json")
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        data = r.read().decode("utf-8", errors="replace")
        try:
            return r.status, json.loads(data)
        except ValueError:
            return r.status, data
    finally:
        conn.close()


def stream(url, body, headers=None, timeout=60, on_event=None):
    """POST with stream=true; returns (status, events, done, raw_error). events: parsed JSON of each
    `data:` line before `data: [DONE]`; done: whether [DONE] arrived. A non-200 answer returns its
    parsed body as raw_error. on_event(i, event) may return False to disconnect (then done=False)."""
    host, port, path = _split(url)
    h = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    h.update(headers or {})
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("POST", path, body=json.dumps(body).encode(), headers=h)
        r = conn.getresponse()
        if r.status != 200:
            data = r.read().decode("utf-8", errors="replace")
            try:
                return r.status, [], False, json.loads(data)
            except ValueError:
                return r.status, [], False, data
        events, done = [], False
        while True:
            line = r.readline()
            if not line:
                break
            line = line.decode("utf-8").rstrip("\r\n")
            if not line.startswith("data:"):
                continue
            payload = line[5:].strip()
            if payload == "[DONE]":
                done = True
                break
            ev = json.loads(payload)
            events.append(ev)
            if on_event is not None and on_event(len(events) - 1, ev) is False:
                break
        return 200, events, done, None
    finally:
        conn.close()


def error_shape_problem(body):
    """None if body is {"error": {"message": non-empty str, "type": str, "param": ..., "code": ...}},
    else a description of what is wrong."""
    if not isinstance(body, dict) or not isinstance(body.get("error"), dict):
        return f"not an OpenAI error object: {str(body)[:200]!r}"
    e = body["error"]
    missing = [k for k in ("message", "type", "param", "code") if k not in e]
    if missing:
        return f"error object lacks {missing}: {e}"
    if not isinstance(e["message"], str) or not e["message"]:
        return f"error.message empty or not a string: {e}"
    if not isinstance(e["type"], str):
        return f"error.type not a string: {e}"
    return None


_METRIC = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)')


def parse_metrics(text):
    """Prometheus text → {(name, frozenset(labels.items())): value}."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _METRIC.match(line)
        if not m:
            continue
        labels = {}
        if m.group(2):
            for k, v in re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2)):
                labels[k] = v
        try:
            out[(m.group(1), frozenset(labels.items()))] = float(m.group(3))
        except ValueError:
            pass
    return out


def metric(metrics, name, **labels):
    """The value of one series (None if absent)."""
    return metrics.get((name, frozenset(labels.items())))


def get_metrics(base, timeout=10):
    st, body = request("GET", base + "/metrics", timeout=timeout)
    if st != 200 or not isinstance(body, str):
        raise RuntimeError(f"/metrics: status {st}: {str(body)[:200]}")
    return parse_metrics(body), body


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class Checker:
    def __init__(self):
        self.failures = []

    def __call__(self, cond, msg):
        print(("ok   " if cond else "FAIL ") + msg, flush=True)
        if not cond:
            self.failures.append(msg)
        return cond
