// ferrum embed: sentence embeddings from an encoder (BERT) as a float32 .npy.
// One input (--tokens / --text) gives [hidden] pooled or [n_tokens, hidden] with --pooling none;
// a file of inputs (--tokens-file / --text-file, one per line) gives [n_inputs, hidden], embedded
// --batch inputs per runtime call.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>

#include "cli_util.h"
#include "commands.h"
#include "core/npy.h"
#include "core/profiler.h"
#include "tokenizer/tokenizer.h"

namespace ferrum::cli {

namespace {

Result<std::vector<std::string>> read_lines(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error(path + ": cannot open");
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty()) lines.push_back(line);
  }
  if (lines.empty()) return Error(path + ": no inputs");
  return lines;
}

}  // namespace

void add_embed(CLI::App& app, int& exit_code) {
  auto* cmd =
      app.add_subcommand("embed", "Write the embedding of token ids or text from an encoder model to a .npy");
  struct Opts {
    std::string model, tokens, tokens_file, text, text_file, out, pooling;
    bool normalize = false, timing = false;
    int64_t batch = 0;
    RuntimeFlags rt;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("-m,--model", o->model, "GGUF file or Hugging Face folder of an encoder (BERT)")
      ->required();
  auto* in_tokens = cmd->add_option("--tokens", o->tokens, "Comma-separated token ids of one input");
  auto* in_tfile =
      cmd->add_option("--tokens-file", o->tokens_file, "File with one comma-separated id list per line");
  auto* in_text =
      cmd->add_option("--text", o->text, "Text of one input (the model's tokenizer adds [CLS]/[SEP])");
  auto* in_xfile = cmd->add_option("--text-file", o->text_file, "File with one text per line");
  for (auto* a : {in_tokens, in_tfile, in_text, in_xfile})
    for (auto* b : {in_tokens, in_tfile, in_text, in_xfile})
      if (a != b) a->excludes(b);
  cmd->add_option("-o,--out", o->out, "Output .npy (float32)")->required();
  cmd->add_option("--pooling", o->pooling, "mean | cls | none (default: the model's, else mean)")
      ->check(CLI::IsMember({"mean", "cls", "none"}));
  auto* norm = cmd->add_flag("--normalize,!--no-normalize", o->normalize,
                             "Scale vectors to unit L2 norm (default: the model's Normalize module)");
  cmd->add_option("--batch", o->batch, "Inputs per runtime call for file inputs (default: all)")
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--timing", o->timing,
                "Report the time spent embedding on stderr (after one untimed warm-up call)");
  o->rt.add_to(cmd);
  cmd->callback([o, norm, in_tokens, in_tfile, in_text, in_xfile, &exit_code] {
    const bool from_file = in_tfile->count() > 0 || in_xfile->count() > 0;
    const bool from_text = in_text->count() > 0 || in_xfile->count() > 0;
    if (in_tokens->count() == 0 && !from_file && !from_text)
      return void(exit_code = fail(Error("one of --tokens, --tokens-file, --text, --text-file is required")));
    std::vector<std::string> lines;
    if (from_file) {
      auto r = read_lines(from_text ? o->text_file : o->tokens_file);
      if (!r.ok()) return void(exit_code = fail(r.status()));
      lines = std::move(r).value();
    } else {
      lines.push_back(from_text ? o->text : o->tokens);
    }
    std::vector<std::vector<int32_t>> inputs;
    if (from_text) {
      auto tok = Tokenizer::load(o->model);
      if (!tok.ok()) return void(exit_code = fail(tok.status()));
      for (const std::string& t : lines) inputs.push_back(tok.value()->encode(t, /*add_special=*/true));
    } else {
      for (size_t i = 0; i < lines.size(); ++i) {
        auto ids = parse_ids(lines[i]);
        if (!ids.ok() && from_file)
          return void(exit_code = fail(Error(o->tokens_file + ":" + std::to_string(i + 1) + ": " +
                                             ids.status().message())));
        if (!ids.ok()) return void(exit_code = fail(ids.status()));
        inputs.push_back(std::move(ids).value());
      }
    }
    auto rt = load_runtime(o->model, o->rt);
    if (!rt.ok()) return void(exit_code = fail(rt.status()));
    Runtime& r = *rt.value();
    Runtime::EmbedOptions opt = r.default_embed_options();
    if (!o->pooling.empty())
      opt.pooling = o->pooling == "none" ? Pooling::None : o->pooling == "cls" ? Pooling::Cls : Pooling::Mean;
    if (norm->count() > 0) opt.normalize = o->normalize;
    if (from_file && opt.pooling == Pooling::None)
      return void(exit_code =
                      fail(Error("--pooling none gives one row per token: use a single --tokens / --text")));

    const size_t batch = o->batch > 0 ? static_cast<size_t>(o->batch) : inputs.size();
    auto run_batch = [&](size_t first, std::vector<std::vector<float>>* vecs) -> Status {
      const size_t n = std::min(batch, inputs.size() - first);
      FERRUM_ASSIGN_OR_RETURN(auto v, r.embed_batch(std::span(inputs).subspan(first, n), opt));
      for (auto& x : v) vecs->push_back(std::move(x));
      return {};
    };
    std::vector<std::vector<float>> vecs;
    if (o->timing) {
      if (auto st = run_batch(0, &vecs); !st.ok()) return void(exit_code = fail(st));
      vecs.clear();
      r.profiler().reset();
    }
    const auto t0 = std::chrono::steady_clock::now();
    for (size_t first = 0; first < inputs.size(); first += batch)
      if (auto st = run_batch(first, &vecs); !st.ok()) return void(exit_code = fail(st));
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    const int64_t H = r.config().hidden;
    std::vector<float> flat;
    for (const auto& v : vecs) flat.insert(flat.end(), v.begin(), v.end());
    std::vector<int64_t> shape;
    if (from_file)
      shape = {static_cast<int64_t>(vecs.size()), H};
    else if (opt.pooling == Pooling::None)
      shape = {static_cast<int64_t>(inputs[0].size()), H};
    else
      shape = {H};
    if (auto st = write_npy_f32(o->out, flat.data(), shape); !st.ok()) return void(exit_code = fail(st));
    std::printf("wrote %s [%s]\n", o->out.c_str(),
                shape.size() == 1 ? std::to_string(shape[0]).c_str()
                                  : (std::to_string(shape[0]) + ", " + std::to_string(shape[1])).c_str());
    if (o->timing) {
      int64_t n_tokens = 0;
      for (const auto& in : inputs) n_tokens += static_cast<int64_t>(in.size());
      std::fprintf(stderr, "timing: %zu inputs, %lld tokens, batch %zu: %.3f s, %.1f inputs/s\n",
                   inputs.size(), static_cast<long long>(n_tokens), batch, secs,
                   double(inputs.size()) / secs);
    }
    if (r.runtime_config().profile) std::fputs(r.profiler().report("embed").c_str(), stderr);
  });
}

}  // namespace ferrum::cli
