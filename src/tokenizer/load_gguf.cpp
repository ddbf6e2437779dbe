// Tokenizer from GGUF metadata (tokenizer.ggml.*), built as the equivalent HF pipeline.
#include <algorithm>
#include <optional>

#include "formats/gguf.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_data.h"
#include "tokenizer/unicode_util.h"

namespace ferrum {

namespace {

using namespace tok;

// llama.cpp token types.
enum : int64_t { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

Result<std::vector<std::string>> string_array(const GgufFile& g, const std::string& key, bool required) {
  const GgufValue* v = g.find(key);
  std::vector<std::string> out;
  if (!v) {
    if (required) return Error(g.path() + ": missing metadata '" + key + "'");
    return out;
  }
  if (v->type != GgufType::ARRAY || v->elem_type != GgufType::STRING)
    return Error(g.path() + ": metadata '" + key + "' is not an array of strings");
  out.reserve(v->items.size());
  for (const auto& it : v->items) out.emplace_back(it.str);
  return out;
}

Result<std::vector<double>> number_array(const GgufFile& g, const std::string& key, size_t n) {
  const GgufValue* v = g.find(key);
  std::vector<double> out;
  if (!v) return out;
  if (v->type != GgufType::ARRAY || v->items.size() != n)
    return Error(g.path() + ": metadata '" + key + "' is not an array of " + std::to_string(n) + " numbers");
  out.reserve(n);
  for (const auto& it : v->items) {
    if (!it.is_integer() && !it.is_float())
      return Error(g.path() + ": metadata '" + key + "' holds non-numbers");
    out.push_back(it.as_double());
  }
  return out;
}

Result<int32_t> token_id_key(const GgufFile& g, const std::string& key) {
  FERRUM_ASSIGN_OR_RETURN(auto v, g.get_int(key));
  return v ? int32_t(*v) : -1;
}

Result<bool> bool_key(const GgufFile& g, const std::string& key, bool fallback) {
  FERRUM_ASSIGN_OR_RETURN(auto v, g.get_bool(key));
  return v.value_or(fallback);
}

constexpr const char* kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// Normalizer and pre-tokenizer of the HF tokenizer that a GGUF tokenizer.ggml.pre name stands for.
Status byte_level_pipeline(const GgufFile& g, const std::string& pre, TokenizerData& d, bool& ignore_merges) {
  ignore_merges = false;
  const char* split = nullptr;
  if (pre == "gpt-2" || pre == "mpt" || pre == "olmo") {
    FERRUM_ASSIGN_OR_RETURN(d.pre_tokenizer, make_byte_level_pre_tokenizer(false, true));
    return {};
  }
  if (pre == "llama-bpe" || pre == "llama3" || pre == "llama-v3") {
    split = kLlama3Regex;
    ignore_merges = true;
  } else if (pre == "qwen2" || pre == "deepseek-r1-qwen") {
    split = kQwen2Regex;
    d.normalizer = make_unicode_normalizer(NormForm::kNFC);
  } else {
    return Error(
        g.path() + ": tokenizer.ggml.pre '" + pre +
        "' is not supported (gpt-2, mpt, olmo, llama-bpe, llama3, llama-v3, qwen2, deepseek-r1-qwen)");
  }
  FERRUM_ASSIGN_OR_RETURN(auto re, Regex::compile(split));
  std::vector<std::unique_ptr<PreTokenizer>> steps;
  steps.push_back(make_split_pre_tokenizer(std::move(re), SplitBehavior::kIsolated, false));
  FERRUM_ASSIGN_OR_RETURN(auto bl, make_byte_level_pre_tokenizer(false, false));
  steps.push_back(std::move(bl));
  d.pre_tokenizer = make_sequence_pre_tokenizer(std::move(steps));
  return {};
}

// llama.cpp stores BERT vocabularies with a "phantom space": word-initial pieces carry a leading
// U+2581, continuations are bare. HF WordPiece spells those as bare and "##"-prefixed.
std::string wordpiece_form(const std::string& t) {
  static constexpr std::string_view kPhantom = "\xE2\x96\x81";
  if (t.size() >= 2 && t.front() == '[' && t.back() == ']') return t;
  if (std::string_view(t).starts_with(kPhantom)) return t.substr(kPhantom.size());
  return "##" + t;
}

}  // namespace

Result<std::unique_ptr<Tokenizer>> Tokenizer::from_gguf(const GgufFile& g) {
  const std::string& src = g.path();
  FERRUM_ASSIGN_OR_RETURN(const auto model_key, g.get_string("tokenizer.ggml.model"));
  if (!model_key) return Error(src + ": missing metadata 'tokenizer.ggml.model'");
  const std::string model = model_key.value();
  if (model != "llama" && model != "gpt2" && model != "bert")
    return Error(src + ": tokenizer.ggml.model '" + model + "' is not supported (llama, gpt2, bert)");
  FERRUM_ASSIGN_OR_RETURN(auto tokens, string_array(g, "tokenizer.ggml.tokens", true));
  const size_t n = tokens.size();
  FERRUM_ASSIGN_OR_RETURN(auto types, number_array(g, "tokenizer.ggml.token_type", n));
  if (types.empty()) types.assign(n, kNormal);
  FERRUM_ASSIGN_OR_RETURN(const int32_t bos, token_id_key(g, "tokenizer.ggml.bos_token_id"));
  FERRUM_ASSIGN_OR_RETURN(const int32_t eos, token_id_key(g, "tokenizer.ggml.eos_token_id"));
  FERRUM_ASSIGN_OR_RETURN(const int32_t unk, token_id_key(g, "tokenizer.ggml.unknown_token_id"));
  FERRUM_ASSIGN_OR_RETURN(const int32_t eot, token_id_key(g, "tokenizer.ggml.eot_token_id"));
  FERRUM_ASSIGN_OR_RETURN(const int32_t eom, token_id_key(g, "tokenizer.ggml.eom_token_id"));
  FERRUM_ASSIGN_OR_RETURN(auto tmpl, g.get_string("tokenizer.chat_template"));
  FERRUM_ASSIGN_OR_RETURN(auto pre, g.get_string("tokenizer.ggml.pre"));
  auto in_range = [&](int32_t id) { return id >= 0 && size_t(id) < n; };
  if (unk >= 0 && !in_range(unk)) return Error(src + ": tokenizer.ggml.unknown_token_id is out of range");

  auto d = std::make_unique<TokenizerData>();
  d->pieces = tokens;
  d->bos = in_range(bos) ? bos : -1;
  for (const int32_t id : {eos, eot, eom})
    if (in_range(id) && std::find(d->eos.begin(), d->eos.end(), id) == d->eos.end()) d->eos.push_back(id);
  if (tmpl) d->chat_template = *tmpl;

  // Control and unknown tokens are special (split out only when parsing special tokens);
  // user-defined tokens are always split out, as in llama.cpp.
  for (size_t id = 0; id < n; ++id) {
    const auto t = int64_t(types[id]);
    if (t != kUnknown && t != kControl && t != kUserDefined) continue;
    AddedToken a;
    a.id = int32_t(id);
    a.content = tokens[id];
    a.special = t != kUserDefined;
    d->added.push_back(std::move(a));
  }

  bool add_bos = false, add_eos = false;
  if (model == "llama") {
    FERRUM_ASSIGN_OR_RETURN(const bool space_prefix, bool_key(g, "tokenizer.ggml.add_space_prefix", true));
    FERRUM_ASSIGN_OR_RETURN(add_bos, bool_key(g, "tokenizer.ggml.add_bos_token", true));
    FERRUM_ASSIGN_OR_RETURN(add_eos, bool_key(g, "tokenizer.ggml.add_eos_token", false));
    FERRUM_ASSIGN_OR_RETURN(auto scores, number_array(g, "tokenizer.ggml.scores", n));
    if (scores.empty()) return Error(src + ": missing metadata 'tokenizer.ggml.scores'");
    std::vector<std::unique_ptr<Normalizer>> norm;
    if (space_prefix) norm.push_back(make_prepend_normalizer("\xE2\x96\x81"));
    FERRUM_ASSIGN_OR_RETURN(auto space, Regex::compile(" ", true));
    norm.push_back(make_replace_normalizer(std::move(space), "\xE2\x96\x81"));
    d->normalizer = make_sequence_normalizer(std::move(norm));
    d->model = make_spm_model(tokens, std::vector<float>(scores.begin(), scores.end()), unk);
    std::vector<std::unique_ptr<Decoder>> dec;
    FERRUM_ASSIGN_OR_RETURN(auto meta, Regex::compile("\xE2\x96\x81", true));
    dec.push_back(make_replace_decoder(std::move(meta), " "));
    dec.push_back(make_byte_fallback_decoder());
    dec.push_back(make_fuse_decoder());
    if (space_prefix) dec.push_back(make_strip_decoder(" ", 1, 0));
    d->decoder = make_sequence_decoder(std::move(dec));
  } else if (model == "gpt2") {
    FERRUM_ASSIGN_OR_RETURN(add_bos, bool_key(g, "tokenizer.ggml.add_bos_token", false));
    FERRUM_ASSIGN_OR_RETURN(add_eos, bool_key(g, "tokenizer.ggml.add_eos_token", false));
    if (!pre)
      return Error(src + ": missing metadata 'tokenizer.ggml.pre' (needed to choose the pre-tokenizer)");
    BpeConfig cfg;
    cfg.byte_level = true;
    FERRUM_TRY(byte_level_pipeline(g, *pre, *d, cfg.ignore_merges));
    FERRUM_ASSIGN_OR_RETURN(auto merge_lines, string_array(g, "tokenizer.ggml.merges", true));
    std::vector<std::pair<std::string, std::string>> merges;
    merges.reserve(merge_lines.size());
    for (size_t i = 0; i < merge_lines.size(); ++i) {
      const size_t sp = merge_lines[i].find(' ', 1);
      if (sp == std::string::npos)
        return Error(src + ": tokenizer.ggml.merges[" + std::to_string(i) + "] is not 'left right'");
      merges.emplace_back(merge_lines[i].substr(0, sp), merge_lines[i].substr(sp + 1));
    }
    auto m = make_bpe_model(tokens, merges, cfg);
    if (!m.ok()) return m.status().with_context(src);
    d->model = std::move(m).value();
    d->decoder = make_byte_level_decoder();
    // Non-normal tokens hold raw text; give the byte-level decoder their byte-level spelling.
    for (size_t id = 0; id < n; ++id) {
      if (int64_t(types[id]) == kNormal) continue;
      std::string bl = byte_level_encode(tokens[id]);
      if (bl != tokens[id]) d->decoder_text.emplace(int32_t(id), std::move(bl));
    }
  } else {  // bert
    FERRUM_ASSIGN_OR_RETURN(const int32_t cls, token_id_key(g, "tokenizer.ggml.cls_token_id"));
    FERRUM_ASSIGN_OR_RETURN(const int32_t sep, token_id_key(g, "tokenizer.ggml.seperator_token_id"));
    if (unk < 0) return Error(src + ": missing metadata 'tokenizer.ggml.unknown_token_id'");
    for (auto& t : d->pieces) t = wordpiece_form(t);
    for (auto& a : d->added) a.content = d->pieces[size_t(a.id)];
    d->normalizer = make_bert_normalizer(true, true, true, true);
    d->pre_tokenizer = make_bert_pre_tokenizer();
    auto m = make_wordpiece_model(d->pieces, d->pieces[size_t(unk)], "##", 100);
    if (!m.ok()) return m.status().with_context(src);
    d->model = std::move(m).value();
    d->decoder = make_wordpiece_decoder("##", true);
    const int32_t first = in_range(cls) ? cls : d->bos;
    const int32_t last = in_range(sep) ? sep : (in_range(eos) ? eos : -1);
    if (first >= 0) d->prefix.push_back(first);
    if (last >= 0) d->suffix.push_back(last);
    d->bos = -1;
    d->eos.clear();
  }
  if (add_bos) {
    if (d->bos < 0) return Error(src + ": tokenizer.ggml.add_bos_token is set but there is no bos_token_id");
    d->prefix.push_back(d->bos);
  }
  if (add_eos) {
    if (!in_range(eos))
      return Error(src + ": tokenizer.ggml.add_eos_token is set but there is no eos_token_id");
    d->suffix.push_back(eos);
  }
  FERRUM_TRY(d->finish(src));
  d->add_end_of_turn_tokens();
  return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(d)));
}

}  // namespace ferrum
