// The OpenAI API's request bodies → our request types, with the checks and error shapes of
// OpenAI / vLLM: a wrong type or range names the field (`param`) and is a 400; an unsupported option
// is a 400 that says so; a model name other than the served one is a 404.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "engine/generate.h"

namespace ferrum::server {

struct ApiError {
  int http_status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  // the offending field, "" if none
  std::string code;   // e.g. "model_not_found"
};

// A 400 invalid_request_error.
inline ApiError invalid_request(std::string message, std::string param = "") {
  return {400, std::move(message), "invalid_request_error", std::move(param), ""};
}

// {"error": {"message", "type", "param", "code"}} (param/code null when empty).
nlohmann::json error_body(const ApiError& e);

// Fields shared by /v1/chat/completions and /v1/completions.
struct GenerationFields {
  GenerateOptions options;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
};

struct ChatRequest {
  GenerationFields gen;
  nlohmann::ordered_json messages;  // normalised: content is a string
};

struct CompletionRequest {
  GenerationFields gen;
  std::variant<std::string, std::vector<int32_t>> prompt;
};

struct EmbeddingRequest {
  std::vector<std::variant<std::string, std::vector<int32_t>>> inputs;
  bool base64 = false;
};

// `served_model`: requests naming another model get a 404. `seed_if_absent`: used when the body has
// no seed (the server draws one per request).
std::variant<ChatRequest, ApiError> parse_chat_request(const nlohmann::json& body,
                                                       const std::string& served_model,
                                                       uint64_t seed_if_absent);
std::variant<CompletionRequest, ApiError> parse_completion_request(const nlohmann::json& body,
                                                                   const std::string& served_model,
                                                                   uint64_t seed_if_absent);
std::variant<EmbeddingRequest, ApiError> parse_embedding_request(const nlohmann::json& body,
                                                                 const std::string& served_model);

// Standard base64 (RFC 4648, with padding) of raw bytes: OpenAI's encoding_format "base64" for
// embeddings. Written here: a dozen lines, not worth a dependency.
std::string base64_encode(const void* data, size_t size);

}  // namespace ferrum::server
