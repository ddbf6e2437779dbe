#include <cstdio>

#include "commands.h"

int main(int argc, char** argv) {
  CLI::App app{"ferrum: transformer inference engine"};
  app.require_subcommand(1);
  int exit_code = 0;
  ferrum::cli::add_info(app, exit_code);
  ferrum::cli::add_logits(app, exit_code);
  ferrum::cli::add_embed(app, exit_code);
  ferrum::cli::add_generate(app, exit_code);
  ferrum::cli::add_bench(app, exit_code);
  ferrum::cli::add_quantize(app, exit_code);
  ferrum::cli::add_run(app, exit_code);
  ferrum::cli::add_tokenize(app, exit_code);
  ferrum::cli::add_detokenize(app, exit_code);
  ferrum::cli::add_template(app, exit_code);
  ferrum::cli::add_serve(app, exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help / --version print and exit 0; usage errors are one line on stderr.
    if (e.get_exit_code() == 0) return app.exit(e);
    std::fprintf(stderr, "error: %s (see --help)\n", e.what());
    return 2;
  }
  return exit_code;
}
