// `ferrum serve`: an OpenAI-compatible HTTP server in front of one model and its Scheduler.
//
// HTTP is cpp-httplib (Debian's libcpp-httplib-dev): a small, blocking, thread-per-connection
// server with chunked responses, which is all SSE streaming needs; the model work happens on the
// scheduler thread, so HTTP threads only parse, wait and write. (Boost.Beast or Drogon would add an
// async framework we do not need.)
#pragma once

#include <cstdint>
#include <string>

#include "engine/scheduler.h"
#include "ferrum/config.h"

namespace ferrum::server {

struct ServerOptions {
  std::string model_path;
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string api_key;             // Bearer token required on /v1/* when set
  std::string served_model_name;   // default: the model file or folder name without extension
  std::string chat_template_path;  // overrides the model's template
  RuntimeConfig runtime;
  SchedulerConfig scheduler;
  double shutdown_timeout_s = 30;  // grace for in-flight requests on SIGINT/SIGTERM
  bool log_requests = true;
};

// Serves until SIGINT/SIGTERM; returns the process exit code (0 after a graceful shutdown).
int run_server(const ServerOptions& opt);

}  // namespace ferrum::server
