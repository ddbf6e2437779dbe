// ferrum tokenize / detokenize: text <-> token ids with a model's tokenizer.
// --batch-file handles many inputs in one process (one JSON value per line), for differential
// tests and benchmarks; --timing reports the time spent inside encode() on stderr.
#include <time.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "commands.h"
#include "tokenizer/tokenizer.h"

namespace ferrum::cli {

namespace {

struct Source {
  std::string model, tokenizer;
  void add_to(CLI::App* cmd) {
    auto* m = cmd->add_option("--model", model, "GGUF file or Hugging Face model folder");
    auto* t = cmd->add_option("--tokenizer", tokenizer, "tokenizer.json, vocab.txt or GGUF file");
    m->excludes(t);
    t->excludes(m);
  }
  Result<std::unique_ptr<Tokenizer>> load() const {
    if (model.empty() && tokenizer.empty()) return Error("one of --model or --tokenizer is required");
    return Tokenizer::load(model.empty() ? tokenizer : model);
  }
};

// Calls `fn(line_number, json)` for every non-empty line of a JSON-lines file.
template <class Fn>
Status for_each_json_line(const std::string& path, Fn&& fn) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error(path + ": cannot open");
  std::string line;
  for (size_t n = 1; std::getline(in, line); ++n) {
    if (line.empty()) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      return Error(path + ":" + std::to_string(n) + ": invalid JSON: " + e.what());
    }
    FERRUM_TRY(fn(n, j));
  }
  return {};
}

// CPU time of this thread: unlike wall time, not inflated when the machine is busy.
double thread_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) + double(t.tv_nsec) * 1e-9;
}

std::string ids_json(const std::vector<int32_t>& ids) {
  std::string s = "[";
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? "," : "") + std::to_string(ids[i]);
  return s + "]";
}

}  // namespace

void add_tokenize(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand("tokenize", "Print the token ids of a text");
  struct Opts {
    Source src;
    std::string text, batch_file;
    bool no_special = false, parse_special = false, timing = false;
  };
  auto o = std::make_shared<Opts>();
  o->src.add_to(cmd);
  auto* text = cmd->add_option("--text", o->text, "Text to tokenize");
  auto* batch = cmd->add_option("--batch-file", o->batch_file,
                                "JSON-lines file of strings; prints one JSON array of ids per line");
  text->excludes(batch);
  batch->excludes(text);
  cmd->add_flag("--no-special", o->no_special, "Do not add BOS/EOS/CLS/SEP framing");
  cmd->add_flag("--parse-special", o->parse_special,
                "Turn special-token text (e.g. <|im_start|>) into those tokens");
  cmd->add_flag("--timing", o->timing, "Report encode time per input on stderr");
  cmd->callback([o, &exit_code] {
    auto tok = o->src.load();
    if (!tok.ok()) return void(exit_code = fail(tok.status()));
    auto encode = [&](const std::string& s) {
      const auto t0 = std::chrono::steady_clock::now();
      const double c0 = thread_cpu_seconds();
      auto ids = tok.value()->encode(s, !o->no_special, o->parse_special);
      const double cpu = thread_cpu_seconds() - c0;
      const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (o->timing) {
        auto mbps = [&](double t) { return t > 0 ? double(s.size()) / t / 1e6 : 0.0; };
        std::fprintf(stderr, "encode: %zu bytes -> %zu ids in %.3f ms (%.2f MB/s), cpu %.3f ms (%.2f MB/s)\n",
                     s.size(), ids.size(), sec * 1e3, mbps(sec), cpu * 1e3, mbps(cpu));
      }
      return ids;
    };
    if (o->batch_file.empty()) {
      std::printf("%s\n", join_ids(encode(o->text)).c_str());
      return;
    }
    const Status st = for_each_json_line(o->batch_file, [&](size_t n, const nlohmann::json& j) -> Status {
      if (!j.is_string()) return Error(o->batch_file + ":" + std::to_string(n) + ": expected a JSON string");
      std::printf("%s\n", ids_json(encode(j.get<std::string>())).c_str());
      return {};
    });
    if (!st.ok()) exit_code = fail(st);
  });
}

void add_detokenize(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand("detokenize", "Print the text of token ids");
  struct Opts {
    Source src;
    std::string ids, batch_file;
    bool skip_special = false;
  };
  auto o = std::make_shared<Opts>();
  o->src.add_to(cmd);
  auto* ids = cmd->add_option("--ids", o->ids, "Comma-separated token ids");
  auto* batch = cmd->add_option("--batch-file", o->batch_file,
                                "JSON-lines file of id arrays; prints one JSON string per line");
  ids->excludes(batch);
  batch->excludes(ids);
  cmd->add_flag("--skip-special", o->skip_special, "Leave out special tokens");
  cmd->callback([o, &exit_code] {
    auto tok = o->src.load();
    if (!tok.ok()) return void(exit_code = fail(tok.status()));
    if (o->batch_file.empty()) {
      auto parsed = parse_ids(o->ids);
      if (!parsed.ok()) return void(exit_code = fail(parsed.status()));
      const std::string text = tok.value()->decode(parsed.value(), o->skip_special);
      std::fwrite(text.data(), 1, text.size(), stdout);
      std::fputc('\n', stdout);
      return;
    }
    const Status st = for_each_json_line(o->batch_file, [&](size_t n, const nlohmann::json& j) -> Status {
      std::vector<int32_t> v;
      if (!j.is_array())
        return Error(o->batch_file + ":" + std::to_string(n) + ": expected a JSON array of ids");
      for (const auto& x : j) {
        if (!x.is_number_integer())
          return Error(o->batch_file + ":" + std::to_string(n) + ": expected a JSON array of ids");
        v.push_back(x.get<int32_t>());
      }
      const std::string text = tok.value()->decode(v, o->skip_special);
      std::printf("%s\n", nlohmann::json(text).dump().c_str());
      return {};
    });
    if (!st.ok()) exit_code = fail(st);
  });
}

}  // namespace ferrum::cli
