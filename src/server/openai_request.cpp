#include "server/openai_request.h"

#include <fmt/format.h>

#include <cmath>
#include <functional>
#include <limits>

namespace ferrum::server {

using nlohmann::json;

json error_body(const ApiError& e) {
  return {{"error",
           {{"message", e.message},
            {"type", e.type},
            {"param", e.param.empty() ? json(nullptr) : json(e.param)},
            {"code", e.code.empty() ? json(nullptr) : json(e.code)}}}};
}

namespace {

ApiError bad(const std::string& param, const std::string& message) {
  return {400, message, "invalid_request_error", param, ""};
}

// A field present and not null.
const json* field(const json& body, const char* key) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return nullptr;
  return &*it;
}

std::optional<ApiError> get_number(const json& body, const char* key, double lo, double hi, bool lo_open,
                                   float* out) {
  const json* v = field(body, key);
  if (!v) return std::nullopt;
  if (!v->is_number()) return bad(key, fmt::format("'{}' must be a number", key));
  const double d = v->get<double>();
  if (!std::isfinite(d) || d < lo || d > hi || (lo_open && d == lo))
    return bad(key, fmt::format("'{}' must be in {}{}, {}]", key, lo_open ? "(" : "[", lo, hi));
  *out = static_cast<float>(d);
  return std::nullopt;
}

std::optional<ApiError> get_int(const json& body, const char* key, int64_t lo, int64_t hi, int64_t* out) {
  const json* v = field(body, key);
  if (!v) return std::nullopt;
  if (!v->is_number_integer()) return bad(key, fmt::format("'{}' must be an integer", key));
  const auto i = v->is_number_unsigned() &&
                         v->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())
                     ? std::numeric_limits<int64_t>::max()
                     : v->get<int64_t>();
  if (i < lo || i > hi) return bad(key, fmt::format("'{}' must be between {} and {}", key, lo, hi));
  *out = i;
  return std::nullopt;
}

std::optional<ApiError> get_bool(const json& body, const char* key, bool* out) {
  const json* v = field(body, key);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) return bad(key, fmt::format("'{}' must be a boolean", key));
  *out = v->get<bool>();
  return std::nullopt;
}

std::optional<ApiError> check_model(const json& body, const std::string& served) {
  const json* v = field(body, "model");
  if (!v) return std::nullopt;
  if (!v->is_string()) return bad("model", "'model' must be a string");
  if (v->get<std::string>() != served)
    return ApiError{
        404,
        fmt::format("The model '{}' does not exist; this server serves '{}'", v->get<std::string>(), served),
        "invalid_request_error", "model", "model_not_found"};
  return std::nullopt;
}

// An option we do not implement: present with a non-default value is an error, not silently ignored.
std::optional<ApiError> unsupported(const json& body, const char* key,
                                    const std::function<bool(const json&)>& is_default) {
  const json* v = field(body, key);
  if (v && !is_default(*v)) return bad(key, fmt::format("'{}' is not supported by this server", key));
  return std::nullopt;
}

std::optional<ApiError> parse_generation(const json& body, bool chat, uint64_t seed_if_absent,
                                         GenerationFields& g) {
  SamplingParams& s = g.options.sampling;
  s.temperature = 1.0f;  // OpenAI's defaults: plain sampling at temperature 1
  s.top_p = 1.0f;
  s.seed = seed_if_absent;
  std::optional<ApiError> e;
  int64_t i = 0;
  if ((e = get_number(body, "temperature", 0, 2, false, &s.temperature))) return e;
  if ((e = get_number(body, "top_p", 0, 1, true, &s.top_p))) return e;
  if ((e = get_number(body, "min_p", 0, 1, false, &s.min_p))) return e;
  if ((e = get_number(body, "presence_penalty", -2, 2, false, &s.presence_penalty))) return e;
  if ((e = get_number(body, "frequency_penalty", -2, 2, false, &s.frequency_penalty))) return e;
  if ((e = get_number(body, "repetition_penalty", 0, 100, true, &s.repeat_penalty))) return e;
  s.repeat_last_n = -1;  // vLLM's repetition_penalty looks at the whole prompt and output
  i = 0;
  if ((e = get_int(body, "top_k", -1, std::numeric_limits<int32_t>::max(), &i))) return e;
  s.top_k = static_cast<int32_t>(std::max<int64_t>(i, 0));
  if (const json* v = field(body, "seed")) {
    if (!v->is_number_integer()) return bad("seed", "'seed' must be an integer in [-2^63, 2^64)");
    s.seed = v->is_number_unsigned() ? v->get<uint64_t>() : static_cast<uint64_t>(v->get<int64_t>());
  }
  // max_completion_tokens is the newer name; either may be given.
  for (const char* key : {"max_tokens", "max_completion_tokens"}) {
    i = 0;
    if ((e = get_int(body, key, 1, std::numeric_limits<int32_t>::max(), &i))) return e;
    if (i > 0) g.options.max_tokens = static_cast<int32_t>(i);
  }
  if (!field(body, "max_tokens") && !field(body, "max_completion_tokens"))
    g.options.max_tokens = chat ? 0 : 16;  // OpenAI: completions default to 16, chat to the context
  i = 1;
  if ((e = get_int(body, "n", 1, std::numeric_limits<int32_t>::max(), &i))) return e;
  if (i != 1) return bad("n", "only n=1 is supported");
  if ((e = get_bool(body, "stream", &g.stream))) return e;
  if ((e = get_bool(body, "ignore_eos", &g.options.ignore_eos))) return e;
  if (const json* so = field(body, "stream_options")) {
    if (!so->is_object()) return bad("stream_options", "'stream_options' must be an object");
    if (!g.stream) return bad("stream_options", "'stream_options' is only allowed when 'stream' is true");
    if ((e = get_bool(*so, "include_usage", &g.include_usage)))
      return bad("stream_options.include_usage", e->message);
  }
  if (const json* st = field(body, "stop")) {
    if (st->is_string()) {
      g.options.stop.push_back(st->get<std::string>());
    } else if (st->is_array()) {
      for (const json& x : *st) {
        if (!x.is_string()) return bad("stop", "'stop' must be a string or a list of strings");
        g.options.stop.push_back(x.get<std::string>());
      }
    } else {
      return bad("stop", "'stop' must be a string or a list of strings");
    }
    for (const std::string& x : g.options.stop)
      if (x.empty()) return bad("stop", "stop strings must not be empty");
  }
  if (const json* lb = field(body, "logit_bias")) {
    if (!lb->is_object())
      return bad("logit_bias", "'logit_bias' must be an object mapping token ids to biases");
    for (auto it = lb->begin(); it != lb->end(); ++it) {
      int32_t id = -1;
      size_t used = 0;
      try {
        id = std::stoi(it.key(), &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used == 0 || used != it.key().size() || id < 0)
        return bad("logit_bias", fmt::format("logit_bias key '{}' is not a token id", it.key()));
      if (!it.value().is_number() || !std::isfinite(it.value().get<double>()) ||
          std::abs(it.value().get<double>()) > 100)
        return bad("logit_bias", fmt::format("logit_bias[{}] must be a number in [-100, 100]", it.key()));
      s.logit_bias.emplace_back(id, it.value().get<float>());
    }
  }
  auto false_or_null = [](const json& v) { return v.is_boolean() && !v.get<bool>(); };
  auto zero_or_false = [](const json& v) {
    return (v.is_boolean() && !v.get<bool>()) || (v.is_number_integer() && v.get<int64_t>() == 0);
  };
  if ((e = unsupported(body, "logprobs",
                       chat ? std::function<bool(const json&)>(false_or_null) : zero_or_false)))
    return e;
  if ((e = unsupported(body, "top_logprobs", zero_or_false))) return e;
  if ((e = unsupported(body, "echo", false_or_null))) return e;
  if ((e = unsupported(body, "suffix", [](const json&) { return false; }))) return e;
  if ((e = unsupported(body, "best_of",
                       [](const json& v) { return v.is_number_integer() && v.get<int64_t>() == 1; })))
    return e;
  if ((e = unsupported(body, "tools", [](const json& v) { return v.is_array() && v.empty(); }))) return e;
  if ((e = unsupported(body, "functions", [](const json& v) { return v.is_array() && v.empty(); }))) return e;
  if ((e = unsupported(body, "response_format",
                       [](const json& v) { return v.is_object() && v.value("type", "") == "text"; })))
    return e;
  return std::nullopt;
}

// A non-empty JSON list of token ids (non-negative 32-bit integers).
bool ids_of(const json& a, std::vector<int32_t>& ids) {
  if (!a.is_array() || a.empty()) return false;
  for (const json& x : a) {
    if (!x.is_number_integer() || x.get<int64_t>() < 0 ||
        x.get<int64_t>() > std::numeric_limits<int32_t>::max())
      return false;
    ids.push_back(static_cast<int32_t>(x.get<int64_t>()));
  }
  return true;
}

std::optional<ApiError> check_body(const json& body) {
  if (!body.is_object()) return bad("", "the request body must be a JSON object");
  return std::nullopt;
}

}  // namespace

std::variant<ChatRequest, ApiError> parse_chat_request(const json& body, const std::string& served_model,
                                                       uint64_t seed_if_absent) {
  if (auto e = check_body(body)) return *e;
  if (auto e = check_model(body, served_model)) return *e;
  ChatRequest r;
  if (auto e = parse_generation(body, true, seed_if_absent, r.gen)) return *e;
  const json* msgs = field(body, "messages");
  if (!msgs || !msgs->is_array() || msgs->empty())
    return bad("messages", "'messages' must be a non-empty list");
  r.messages = nlohmann::ordered_json::array();
  for (size_t i = 0; i < msgs->size(); ++i) {
    const json& m = (*msgs)[i];
    const std::string where = fmt::format("messages[{}]", i);
    if (!m.is_object()) return bad(where, where + " must be an object");
    const json* role = field(m, "role");
    if (!role || !role->is_string()) return bad(where + ".role", where + ".role must be a string");
    const std::string rs = role->get<std::string>();
    if (rs != "system" && rs != "user" && rs != "assistant" && rs != "tool" && rs != "developer")
      return bad(
          where + ".role",
          fmt::format("{}.role '{}' is not one of system, developer, user, assistant, tool", where, rs));
    std::string content;
    if (const json* c = field(m, "content")) {
      if (c->is_string()) {
        content = c->get<std::string>();
      } else if (c->is_array()) {
        // Text parts are concatenated; other kinds (images, audio) need a model we do not run.
        for (const json& part : *c) {
          if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") ||
              !part["text"].is_string())
            return bad(where + ".content", where + ".content: only text parts are supported");
          content += part["text"].get<std::string>();
        }
      } else {
        return bad(where + ".content", where + ".content must be a string or a list of text parts");
      }
    } else if (rs != "assistant") {
      return bad(where + ".content", where + ".content is required");
    }
    nlohmann::ordered_json out = {{"role", rs}, {"content", content}};
    if (const json* n = field(m, "name"); n && n->is_string()) out["name"] = *n;
    r.messages.push_back(std::move(out));
  }
  return r;
}

std::variant<CompletionRequest, ApiError> parse_completion_request(const json& body,
                                                                   const std::string& served_model,
                                                                   uint64_t seed_if_absent) {
  if (auto e = check_body(body)) return *e;
  if (auto e = check_model(body, served_model)) return *e;
  CompletionRequest r;
  if (auto e = parse_generation(body, false, seed_if_absent, r.gen)) return *e;
  const json* p = field(body, "prompt");
  if (!p) return bad("prompt", "'prompt' is required");
  const std::string kind = "'prompt' must be a string or a list of token ids";
  if (p->is_string()) {
    r.prompt = p->get<std::string>();
  } else if (p->is_array() && !p->empty() && (*p)[0].is_number()) {
    std::vector<int32_t> ids;
    if (!ids_of(*p, ids)) return bad("prompt", kind);
    r.prompt = std::move(ids);
  } else if (p->is_array() && p->size() == 1 && (*p)[0].is_string()) {
    r.prompt = (*p)[0].get<std::string>();
  } else if (p->is_array() && p->size() == 1 && (*p)[0].is_array()) {
    std::vector<int32_t> ids;
    if (!ids_of((*p)[0], ids)) return bad("prompt", kind);
    r.prompt = std::move(ids);
  } else if (p->is_array() && p->size() > 1) {
    return bad("prompt", "only one prompt per request is supported");
  } else {
    return bad("prompt", kind);
  }
  if (std::holds_alternative<std::string>(r.prompt) ? std::get<std::string>(r.prompt).empty()
                                                    : std::get<std::vector<int32_t>>(r.prompt).empty())
    return bad("prompt", "the prompt is empty");
  return r;
}

std::variant<EmbeddingRequest, ApiError> parse_embedding_request(const json& body,
                                                                 const std::string& served_model) {
  if (auto e = check_body(body)) return *e;
  if (auto e = check_model(body, served_model)) return *e;
  EmbeddingRequest r;
  const json* in = field(body, "input");
  const std::string kind =
      "'input' must be a string, a list of strings, a list of token ids or a list of token-id lists";
  if (!in) return bad("input", "'input' is required");
  if (in->is_string()) {
    r.inputs.emplace_back(in->get<std::string>());
  } else if (in->is_array() && !in->empty() && (*in)[0].is_number()) {
    std::vector<int32_t> ids;
    if (!ids_of(*in, ids)) return bad("input", kind);
    r.inputs.emplace_back(std::move(ids));
  } else if (in->is_array() && !in->empty()) {
    for (const json& x : *in) {
      if (x.is_string()) {
        r.inputs.emplace_back(x.get<std::string>());
      } else {
        std::vector<int32_t> ids;
        if (!ids_of(x, ids)) return bad("input", kind);
        r.inputs.emplace_back(std::move(ids));
      }
    }
  } else {
    return bad("input", kind);
  }
  for (const auto& x : r.inputs)
    if (std::holds_alternative<std::string>(x) && std::get<std::string>(x).empty())
      return bad("input", "'input' must not contain empty strings");
  if (const json* f = field(body, "encoding_format")) {
    if (!f->is_string() || (*f != "float" && *f != "base64"))
      return bad("encoding_format", "'encoding_format' must be \"float\" or \"base64\"");
    r.base64 = *f == "base64";
  }
  if (field(body, "dimensions")) return bad("dimensions", "'dimensions' is not supported by this server");
  return r;
}

std::string base64_encode(const void* data, size_t size) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const auto* p = static_cast<const unsigned char*>(data);
  std::string out;
  out.reserve((size + 2) / 3 * 4);
  for (size_t i = 0; i < size; i += 3) {
    const uint32_t n =
        (uint32_t(p[i]) << 16) | (i + 1 < size ? uint32_t(p[i + 1]) << 8 : 0) | (i + 2 < size ? p[i + 2] : 0);
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += i + 1 < size ? kAlphabet[(n >> 6) & 63] : '=';
    out += i + 2 < size ? kAlphabet[n & 63] : '=';
  }
  return out;
}

}  // namespace ferrum::server
