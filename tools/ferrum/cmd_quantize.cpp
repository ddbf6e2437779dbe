// ferrum quantize: write a GGUF in another weight type (also converts Hugging Face folders).
#include <unistd.h>

#include <cstdio>

#include "cli_util.h"
#include "commands.h"
#include "models/gguf_export.h"

namespace ferrum::cli {

void add_quantize(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand(
      "quantize", "Convert a GGUF (F32/F16/BF16) or Hugging Face folder to a GGUF of TYPE "
                  "(F32, F16, BF16, Q8_0, Q4_0, Q4_K_M, Q5_K_M, Q6_K; _M mixes follow llama-quantize)");
  struct Opts {
    std::string in, out, type;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("input", o->in, "GGUF file or Hugging Face folder")->required();
  cmd->add_option("output", o->out, "Output .gguf")->required();
  cmd->add_option("type", o->type, "Target type")->required();
  cmd->callback([o, &exit_code] {
    const bool tty = isatty(fileno(stderr));
    auto progress = [tty](size_t done, size_t total) {
      if (!tty) return;
      const int width = 40, filled = static_cast<int>(width * done / total);
      std::fprintf(stderr, "\r[%.*s%*s] %zu/%zu tensors", filled, "########################################",
                   width - filled, "", done, total);
      if (done == total) std::fputc('\n', stderr);
    };
    Status st = quantize_model(o->in, o->out, o->type, progress);
    if (!st.ok()) return void(exit_code = fail(st));
    std::printf("wrote %s (%s)\n", o->out.c_str(), o->type.c_str());
  });
}

}  // namespace ferrum::cli
