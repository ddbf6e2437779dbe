#!/usr/bin/env python3
"""`ferrum template` against Python jinja2 on the real Qwen3 and Llama-3 chat templates.

The reference replicates transformers' apply_chat_template: _compile_jinja_template's
ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols]) with its
tojson override, raise_exception and strftime_now, rendered with messages, tools, documents=None,
add_generation_prompt and the special tokens followed by the extra variables. Every rendering must be
byte-identical; a conversation jinja2 rejects must be rejected too.
"""
import json
import os
import subprocess
import sys
import tempfile
from datetime import datetime

try:
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment
except ImportError:
    print("jinja2 is not installed")
    sys.exit(77)

SHARED = os.environ.get("FERRUM_SHARED") or os.environ.get("FERRUM_SHARED_DEFAULT", "")
FERRUM = os.environ.get("FERRUM_BIN", "")


def hf_environment():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        return datetime.now().strftime(format)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def special_token(cfg, key):
    v = cfg.get(key)
    if isinstance(v, dict):
        v = v.get("content")
    return v


def hf_render(template, conv, cfg):
    kwargs = {}
    for key in ("bos_token", "eos_token"):
        if special_token(cfg, key) is not None:
            kwargs[key] = special_token(cfg, key)
    kwargs.update(conv.get("vars", {}))
    return template.render(messages=conv["messages"], tools=conv.get("tools"), documents=None,
                           add_generation_prompt=conv.get("add_generation_prompt", False), **kwargs)


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city — returns °C",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "City name, e.g. \"Zürich\""},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["location"],
        },
    },
}
SEARCH_TOOL = {
    "type": "function",
    "function": {
        "name": "search",
        "parameters": {"properties": {"query": {"type": "string"}, "limit": {"type": "integer", "default": 10}},
                       "type": "object", "required": ["query"]},
        "description": "Search the web",
    },
}


def call(name, arguments, wrapped=True):
    fn = {"name": name, "arguments": arguments}
    return {"type": "function", "function": fn} if wrapped else fn


SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
U1 = {"role": "user", "content": "Hello! How are you?"}
A1 = {"role": "assistant", "content": "I'm fine, thanks. How can I help?"}
U2 = {"role": "user", "content": "What's 2+2?"}
THINK = {"role": "assistant", "content": "<think>\nThe user asks for 2+2.\nThat is 4.\n</think>\n\n2+2 = 4."}


def conversations():
    weather_call = {"role": "assistant", "content": "", "tool_calls": [call("get_weather", {"location": "Paris", "unit": "celsius"})]}
    weather_result = {"role": "tool", "content": "{\"temperature\": 21.5, \"sky\": \"clear\"}"}
    convs = [
        {"messages": [U1], "add_generation_prompt": True},
        {"messages": [U1], "add_generation_prompt": False},
        {"messages": [SYSTEM, U1], "add_generation_prompt": True},
        {"messages": [SYSTEM, U1, A1, U2], "add_generation_prompt": True},
        {"messages": [U1, A1], "add_generation_prompt": False},
        {"messages": [SYSTEM, U1], "add_generation_prompt": True, "vars": {"enable_thinking": False}},
        {"messages": [U1], "add_generation_prompt": True, "vars": {"enable_thinking": True}},
        {"messages": [U1, A1, U2], "add_generation_prompt": False, "vars": {"enable_thinking": False}},
        {"messages": [SYSTEM, U2, THINK, U1], "add_generation_prompt": True},
        {"messages": [U2, THINK], "add_generation_prompt": False},
        {"messages": [U2, {"role": "assistant", "content": "4", "reasoning_content": "Simple arithmetic.\n"}, U1],
         "add_generation_prompt": True},
        {"messages": [U2, {"role": "assistant", "content": "4", "reasoning_content": "  Adding.  "}],
         "add_generation_prompt": False},
        {"messages": [U1], "tools": [WEATHER_TOOL], "add_generation_prompt": True},
        {"messages": [SYSTEM, {"role": "user", "content": "Weather in Paris?"}], "tools": [WEATHER_TOOL, SEARCH_TOOL],
         "add_generation_prompt": True},
        {"messages": [SYSTEM, {"role": "user", "content": "Weather in Paris?"}, weather_call, weather_result],
         "tools": [WEATHER_TOOL], "add_generation_prompt": True},
        {"messages": [{"role": "user", "content": "Find cats"},
                      {"role": "assistant", "content": "", "tool_calls": [call("search", "{\"query\": \"cats\", \"limit\": 3}")]},
                      {"role": "tool", "content": "3 results"}],
         "tools": [SEARCH_TOOL], "add_generation_prompt": True},
        {"messages": [{"role": "user", "content": "Weather in Paris and Rome, and search news"},
                      {"role": "assistant", "content": "Let me check both.",
                       "tool_calls": [call("get_weather", {"location": "Paris"}), call("get_weather", {"location": "Rome"}),
                                      call("search", {"query": "news", "limit": 2, "filters": {"lang": ["en", "fr"], "safe": True, "since": None, "score": 0.75, "big": 12345678901234, "tiny": 1e-05, "one": 1.0}})]},
                      {"role": "tool", "content": "Paris: 21C"}, {"role": "tool", "content": "Rome: 25C"},
                      {"role": "tool", "content": "No news."}, {"role": "assistant", "content": "Paris 21C, Rome 25C."}],
         "tools": [WEATHER_TOOL, SEARCH_TOOL], "add_generation_prompt": False},
        {"messages": [{"role": "user", "content": "Weather?"},
                      {"role": "assistant", "content": "", "tool_calls": [call("get_weather", {"location": "Oslo"}, wrapped=False)]},
                      {"role": "tool", "content": "cold"}],
         "tools": [WEATHER_TOOL], "add_generation_prompt": True, "vars": {"enable_thinking": False}},
        {"messages": [{"role": "user", "content": "Weather in Lima?"},
                      {"role": "assistant", "content": "<think>\nNeed the tool.\n</think>\n\n",
                       "tool_calls": [call("get_weather", {"location": "Lima"})]},
                      {"role": "user", "content": "<tool_response>\nsunny\n</tool_response>"}],
         "tools": [WEATHER_TOOL], "add_generation_prompt": True},
        {"messages": [{"role": "system", "content": "Réponds en français. 日本語も OK. مرحبا"},
                      {"role": "user", "content": "Ça va? 😀👍🏽 — «quotes» ‘single’ ẞ ǅ e\u0301 zero\u200bwidth"},
                      {"role": "assistant", "content": "Très bien ! 🎉\u3000全角スペース"},
                      {"role": "user", "content": "Ελληνικά, русский, עברית, हिन्दी"}],
         "add_generation_prompt": True},
        {"messages": [{"role": "user", "content": "  \n padded with {{ braces }} and {% tags %} \\ back\\slash \"quotes\" \t\n"},
                      {"role": "assistant", "content": "\n\nleading newlines, then </think> inside text"},
                      {"role": "user", "content": "x"}],
         "add_generation_prompt": True},
        {"messages": [SYSTEM], "add_generation_prompt": True},
        {"messages": [U1, A1, {"role": "system", "content": "Late system note."}, U2], "add_generation_prompt": True},
        {"messages": [U1], "add_generation_prompt": True, "vars": {"custom_flag": [1, "two"], "enable_thinking": True}},
        {"messages": [m for i in range(10) for m in ({"role": "user", "content": f"question {i}"},
                                                     {"role": "assistant", "content": f"<think>r{i}</think>answer {i}"})]
         + [{"role": "user", "content": "last"}], "add_generation_prompt": True},
        {"messages": [U1, {"role": "assistant", "content": "<think>\n\n</think>\n\nShort."}, U2, THINK],
         "add_generation_prompt": False, "vars": {"enable_thinking": False}},
        {"messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": ""}], "add_generation_prompt": True},
        {"messages": [SYSTEM, {"role": "user", "content": "Weather?"}], "tools": [], "add_generation_prompt": True},
        # Rejected by the Qwen3 template (content None reaches `in`); Llama-3 prints "None".
        {"messages": [U1, {"role": "assistant", "content": None, "tool_calls": [call("search", {"query": "q"})]}],
         "tools": [SEARCH_TOOL], "add_generation_prompt": False},
        # An empty conversation: Qwen3 fails on messages[0].role, Llama-3 renders only the prompt.
        {"messages": [], "add_generation_prompt": True},
    ]
    return convs


def run_ferrum(args, **kw):
    return subprocess.run([FERRUM, "template", *args], capture_output=True, **kw)


def check_batch(name, cfg_path, conv_files, tmp):
    with open(cfg_path, encoding="utf-8") as f:
        cfg = json.load(f)
    template = hf_environment().from_string(cfg["chat_template"])
    batch = os.path.join(tmp, f"{name}.jsonl")
    with open(batch, "w", encoding="utf-8") as out:
        for path in conv_files:
            with open(path, encoding="utf-8") as f:
                out.write(json.dumps(json.load(f), ensure_ascii=False) + "\n")
    r = run_ferrum(["--tokenizer-config", cfg_path, "--batch-file", batch])
    if r.returncode != 0:
        print(f"{name}: ferrum failed: {r.stderr.decode()}")
        return 1
    lines = r.stdout.decode("utf-8").splitlines()
    if len(lines) != len(conv_files):
        print(f"{name}: {len(lines)} results for {len(conv_files)} conversations")
        return 1
    failures = rendered = 0
    for path, line in zip(conv_files, lines):
        with open(path, encoding="utf-8") as f:
            conv = json.load(f)
        got = json.loads(line)
        try:
            want = hf_render(template, conv, cfg)
        except Exception as e:  # jinja2 rejects it: ferrum must too
            if not isinstance(got, dict):
                failures += 1
                print(f"{name} {os.path.basename(path)}: jinja2 raised {type(e).__name__}: {e}, ferrum rendered {got!r}")
            continue
        rendered += 1
        if got != want:
            failures += 1
            print(f"{name} {os.path.basename(path)}:\n  jinja2: {want!r}\n  ferrum: {got!r}")
    print(f"{name}: {len(conv_files) - failures}/{len(conv_files)} match ({rendered} rendered by jinja2)")
    if rendered < 20:
        print(f"{name}: fewer than 20 rendered conversations")
        return 1
    return failures


def check_single_runs(tmp):
    """The one-conversation mode prints exactly the rendering (no added newline), from every template source."""
    failures = 0
    qwen_dir = os.path.join(SHARED, "tokenizers", "qwen3")
    with open(os.path.join(qwen_dir, "tokenizer_config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    template = hf_environment().from_string(cfg["chat_template"])
    msgs = os.path.join(tmp, "single_messages.json")
    tools = os.path.join(tmp, "single_tools.json")
    with open(msgs, "w", encoding="utf-8") as f:
        json.dump([SYSTEM, {"role": "user", "content": "Weather in Paris? ☀"}], f, ensure_ascii=False)
    with open(tools, "w", encoding="utf-8") as f:
        json.dump([WEATHER_TOOL], f, ensure_ascii=False)
    jinja_file = os.path.join(tmp, "qwen3.jinja")
    with open(jinja_file, "w", encoding="utf-8") as f:
        f.write(cfg["chat_template"])
    conv = {"messages": json.load(open(msgs, encoding="utf-8")), "tools": [WEATHER_TOOL], "add_generation_prompt": True,
            "vars": {"enable_thinking": False, "extra": {"k": 1}}}
    want = hf_render(template, conv, cfg).encode("utf-8")
    common = ["--messages", msgs, "--tools", tools, "--add-generation-prompt", "--enable-thinking=false",
              "--var", "extra={\"k\": 1}"]
    for source in (["--tokenizer-config", os.path.join(qwen_dir, "tokenizer_config.json")], ["--model", qwen_dir],
                   ["--template", jinja_file, "--var", "eos_token=\"<|im_end|>\""]):
        r = run_ferrum(source + common)
        if r.returncode != 0 or r.stdout != want:
            failures += 1
            print(f"single run {source[0]}: rc={r.returncode} stderr={r.stderr.decode()!r}\n"
                  f"  jinja2: {want!r}\n  ferrum: {r.stdout!r}")
    failures += check_gguf(tmp, msgs)
    return failures


def check_gguf(tmp, msgs):
    """A GGUF's tokenizer.chat_template, with bos/eos taken from its vocabulary."""
    try:
        import gguf
    except ImportError:
        print("gguf is not installed: skipping the GGUF source")
        return 0
    with open(os.path.join(SHARED, "tokenizers", "llama3", "tokenizer_config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    path = os.path.join(tmp, "llama3_vocab.gguf")
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_chat_template(cfg["chat_template"])
    writer.add_token_list(["<unk>", cfg["bos_token"], cfg["eos_token"]])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    conv = {"messages": json.load(open(msgs, encoding="utf-8")), "add_generation_prompt": False}
    want = hf_render(hf_environment().from_string(cfg["chat_template"]), conv, cfg).encode("utf-8")
    r = run_ferrum(["--model", path, "--messages", msgs])
    if r.returncode != 0 or r.stdout != want:
        print(f"GGUF source: rc={r.returncode} stderr={r.stderr.decode()!r}\n  jinja2: {want!r}\n  ferrum: {r.stdout!r}")
        return 1
    return 0


def check_errors(tmp):
    """raise_exception surfaces its message; an unsupported construct names its line."""
    failures = 0
    msgs = os.path.join(tmp, "err_messages.json")
    with open(msgs, "w", encoding="utf-8") as f:
        json.dump([{"role": "tool", "content": "x"}], f)
    cases = [
        ("{% for m in messages %}\n{% if m.role == 'tool' %}{{ raise_exception('Tool messages are not supported!') }}"
         "{% endif %}\n{% endfor %}", "Tool messages are not supported!"),
        ("{{ bos_token }}\n\n{% include 'other.jinja' %}", "line 3"),
    ]
    for i, (src, needle) in enumerate(cases):
        path = os.path.join(tmp, f"err{i}.jinja")
        with open(path, "w", encoding="utf-8") as f:
            f.write(src)
        r = run_ferrum(["--template", path, "--messages", msgs])
        if r.returncode == 0 or needle not in r.stderr.decode():
            failures += 1
            print(f"error case {i}: rc={r.returncode}, stderr {r.stderr.decode()!r} lacks {needle!r}")
    return failures


def main():
    if not FERRUM or not os.path.exists(FERRUM):
        print("FERRUM_BIN is not set to the ferrum CLI")
        return 1
    configs = {name: os.path.join(SHARED, "tokenizers", name, "tokenizer_config.json") for name in ("qwen3", "llama3")}
    if not all(os.path.exists(p) for p in configs.values()):
        print("shared tokenizer configs are missing")
        return 77
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        conv_files = []
        for i, conv in enumerate(conversations()):
            path = os.path.join(tmp, f"conv{i:02d}.json")
            with open(path, "w", encoding="utf-8") as f:
                json.dump(conv, f, ensure_ascii=False)
            conv_files.append(path)
        for name, cfg_path in configs.items():
            failures += check_batch(name, cfg_path, conv_files, tmp)
        failures += check_single_runs(tmp)
        failures += check_errors(tmp)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
