#include "server/server.h"

#include <fmt/format.h>
#include <httplib.h>
#include <pthread.h>
#include <sys/socket.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <thread>

#include "server/openai_request.h"
#include "server/prometheus.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace ferrum::server {

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

struct State {
  explicit State(const ServerOptions& o) : opt(o), seeds(std::random_device{}()) {}
  const ServerOptions& opt;
  std::string model_name;
  int64_t created = 0;
  std::atomic<bool> ready{false};
  std::unique_ptr<Runtime> rt;
  std::unique_ptr<Tokenizer> tok;
  std::optional<ChatTemplate> tmpl;  // absent: chat requests get a 400
  ChatTemplateSource tmpl_src;
  std::string tmpl_error;
  std::mutex tmpl_mu;  // rendering shares the parsed template; keep it to one thread at a time
  std::unique_ptr<Scheduler> sched;
  std::mutex seeds_mu;
  std::mt19937_64 seeds;

  uint64_t new_seed() {
    std::lock_guard<std::mutex> lock(seeds_mu);
    return seeds();
  }
  std::string new_id(const char* prefix) { return fmt::format("{}{:016x}", prefix, new_seed()); }
};

void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

void send_error(State& S, httplib::Response& res, const ApiError& e) {
  if (S.sched) S.sched->note_rejected();
  send_json(res, e.http_status, error_body(e));
}

// The body as JSON, or a 400 naming the parse error.
std::optional<json> parse_body(State& S, const httplib::Request& req, httplib::Response& res) {
  try {
    return json::parse(req.body);
  } catch (const json::parse_error& e) {
    send_error(S, res,
               {400, fmt::format("the request body is not valid JSON: {}", e.what()), "invalid_request_error",
                "", ""});
    return std::nullopt;
  }
}

std::string model_name_of(const std::string& path) {
  std::filesystem::path p(path);
  if (p.filename().empty()) p = p.parent_path();
  return p.extension() == ".gguf" ? p.stem().string() : p.filename().string();
}

void log_line(const std::string& s) { std::fprintf(stderr, "%s\n", s.c_str()); }

// One JSON object as an SSE event.
bool write_event(httplib::DataSink& sink, const json& data) {
  const std::string s = "data: " + data.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n";
  return sink.write(s.data(), s.size());
}

json usage_json(int64_t prompt, int64_t completion) {
  return {
      {"prompt_tokens", prompt}, {"completion_tokens", completion}, {"total_tokens", prompt + completion}};
}

// Runs one generation request (chat or text completion) and writes its response, streamed or not.
void generate(State& S, httplib::Response& res, bool chat, std::vector<int32_t> prompt,
              const GenerationFields& gen) {
  const std::string id = S.new_id(chat ? "chatcmpl-" : "cmpl-");
  const auto t0 = Clock::now();
  SubmitResult sub = S.sched->submit({id, std::move(prompt), gen.options});
  if (!sub.handle) {
    switch (sub.rejection) {
      case Rejection::QueueFull:
        return send_json(res, 429,
                         error_body({429, sub.error.message(), "rate_limit_error", "", "queue_full"}));
      case Rejection::ShuttingDown:
        return send_json(res, 503,
                         error_body({503, sub.error.message(), "server_error", "", "shutting_down"}));
      default:
        return send_json(res, 400, error_body({400, sub.error.message(), "invalid_request_error", "", ""}));
    }
  }
  std::shared_ptr<RequestHandle> h = sub.handle;
  const int64_t created = static_cast<int64_t>(std::time(nullptr));
  const char* object = chat ? "chat.completion" : "text_completion";
  auto log_done = [&S, id, t0](const RequestHandle::Update& u) {
    if (!S.opt.log_requests) return;
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    const std::string how = !u.error.ok() ? "error: " + u.error.message()
                            : u.cancelled ? std::string("cancelled")
                                          : std::string(finish_reason_name(u.reason));
    log_line(fmt::format("{}: {} prompt + {} generated tokens in {:.2f} s, {}", id, u.prompt_tokens,
                         u.completion_tokens, secs, how));
  };

  if (!gen.stream) {
    std::string text;
    RequestHandle::Update u;
    do {
      u = h->wait(std::chrono::milliseconds(1000));
      text += u.text;
    } while (!u.done);
    log_done(u);
    if (!u.error.ok())
      return send_json(res, 500, error_body({500, u.error.message(), "server_error", "", ""}));
    json choice = {{"index", 0}, {"logprobs", nullptr}, {"finish_reason", finish_reason_name(u.reason)}};
    if (chat)
      choice["message"] = {{"role", "assistant"}, {"content", text}};
    else
      choice["text"] = text;
    return send_json(res, 200,
                     {{"id", id},
                      {"object", object},
                      {"created", created},
                      {"model", S.model_name},
                      {"choices", json::array({choice})},
                      {"usage", usage_json(u.prompt_tokens, u.completion_tokens)}});
  }

  // Streaming: one SSE event per piece of final text (OpenAI's chunk objects), then the finish
  // chunk, the usage chunk when asked for, and [DONE]. A failed write means the client is gone:
  // the request is cancelled and its KV blocks return to the pool at the next step.
  const std::string chunk_object = chat ? "chat.completion.chunk" : "text_completion";
  const bool include_usage = gen.include_usage;
  auto chunk = [&S, id, created, chunk_object, chat, include_usage](const std::string& text,
                                                                    const json& finish, bool first) {
    json choice = {{"index", 0}, {"logprobs", nullptr}, {"finish_reason", finish}};
    if (chat) {
      json delta = json::object();
      if (first) delta["role"] = "assistant";
      if (!text.empty() || first) delta["content"] = text;
      choice["delta"] = delta;
    } else {
      choice["text"] = text;
    }
    json c = {{"id", id},
              {"object", chunk_object},
              {"created", created},
              {"model", S.model_name},
              {"choices", json::array({choice})}};
    if (include_usage) c["usage"] = nullptr;
    return c;
  };
  auto first = std::make_shared<bool>(true);
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [=, &S](size_t, httplib::DataSink& sink) {
        if (chat && *first) {
          *first = false;
          return write_event(sink, chunk("", nullptr, true));
        }
        RequestHandle::Update u = h->wait(std::chrono::milliseconds(200));
        if (!u.text.empty() && !write_event(sink, chunk(u.text, nullptr, false))) return false;
        if (!u.done) return sink.is_writable();
        log_done(u);
        if (!u.error.ok()) {
          if (!write_event(sink, error_body({500, u.error.message(), "server_error", "", ""}))) return false;
        } else {
          if (!write_event(sink, chunk("", finish_reason_name(u.reason), false))) return false;
          if (include_usage) {
            json c = {{"id", id},
                      {"object", chunk_object},
                      {"created", created},
                      {"model", S.model_name},
                      {"choices", json::array()},
                      {"usage", usage_json(u.prompt_tokens, u.completion_tokens)}};
            if (!write_event(sink, c)) return false;
          }
        }
        static const std::string done = "data: [DONE]\n\n";
        if (!sink.write(done.data(), done.size())) return false;
        sink.done();
        return true;
      },
      [h](bool success) {
        if (!success) h->cancel();
      });
}

void handle_chat(State& S, const httplib::Request& req, httplib::Response& res) {
  auto body = parse_body(S, req, res);
  if (!body) return;
  auto parsed = parse_chat_request(*body, S.model_name, S.new_seed());
  if (auto* e = std::get_if<ApiError>(&parsed)) return send_error(S, res, *e);
  auto& r = std::get<ChatRequest>(parsed);
  if (!S.rt->causal())
    return send_error(S, res, invalid_request("the model is an encoder; it serves /v1/embeddings only"));
  if (!S.tmpl)
    return send_error(S, res,
                      invalid_request(S.tmpl_error + " (start the server with --chat-template FILE)"));
  Result<std::string> text = [&] {
    std::lock_guard<std::mutex> lock(S.tmpl_mu);
    return S.tmpl->render_chat(r.messages, nlohmann::ordered_json(), /*add_generation_prompt=*/true,
                               nlohmann::ordered_json::object(), S.tmpl_src.bos_token, S.tmpl_src.eos_token);
  }();
  if (!text.ok())
    return send_error(
        S, res, {400, "chat template: " + text.status().message(), "invalid_request_error", "messages", ""});
  generate(S, res, true, encode_chat(*S.tok, text.value(), S.tmpl_src), r.gen);
}

void handle_completion(State& S, const httplib::Request& req, httplib::Response& res) {
  auto body = parse_body(S, req, res);
  if (!body) return;
  auto parsed = parse_completion_request(*body, S.model_name, S.new_seed());
  if (auto* e = std::get_if<ApiError>(&parsed)) return send_error(S, res, *e);
  auto& r = std::get<CompletionRequest>(parsed);
  if (!S.rt->causal())
    return send_error(S, res, invalid_request("the model is an encoder; it serves /v1/embeddings only"));
  std::vector<int32_t> ids;
  if (auto* text = std::get_if<std::string>(&r.prompt))
    ids = S.tok->encode(*text, /*add_special=*/true, /*parse_special=*/true);
  else
    ids = std::get<std::vector<int32_t>>(r.prompt);
  generate(S, res, false, std::move(ids), r.gen);
}

void handle_embeddings(State& S, const httplib::Request& req, httplib::Response& res) {
  auto body = parse_body(S, req, res);
  if (!body) return;
  auto parsed = parse_embedding_request(*body, S.model_name);
  if (auto* e = std::get_if<ApiError>(&parsed)) return send_error(S, res, *e);
  auto& r = std::get<EmbeddingRequest>(parsed);
  if (S.rt->causal())
    return send_error(
        S, res, invalid_request("the model is a decoder; /v1/embeddings needs an encoder model (BERT)"));
  std::vector<std::vector<int32_t>> inputs;
  int64_t n_tokens = 0;
  for (auto& in : r.inputs) {
    if (auto* text = std::get_if<std::string>(&in)) {
      if (!S.tok)
        return send_error(
            S, res,
            {400, "the model has no tokenizer; send token ids", "invalid_request_error", "input", ""});
      inputs.push_back(S.tok->encode(*text, /*add_special=*/true, /*parse_special=*/false));
    } else {
      inputs.push_back(std::move(std::get<std::vector<int32_t>>(in)));
    }
    n_tokens += static_cast<int64_t>(inputs.back().size());
  }
  auto vecs = S.sched->embed(std::move(inputs), S.rt->default_embed_options());
  if (!vecs.ok())
    return send_error(S, res, {400, vecs.status().message(), "invalid_request_error", "input", ""});
  json data = json::array();
  for (size_t i = 0; i < vecs->size(); ++i) {
    const std::vector<float>& v = (*vecs)[i];
    json e = {{"object", "embedding"}, {"index", i}};
    if (r.base64)
      e["embedding"] = base64_encode(v.data(), v.size() * sizeof(float));
    else
      e["embedding"] = v;
    data.push_back(std::move(e));
  }
  send_json(res, 200,
            {{"object", "list"},
             {"data", data},
             {"model", S.model_name},
             {"usage", {{"prompt_tokens", n_tokens}, {"total_tokens", n_tokens}}}});
}

// Loads the model, tokenizer and chat template; the HTTP side answers 503 until this is done.
Status load(State& S) {
  const ServerOptions& o = S.opt;
  FERRUM_ASSIGN_OR_RETURN(S.rt, Runtime::load(o.model_path, o.runtime));
  if (auto tok = Tokenizer::load(o.model_path); tok.ok()) {
    S.tok = std::move(tok).value();
  } else if (S.rt->causal()) {
    return tok.status();
  }
  if (S.rt->causal()) {
    auto src = load_chat_template(o.model_path, o.chat_template_path);
    if (!src.ok() && !o.chat_template_path.empty()) return src.status();
    if (src.ok()) {
      auto parsed = ChatTemplate::parse(src->chat_template);
      if (!parsed.ok()) return parsed.status().with_context("chat template");
      S.tmpl = std::move(parsed).value();
      S.tmpl_src = src.value();
    } else {
      S.tmpl_error = src.status().message();
      log_line("warning: " + S.tmpl_error + "; /v1/chat/completions is disabled (use --chat-template FILE)");
    }
  }
  S.sched = std::make_unique<Scheduler>(*S.rt, S.tok.get(), o.scheduler);
  return {};
}

}  // namespace

int run_server(const ServerOptions& opt) {
  // SIGINT/SIGTERM are taken by sigwait() below; every thread started from here inherits the mask.
  // A client that disconnects must not kill the process with SIGPIPE.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  State S(opt);
  S.model_name = opt.served_model_name.empty() ? model_name_of(opt.model_path) : opt.served_model_name;
  S.created = static_cast<int64_t>(std::time(nullptr));

  httplib::Server svr;
  // Each streaming response holds an HTTP thread while it runs: enough for every running and
  // queued request, plus a few for /health and /metrics.
  const size_t n_threads =
      static_cast<size_t>(std::min<int64_t>(2048, opt.runtime.max_seqs + opt.scheduler.max_queue + 16));
  svr.new_task_queue = [n_threads] { return new httplib::ThreadPool(n_threads); };
  svr.set_payload_max_length(64u << 20);
  svr.set_keep_alive_timeout(2);

  svr.set_pre_routing_handler([&S](const httplib::Request& req, httplib::Response& res) {
    const bool api = req.path.rfind("/v1/", 0) == 0;
    if (api && !S.opt.api_key.empty() && req.get_header_value("Authorization") != "Bearer " + S.opt.api_key) {
      if (S.sched) S.sched->note_rejected();
      send_json(res, 401,
                error_body({401, "invalid or missing API key (send 'Authorization: Bearer KEY')",
                            "invalid_request_error", "", "invalid_api_key"}));
      return httplib::Server::HandlerResponse::Handled;
    }
    if (api && !S.ready.load()) {
      send_json(res, 503, error_body({503, "the model is still loading", "server_error", "", "loading"}));
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  svr.Get("/health", [&S](const httplib::Request&, httplib::Response& res) {
    if (S.ready.load())
      send_json(res, 200, {{"status", "ok"}});
    else
      send_json(res, 503, {{"status", "loading"}});
  });
  svr.Get("/metrics", [&S](const httplib::Request&, httplib::Response& res) {
    res.set_content(S.ready.load() ? prometheus_text(S.sched->stats()) : std::string(),
                    "text/plain; version=0.0.4; charset=utf-8");
  });
  svr.Get("/v1/models", [&S](const httplib::Request&, httplib::Response& res) {
    send_json(res, 200,
              {{"object", "list"},
               {"data", json::array({{{"id", S.model_name},
                                      {"object", "model"},
                                      {"created", S.created},
                                      {"owned_by", "ferrum"},
                                      {"max_model_len", S.rt->kv_capacity()}}})}});
  });
  svr.Post("/v1/chat/completions",
           [&S](const httplib::Request& req, httplib::Response& res) { handle_chat(S, req, res); });
  svr.Post("/v1/completions",
           [&S](const httplib::Request& req, httplib::Response& res) { handle_completion(S, req, res); });
  svr.Post("/v1/embeddings",
           [&S](const httplib::Request& req, httplib::Response& res) { handle_embeddings(S, req, res); });
  svr.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (res.status != 404 || !res.body.empty()) return;
    // A known path asked with the wrong method is 405 with the method it takes (RFC 9110 15.5.6).
    static const std::map<std::string, std::string> kRouteMethod = {
        {"/health", "GET"},          {"/metrics", "GET"},
        {"/v1/models", "GET"},       {"/v1/chat/completions", "POST"},
        {"/v1/completions", "POST"}, {"/v1/embeddings", "POST"}};
    if (auto it = kRouteMethod.find(req.path); it != kRouteMethod.end()) {
      res.set_header("Allow", it->second);
      return send_json(res, 405,
                       error_body({405, fmt::format("{} takes {}, not {}", req.path, it->second, req.method),
                                   "invalid_request_error", "", ""}));
    }
    send_json(res, 404,
              error_body({404, fmt::format("no route {} {}", req.method, req.path), "invalid_request_error",
                          "", ""}));
  });
  svr.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unknown error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    send_json(res, 500, error_body({500, "internal error: " + what, "server_error", "", ""}));
  });

  // Debian's cpp-httplib listens with a compiled-in backlog of 5, which drops or resets bursts of new
  // connections (64 clients starting at once); listen() again on the bound socket raises it.
  int listen_fd = -1;
  svr.set_socket_options([&listen_fd](socket_t sock) {
    httplib::default_socket_options(sock);
    listen_fd = sock;
  });
  // Port 0 lets the system pick a free port; the log line names the one bound.
  const int port =
      opt.port == 0 ? svr.bind_to_any_port(opt.host) : (svr.bind_to_port(opt.host, opt.port) ? opt.port : -1);
  if (port <= 0) {
    std::fprintf(stderr, "error: cannot listen on %s:%d\n", opt.host.c_str(), opt.port);
    return 1;
  }
  if (listen_fd >= 0) ::listen(listen_fd, SOMAXCONN);
  std::thread http([&svr] { svr.listen_after_bind(); });
  log_line(
      fmt::format("ferrum serve: listening on http://{}:{} (loading {})", opt.host, port, opt.model_path));

  const auto t0 = Clock::now();
  if (Status st = load(S); !st.ok()) {
    std::fprintf(stderr, "error: %s\n", st.message().c_str());
    svr.stop();
    http.join();
    return 1;
  }
  S.ready.store(true);
  log_line(fmt::format(
      "ferrum serve: model '{}' ready in {:.1f} s ({}; context {} tokens, {} KV blocks, KV {:.0f} MiB, "
      "max {} sequences, {} tokens per step)",
      S.model_name, std::chrono::duration<double>(Clock::now() - t0).count(), S.rt->backend_description(),
      S.rt->kv_capacity(), S.rt->kv_total_blocks(), double(S.rt->kv_bytes()) / double(1 << 20),
      opt.runtime.max_seqs, S.rt->max_step_tokens()));

  int sig = 0;
  sigwait(&sigs, &sig);
  const SchedulerStats st = S.sched->stats();
  log_line(fmt::format("ferrum serve: {} received; finishing {} running and {} queued requests (up to {} s)",
                       sig == SIGINT ? "SIGINT" : "SIGTERM", st.running, st.queue_depth,
                       opt.shutdown_timeout_s));
  S.sched->drain(std::chrono::milliseconds(static_cast<int64_t>(opt.shutdown_timeout_s * 1000)));
  svr.stop();
  http.join();
  S.sched.reset();
  log_line("ferrum serve: stopped");
  return 0;
}

}  // namespace ferrum::server
