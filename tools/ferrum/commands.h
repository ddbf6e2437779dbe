// Each subcommand lives in its own cmd_<name>.cpp and registers itself on the CLI app.
// The callback stores the process exit code in `exit_code`.
#pragma once

#include <CLI/CLI.hpp>

namespace ferrum::cli {

void add_info(CLI::App& app, int& exit_code);
void add_logits(CLI::App& app, int& exit_code);
void add_embed(CLI::App& app, int& exit_code);
void add_generate(CLI::App& app, int& exit_code);
void add_bench(CLI::App& app, int& exit_code);
void add_quantize(CLI::App& app, int& exit_code);
void add_run(CLI::App& app, int& exit_code);
void add_tokenize(CLI::App& app, int& exit_code);
void add_detokenize(CLI::App& app, int& exit_code);
void add_template(CLI::App& app, int& exit_code);
void add_serve(CLI::App& app, int& exit_code);

}  // namespace ferrum::cli
