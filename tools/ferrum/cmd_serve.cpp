// ferrum serve: the OpenAI-compatible HTTP server (src/server).
#include <filesystem>

#include "cli_util.h"
#include "commands.h"
#include "server/server.h"

namespace ferrum::cli {

void add_serve(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand("serve",
                                 "Serve a model over an OpenAI-compatible HTTP API with continuous batching");
  struct Opts {
    server::ServerOptions server;
    int64_t max_queue = 256;
    int64_t kv_memory_mib = 4096;
    RuntimeFlags rt;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("-m,--model", o->server.model_path,
                  "GGUF file or Hugging Face folder (default: $FERRUM_MODEL, else the cached Gemma 3 270M)");
  cmd->add_option("--host", o->server.host, "Address to listen on")->capture_default_str();
  cmd->add_option("--port", o->server.port, "Port to listen on")
      ->capture_default_str()
      ->check(CLI::Range(0, 65535));
  cmd->add_option("--api-key", o->server.api_key, "Require 'Authorization: Bearer KEY' on /v1/*");
  cmd->add_option("--served-model-name", o->server.served_model_name,
                  "Model name in the API (default: the file name)");
  cmd->add_option("--chat-template", o->server.chat_template_path,
                  "Jinja chat template file (overrides the model's)");
  cmd->add_option("--max-queue", o->max_queue, "Requests that may wait for admission; more get HTTP 429")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 20));
  auto* kv_memory =
      cmd->add_option("--kv-memory", o->kv_memory_mib,
                      "KV cache memory in MiB when --kv-blocks is not given (not applied by default when "
                      "--gpu-memory-utilization is)")
          ->capture_default_str();
  cmd->add_option("--shutdown-timeout", o->server.shutdown_timeout_s,
                  "Seconds in-flight requests may take to finish after SIGINT/SIGTERM")
      ->capture_default_str();
  cmd->add_flag("!--no-log-requests", o->server.log_requests, "Do not log one line per finished request");
  o->rt.max_seqs = 16;  // a server runs many sequences; `run` and `bench` default to fewer
  o->rt.add_to(cmd);
  cmd->callback([o, kv_memory, &exit_code] {
    auto cfg = o->rt.resolve();
    if (!cfg.ok()) return void(exit_code = fail(cfg.status()));
    o->server.runtime = cfg.value();
    // The default KV budget would cap what --gpu-memory-utilization is asked to size.
    const bool sized_by_gpu = o->server.runtime.gpu_memory_utilization > 0.0 && kv_memory->count() == 0;
    if (o->server.runtime.kv_memory_mib == 0 && !sized_by_gpu)
      o->server.runtime.kv_memory_mib = o->kv_memory_mib;
    o->server.scheduler.max_queue = o->max_queue;
    if (o->server.model_path.empty()) {
      auto m = default_model();
      if (!m.ok()) return void(exit_code = fail(m.status()));
      o->server.model_path = m.value();
    }
    if (!std::filesystem::exists(o->server.model_path))
      return void(exit_code = fail(Error(o->server.model_path + ": model not found")));
    exit_code = server::run_server(o->server);
  });
}

}  // namespace ferrum::cli
