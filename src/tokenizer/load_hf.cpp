// Tokenizer from a Hugging Face tokenizer.json (+ tokenizer_config.json, generation_config.json),
// or from a BERT vocab.txt.
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_data.h"
#include "tokenizer/unicode_util.h"

namespace ferrum {

namespace {

using namespace tok;
using json = nlohmann::json;
namespace fs = std::filesystem;

Result<std::string> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return Error(path + ": cannot open");
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

Result<json> read_json(const std::string& path) {
  FERRUM_ASSIGN_OR_RETURN(const std::string text, read_file(path));
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    return Error(path + ": invalid JSON: " + e.what());
  }
}

// Field readers: every error names the file and the JSON path of the field.
class Fields {
 public:
  explicit Fields(std::string source) : source_(std::move(source)) {}
  Status error(const std::string& field, const std::string& what) const {
    return Error(source_ + ": " + field + " " + what);
  }
  Result<std::string> str(const json& j, const std::string& field, const char* key) const {
    if (!j.contains(key) || !j[key].is_string()) return error(field + "." + key, "must be a string");
    return j[key].get<std::string>();
  }
  Result<bool> flag(const json& j, const std::string& field, const char* key, bool fallback) const {
    if (!j.contains(key) || j[key].is_null()) return fallback;
    if (!j[key].is_boolean()) return error(field + "." + key, "must be a boolean");
    return j[key].get<bool>();
  }
  Result<int64_t> integer(const json& j, const std::string& field, const char* key, int64_t fallback) const {
    if (!j.contains(key) || j[key].is_null()) return fallback;
    if (!j[key].is_number_integer()) return error(field + "." + key, "must be an integer");
    return j[key].get<int64_t>();
  }
  Result<std::string> type(const json& j, const std::string& field) const {
    if (!j.is_object()) return error(field, "must be an object");
    return str(j, field, "type");
  }
  Result<const json*> array(const json& j, const std::string& field, const char* key) const {
    if (!j.contains(key) || !j[key].is_array()) return error(field + "." + key, "must be an array");
    return &j[key];
  }
  // {"String": s} or {"Regex": r}.
  Result<std::unique_ptr<Regex>> pattern(const json& j, const std::string& field) const {
    if (!j.contains("pattern") || !j["pattern"].is_object()) return error(field + ".pattern", "must be an object");
    const json& p = j["pattern"];
    const bool literal = p.contains("String") && p["String"].is_string();
    if (!literal && !(p.contains("Regex") && p["Regex"].is_string()))
      return error(field + ".pattern", "must hold a String or a Regex");
    auto re = Regex::compile(p[literal ? "String" : "Regex"].get<std::string>(), literal);
    if (!re.ok()) return error(field + ".pattern", re.status().message());
    return re;
  }
  Result<PrependScheme> prepend_scheme(const json& j, const std::string& field) const {
    if (j.contains("prepend_scheme") && j["prepend_scheme"].is_string()) {
      const std::string s = j["prepend_scheme"].get<std::string>();
      if (s == "always") return PrependScheme::kAlways;
      if (s == "first") return PrependScheme::kFirst;
      if (s == "never") return PrependScheme::kNever;
      return error(field + ".prepend_scheme", "'" + s + "' is not always/first/never");
    }
    FERRUM_ASSIGN_OR_RETURN(const bool add, flag(j, field, "add_prefix_space", true));
    return add ? PrependScheme::kAlways : PrependScheme::kNever;
  }
  // A one-character string (Metaspace replacement, Strip content).
  Result<std::string> character(const json& j, const std::string& field, const char* key) const {
    FERRUM_ASSIGN_OR_RETURN(std::string s, str(j, field, key));
    size_t i = 0;
    if (s.empty() || (next_cp(s, i), i != s.size())) return error(field + "." + key, "must be one character");
    return s;
  }

 private:
  std::string source_;
};

Result<std::unique_ptr<Normalizer>> parse_normalizer(const Fields& f, const json& j,
                                                     const std::string& field) {
  FERRUM_ASSIGN_OR_RETURN(const std::string type, f.type(j, field));
  if (type == "Sequence") {
    FERRUM_ASSIGN_OR_RETURN(const json* items, f.array(j, field, "normalizers"));
    std::vector<std::unique_ptr<Normalizer>> steps;
    for (size_t i = 0; i < items->size(); ++i) {
      FERRUM_ASSIGN_OR_RETURN(
          auto n, parse_normalizer(f, (*items)[i], field + ".normalizers[" + std::to_string(i) + "]"));
      steps.push_back(std::move(n));
    }
    return make_sequence_normalizer(std::move(steps));
  }
  if (type == "NFC") return make_unicode_normalizer(NormForm::kNFC);
  if (type == "NFD") return make_unicode_normalizer(NormForm::kNFD);
  if (type == "NFKC") return make_unicode_normalizer(NormForm::kNFKC);
  if (type == "NFKD") return make_unicode_normalizer(NormForm::kNFKD);
  if (type == "Lowercase") return make_lowercase_normalizer();
  if (type == "StripAccents") return make_strip_accents_normalizer();
  if (type == "Strip") {
    FERRUM_ASSIGN_OR_RETURN(const bool left, f.flag(j, field, "strip_left", true));
    FERRUM_ASSIGN_OR_RETURN(const bool right, f.flag(j, field, "strip_right", true));
    return make_strip_normalizer(left, right);
  }
  if (type == "Prepend") {
    FERRUM_ASSIGN_OR_RETURN(std::string p, f.str(j, field, "prepend"));
    return make_prepend_normalizer(std::move(p));
  }
  if (type == "Replace") {
    FERRUM_ASSIGN_OR_RETURN(auto re, f.pattern(j, field));
    FERRUM_ASSIGN_OR_RETURN(std::string content, f.str(j, field, "content"));
    return make_replace_normalizer(std::move(re), std::move(content));
  }
  if (type == "BertNormalizer") {
    FERRUM_ASSIGN_OR_RETURN(const bool clean, f.flag(j, field, "clean_text", true));
    FERRUM_ASSIGN_OR_RETURN(const bool chinese, f.flag(j, field, "handle_chinese_chars", true));
    FERRUM_ASSIGN_OR_RETURN(const bool lower, f.flag(j, field, "lowercase", true));
    FERRUM_ASSIGN_OR_RETURN(const bool strip, f.flag(j, field, "strip_accents", lower));
    return make_bert_normalizer(clean, chinese, strip, lower);
  }
  return f.error(field + ".type", "'" + type + "' is not supported");
}

Result<SplitBehavior> split_behavior(const Fields& f, const json& j, const std::string& field) {
  FERRUM_ASSIGN_OR_RETURN(const std::string b, f.str(j, field, "behavior"));
  if (b == "Removed") return SplitBehavior::kRemoved;
  if (b == "Isolated") return SplitBehavior::kIsolated;
  if (b == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (b == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (b == "Contiguous") return SplitBehavior::kContiguous;
  return f.error(field + ".behavior", "'" + b + "' is not supported");
}

Result<std::unique_ptr<PreTokenizer>> parse_pre_tokenizer(const Fields& f, const json& j,
                                                          const std::string& field) {
  FERRUM_ASSIGN_OR_RETURN(const std::string type, f.type(j, field));
  if (type == "Sequence") {
    FERRUM_ASSIGN_OR_RETURN(const json* items, f.array(j, field, "pretokenizers"));
    std::vector<std::unique_ptr<PreTokenizer>> steps;
    for (size_t i = 0; i < items->size(); ++i) {
      const std::string sub = field + ".pretokenizers[" + std::to_string(i) + "]";
      if (!steps.empty() && steps.back()->byte_level())
        return f.error(sub, "follows a ByteLevel pre-tokenizer, which is supported only as the last step");
      FERRUM_ASSIGN_OR_RETURN(auto p, parse_pre_tokenizer(f, (*items)[i], sub));
      steps.push_back(std::move(p));
    }
    return make_sequence_pre_tokenizer(std::move(steps));
  }
  if (type == "Split") {
    FERRUM_ASSIGN_OR_RETURN(auto re, f.pattern(j, field));
    FERRUM_ASSIGN_OR_RETURN(const SplitBehavior b, split_behavior(f, j, field));
    FERRUM_ASSIGN_OR_RETURN(const bool invert, f.flag(j, field, "invert", false));
    return make_split_pre_tokenizer(std::move(re), b, invert);
  }
  if (type == "ByteLevel") {
    FERRUM_ASSIGN_OR_RETURN(const bool prefix, f.flag(j, field, "add_prefix_space", true));
    FERRUM_ASSIGN_OR_RETURN(const bool use_regex, f.flag(j, field, "use_regex", true));
    return make_byte_level_pre_tokenizer(prefix, use_regex);
  }
  if (type == "Metaspace") {
    FERRUM_ASSIGN_OR_RETURN(std::string rep, f.character(j, field, "replacement"));
    FERRUM_ASSIGN_OR_RETURN(const PrependScheme scheme, f.prepend_scheme(j, field));
    FERRUM_ASSIGN_OR_RETURN(const bool split, f.flag(j, field, "split", true));
    return make_metaspace_pre_tokenizer(std::move(rep), scheme, split);
  }
  if (type == "BertPreTokenizer") return make_bert_pre_tokenizer();
  if (type == "WhitespaceSplit") return make_whitespace_split_pre_tokenizer();
  if (type == "Whitespace") {
    FERRUM_ASSIGN_OR_RETURN(auto re, Regex::compile(R"(\w+|[^\w\s]+)"));
    return make_split_pre_tokenizer(std::move(re), SplitBehavior::kRemoved, true);
  }
  if (type == "Digits") {
    FERRUM_ASSIGN_OR_RETURN(const bool individual, f.flag(j, field, "individual_digits", false));
    return make_digits_pre_tokenizer(individual);
  }
  return f.error(field + ".type", "'" + type + "' is not supported");
}

Result<std::unique_ptr<Decoder>> parse_decoder(const Fields& f, const json& j, const std::string& field) {
  FERRUM_ASSIGN_OR_RETURN(const std::string type, f.type(j, field));
  if (type == "Sequence") {
    FERRUM_ASSIGN_OR_RETURN(const json* items, f.array(j, field, "decoders"));
    std::vector<std::unique_ptr<Decoder>> steps;
    for (size_t i = 0; i < items->size(); ++i) {
      FERRUM_ASSIGN_OR_RETURN(auto d,
                              parse_decoder(f, (*items)[i], field + ".decoders[" + std::to_string(i) + "]"));
      steps.push_back(std::move(d));
    }
    return make_sequence_decoder(std::move(steps));
  }
  if (type == "ByteLevel") return make_byte_level_decoder();
  if (type == "Metaspace") {
    FERRUM_ASSIGN_OR_RETURN(std::string rep, f.character(j, field, "replacement"));
    FERRUM_ASSIGN_OR_RETURN(const PrependScheme scheme, f.prepend_scheme(j, field));
    return make_metaspace_decoder(std::move(rep), scheme);
  }
  if (type == "WordPiece") {
    std::string prefix = "##";
    if (j.contains("prefix")) {
      FERRUM_ASSIGN_OR_RETURN(prefix, f.str(j, field, "prefix"));
    }
    FERRUM_ASSIGN_OR_RETURN(const bool cleanup, f.flag(j, field, "cleanup", true));
    return make_wordpiece_decoder(std::move(prefix), cleanup);
  }
  if (type == "Replace") {
    FERRUM_ASSIGN_OR_RETURN(auto re, f.pattern(j, field));
    FERRUM_ASSIGN_OR_RETURN(std::string content, f.str(j, field, "content"));
    return make_replace_decoder(std::move(re), std::move(content));
  }
  if (type == "ByteFallback") return make_byte_fallback_decoder();
  if (type == "Fuse") return make_fuse_decoder();
  if (type == "Strip") {
    FERRUM_ASSIGN_OR_RETURN(std::string content, f.character(j, field, "content"));
    FERRUM_ASSIGN_OR_RETURN(const int64_t start, f.integer(j, field, "start", 0));
    FERRUM_ASSIGN_OR_RETURN(const int64_t stop, f.integer(j, field, "stop", 0));
    if (start < 0 || stop < 0) return f.error(field, "start/stop must not be negative");
    return make_strip_decoder(std::move(content), size_t(start), size_t(stop));
  }
  if (type == "BPEDecoder") {
    std::string suffix = "</w>";
    if (j.contains("suffix")) {
      FERRUM_ASSIGN_OR_RETURN(suffix, f.str(j, field, "suffix"));
    }
    return make_bpe_suffix_decoder(std::move(suffix));
  }
  return f.error(field + ".type", "'" + type + "' is not supported");
}

// Token id of a post-processor entry ["[CLS]", 101].
Result<int32_t> id_pair(const Fields& f, const json& j, const std::string& field, const char* key) {
  if (!j.contains(key) || !j[key].is_array() || j[key].size() != 2 || !j[key][1].is_number_integer())
    return f.error(field + "." + key, "must be [token, id]");
  return j[key][1].get<int32_t>();
}

// Special ids a post-processor puts around a single sequence (prefix, suffix).
Status parse_post_processor(const Fields& f, const json& j, const std::string& field,
                            std::vector<int32_t>& prefix, std::vector<int32_t>& suffix) {
  FERRUM_ASSIGN_OR_RETURN(const std::string type, f.type(j, field));
  if (type == "Sequence") {
    FERRUM_ASSIGN_OR_RETURN(const json* items, f.array(j, field, "processors"));
    for (size_t i = 0; i < items->size(); ++i) {
      // Each processor wraps the output of the previous ones.
      std::vector<int32_t> p, s;
      FERRUM_TRY(
          parse_post_processor(f, (*items)[i], field + ".processors[" + std::to_string(i) + "]", p, s));
      prefix.insert(prefix.begin(), p.begin(), p.end());
      suffix.insert(suffix.end(), s.begin(), s.end());
    }
    return {};
  }
  if (type == "ByteLevel") return {};
  if (type == "BertProcessing" || type == "RobertaProcessing") {
    FERRUM_ASSIGN_OR_RETURN(const int32_t cls, id_pair(f, j, field, "cls"));
    FERRUM_ASSIGN_OR_RETURN(const int32_t sep, id_pair(f, j, field, "sep"));
    prefix.push_back(cls);
    suffix.push_back(sep);
    return {};
  }
  if (type == "TemplateProcessing") {
    FERRUM_ASSIGN_OR_RETURN(const json* single, f.array(j, field, "single"));
    if (!j.contains("special_tokens") || !j["special_tokens"].is_object())
      return f.error(field + ".special_tokens", "must be an object");
    const json& specials = j["special_tokens"];
    bool seen_sequence = false;
    for (size_t i = 0; i < single->size(); ++i) {
      const json& item = (*single)[i];
      const std::string sub = field + ".single[" + std::to_string(i) + "]";
      if (item.contains("Sequence")) {
        seen_sequence = true;
        continue;
      }
      if (!item.contains("SpecialToken") || !item["SpecialToken"].contains("id") ||
          !item["SpecialToken"]["id"].is_string())
        return f.error(sub, "must be a Sequence or a SpecialToken");
      const std::string name = item["SpecialToken"]["id"].get<std::string>();
      if (!specials.contains(name) || !specials[name].contains("ids") || !specials[name]["ids"].is_array())
        return f.error(field + ".special_tokens", "lacks ids for '" + name + "'");
      for (const auto& id : specials[name]["ids"]) {
        if (!id.is_number_integer())
          return f.error(field + ".special_tokens." + name + ".ids", "must be integers");
        (seen_sequence ? suffix : prefix).push_back(id.get<int32_t>());
      }
    }
    return {};
  }
  return f.error(field + ".type", "'" + type + "' is not supported");
}

// "bos_token": "<s>" or {"content": "<s>", ...}.
std::optional<std::string> config_token(const json& cfg, const char* key) {
  if (!cfg.contains(key)) return std::nullopt;
  const json& v = cfg[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string())
    return v["content"].get<std::string>();
  return std::nullopt;
}

// Special tokens, BOS/EOS framing and chat template from the files beside tokenizer.json.
Status apply_configs(const fs::path& dir, TokenizerData& d) {
  std::error_code ec;
  json cfg = json::object();
  const fs::path cfg_path = dir / "tokenizer_config.json";
  if (fs::exists(cfg_path, ec)) {
    FERRUM_ASSIGN_OR_RETURN(cfg, read_json(cfg_path.string()));
    if (!cfg.is_object()) return Error(cfg_path.string() + ": must hold a JSON object");
  }
  const std::string cfg_name = cfg_path.string();
  auto id_of = [&](const std::string& name) { return lookup(d.piece_to_id, name); };
  if (auto bos = config_token(cfg, "bos_token")) d.bos = id_of(*bos);
  if (auto eos = config_token(cfg, "eos_token")) {
    const int32_t id = id_of(*eos);
    if (id >= 0) d.eos.push_back(id);
  }
  // transformers rebuilds the post-processor from these flags (LlamaTokenizerFast and kin).
  if (cfg.contains("add_bos_token") && cfg["add_bos_token"].is_boolean()) {
    const bool add = cfg["add_bos_token"].get<bool>();
    const bool has = d.bos >= 0 && !d.prefix.empty() && d.prefix.front() == d.bos;
    if (add && !has) {
      if (d.bos < 0) return Error(cfg_name + ": add_bos_token is true but bos_token is not a known token");
      d.prefix.insert(d.prefix.begin(), d.bos);
    }
    if (!add && has) d.prefix.erase(d.prefix.begin());
  }
  if (cfg.contains("add_eos_token") && cfg["add_eos_token"].is_boolean()) {
    const bool add = cfg["add_eos_token"].get<bool>();
    const int32_t eos = d.eos.empty() ? -1 : d.eos.front();
    const bool has = eos >= 0 && !d.suffix.empty() && d.suffix.back() == eos;
    if (add && !has) {
      if (eos < 0) return Error(cfg_name + ": add_eos_token is true but eos_token is not a known token");
      d.suffix.push_back(eos);
    }
    if (!add && has) d.suffix.pop_back();
  }
  if (cfg.contains("chat_template")) {
    const json& t = cfg["chat_template"];
    if (t.is_string()) {
      d.chat_template = t.get<std::string>();
    } else if (t.is_array()) {
      for (const auto& e : t) {
        if (e.is_object() && e.value("name", "") == "default" && e.contains("template") &&
            e["template"].is_string())
          d.chat_template = e["template"].get<std::string>();
      }
    }
  }
  const fs::path jinja = dir / "chat_template.jinja";
  if (d.chat_template.empty() && fs::exists(jinja, ec)) {
    FERRUM_ASSIGN_OR_RETURN(d.chat_template, read_file(jinja.string()));
  }
  const fs::path gen = dir / "generation_config.json";
  if (fs::exists(gen, ec)) {
    FERRUM_ASSIGN_OR_RETURN(const json g, read_json(gen.string()));
    if (g.is_object() && g.contains("eos_token_id")) {
      const json& e = g["eos_token_id"];
      std::vector<int32_t> ids;
      if (e.is_number_integer()) ids.push_back(e.get<int32_t>());
      if (e.is_array())
        for (const auto& x : e)
          if (x.is_number_integer()) ids.push_back(x.get<int32_t>());
      for (const int32_t id : ids)
        if (std::find(d.eos.begin(), d.eos.end(), id) == d.eos.end()) d.eos.push_back(id);
    }
  }
  return {};
}

}  // namespace

Result<std::unique_ptr<Tokenizer>> Tokenizer::from_hf_json(const std::string& path) {
  FERRUM_ASSIGN_OR_RETURN(const json j, read_json(path));
  const Fields f(path);
  if (!j.is_object() || !j.contains("model") || !j["model"].is_object())
    return f.error("model", "must be an object");
  const json& m = j["model"];
  std::string type;
  if (m.contains("type")) {
    FERRUM_ASSIGN_OR_RETURN(type, f.str(m, "model", "type"));
  } else if (m.contains("merges")) {
    type = "BPE";
  } else if (m.contains("max_input_chars_per_word")) {
    type = "WordPiece";
  }
  if (!m.contains("vocab") || !m["vocab"].is_object()) return f.error("model.vocab", "must be an object");

  auto d = std::make_unique<TokenizerData>();
  for (const auto& [piece, id] : m["vocab"].items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX)
      return f.error("model.vocab['" + piece + "']", "must be a non-negative integer id");
    const size_t i = id.get<size_t>();
    if (i >= d->pieces.size()) d->pieces.resize(i + 1);
    d->pieces[i] = piece;
  }

  if (j.contains("normalizer") && !j["normalizer"].is_null()) {
    FERRUM_ASSIGN_OR_RETURN(d->normalizer, parse_normalizer(f, j["normalizer"], "normalizer"));
  }
  if (j.contains("pre_tokenizer") && !j["pre_tokenizer"].is_null()) {
    FERRUM_ASSIGN_OR_RETURN(d->pre_tokenizer, parse_pre_tokenizer(f, j["pre_tokenizer"], "pre_tokenizer"));
  }
  if (j.contains("decoder") && !j["decoder"].is_null()) {
    FERRUM_ASSIGN_OR_RETURN(d->decoder, parse_decoder(f, j["decoder"], "decoder"));
  }
  if (j.contains("post_processor") && !j["post_processor"].is_null()) {
    FERRUM_TRY(parse_post_processor(f, j["post_processor"], "post_processor", d->prefix, d->suffix));
  }

  if (type == "BPE") {
    if (m.contains("dropout") && m["dropout"].is_number() && m["dropout"].get<double>() > 0)
      return f.error("model.dropout", "is set; BPE dropout is not supported");
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
      if (m.contains(key) && m[key].is_string() && !m[key].get<std::string>().empty())
        return f.error(std::string("model.") + key, "is set; it is not supported");
    }
    BpeConfig cfg;
    cfg.byte_level = d->pre_tokenizer && d->pre_tokenizer->byte_level();
    FERRUM_ASSIGN_OR_RETURN(cfg.byte_fallback, f.flag(m, "model", "byte_fallback", false));
    FERRUM_ASSIGN_OR_RETURN(cfg.ignore_merges, f.flag(m, "model", "ignore_merges", false));
    FERRUM_ASSIGN_OR_RETURN(cfg.fuse_unk, f.flag(m, "model", "fuse_unk", false));
    if (m.contains("unk_token") && m["unk_token"].is_string()) {
      const std::string unk = m["unk_token"].get<std::string>();
      for (size_t i = 0; i < d->pieces.size() && cfg.unk_id < 0; ++i)
        if (d->pieces[i] == unk) cfg.unk_id = int32_t(i);
    }
    std::vector<std::pair<std::string, std::string>> merges;
    if (m.contains("merges")) {
      FERRUM_ASSIGN_OR_RETURN(const json* items, f.array(m, "model", "merges"));
      merges.reserve(items->size());
      for (size_t i = 0; i < items->size(); ++i) {
        const json& it = (*items)[i];
        if (it.is_string()) {
          const std::string s = it.get<std::string>();
          const size_t sp = s.find(' ', 1);
          if (sp == std::string::npos)
            return f.error("model.merges[" + std::to_string(i) + "]", "is not 'left right'");
          merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
        } else if (it.is_array() && it.size() == 2 && it[0].is_string() && it[1].is_string()) {
          merges.emplace_back(it[0].get<std::string>(), it[1].get<std::string>());
        } else {
          return f.error("model.merges[" + std::to_string(i) + "]", "must be 'left right' or [left, right]");
        }
      }
    }
    auto model = make_bpe_model(d->pieces, merges, cfg);
    if (!model.ok()) return model.status().with_context(path + ": model");
    d->model = std::move(model).value();
  } else if (type == "WordPiece") {
    FERRUM_ASSIGN_OR_RETURN(std::string unk, f.str(m, "model", "unk_token"));
    std::string prefix = "##";
    if (m.contains("continuing_subword_prefix")) {
      FERRUM_ASSIGN_OR_RETURN(prefix, f.str(m, "model", "continuing_subword_prefix"));
    }
    FERRUM_ASSIGN_OR_RETURN(const int64_t max_chars, f.integer(m, "model", "max_input_chars_per_word", 100));
    auto model = make_wordpiece_model(d->pieces, std::move(unk), std::move(prefix),
                                      size_t(std::max<int64_t>(0, max_chars)));
    if (!model.ok()) return model.status().with_context(path + ": model");
    d->model = std::move(model).value();
  } else {
    return f.error("model.type", "'" + type + "' is not supported (BPE, WordPiece)");
  }

  if (j.contains("added_tokens") && !j["added_tokens"].is_null()) {
    FERRUM_ASSIGN_OR_RETURN(const json* items, f.array(j, "tokenizer", "added_tokens"));
    for (size_t i = 0; i < items->size(); ++i) {
      const json& it = (*items)[i];
      const std::string field = "added_tokens[" + std::to_string(i) + "]";
      AddedToken a;
      FERRUM_ASSIGN_OR_RETURN(const int64_t id, f.integer(it, field, "id", -1));
      if (id < 0 || id > INT32_MAX) return f.error(field + ".id", "must be a non-negative integer");
      a.id = int32_t(id);
      FERRUM_ASSIGN_OR_RETURN(a.content, f.str(it, field, "content"));
      FERRUM_ASSIGN_OR_RETURN(a.special, f.flag(it, field, "special", false));
      FERRUM_ASSIGN_OR_RETURN(a.single_word, f.flag(it, field, "single_word", false));
      FERRUM_ASSIGN_OR_RETURN(a.lstrip, f.flag(it, field, "lstrip", false));
      FERRUM_ASSIGN_OR_RETURN(a.rstrip, f.flag(it, field, "rstrip", false));
      FERRUM_ASSIGN_OR_RETURN(a.normalized, f.flag(it, field, "normalized", !a.special));
      d->added.push_back(std::move(a));
    }
  }
  FERRUM_TRY(d->finish(path));
  FERRUM_TRY(apply_configs(fs::path(path).parent_path(), *d));
  d->add_end_of_turn_tokens();
  return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(d)));
}

Result<std::unique_ptr<Tokenizer>> Tokenizer::from_wordpiece_vocab(const std::string& path) {
  FERRUM_ASSIGN_OR_RETURN(const std::string text, read_file(path));
  auto d = std::make_unique<TokenizerData>();
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(pos, end - pos);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    d->pieces.push_back(std::move(line));
    pos = end + 1;
  }
  if (d->pieces.empty()) return Error(path + ": empty vocabulary");

  json cfg = json::object();
  const fs::path cfg_path = fs::path(path).parent_path() / "tokenizer_config.json";
  std::error_code ec;
  if (fs::exists(cfg_path, ec)) {
    FERRUM_ASSIGN_OR_RETURN(cfg, read_json(cfg_path.string()));
  }
  const Fields f(cfg_path.string());
  FERRUM_ASSIGN_OR_RETURN(const bool lower, f.flag(cfg, "tokenizer_config", "do_lower_case", true));
  FERRUM_ASSIGN_OR_RETURN(const bool strip, f.flag(cfg, "tokenizer_config", "strip_accents", lower));
  FERRUM_ASSIGN_OR_RETURN(const bool chinese,
                          f.flag(cfg, "tokenizer_config", "tokenize_chinese_chars", true));
  const std::string unk = config_token(cfg, "unk_token").value_or("[UNK]");
  const std::string cls = config_token(cfg, "cls_token").value_or("[CLS]");
  const std::string sep = config_token(cfg, "sep_token").value_or("[SEP]");
  const std::string pad = config_token(cfg, "pad_token").value_or("[PAD]");
  const std::string mask = config_token(cfg, "mask_token").value_or("[MASK]");

  d->normalizer = make_bert_normalizer(true, chinese, strip, lower);
  d->pre_tokenizer = make_bert_pre_tokenizer();
  auto model = make_wordpiece_model(d->pieces, unk, "##", 100);
  if (!model.ok()) return model.status().with_context(path);
  d->model = std::move(model).value();
  d->decoder = make_wordpiece_decoder("##", true);
  // The special tokens BertWordPieceTokenizer registers, in its order.
  for (const std::string& s : {pad, unk, cls, sep, mask}) {
    for (size_t id = 0; id < d->pieces.size(); ++id) {
      if (d->pieces[id] != s) continue;
      AddedToken a;
      a.id = int32_t(id);
      a.content = s;
      a.special = true;
      d->added.push_back(std::move(a));
      break;
    }
  }
  FERRUM_TRY(d->finish(path));
  const int32_t cls_id = lookup(d->piece_to_id, cls), sep_id = lookup(d->piece_to_id, sep);
  if (cls_id < 0 || sep_id < 0) return Error(path + ": vocabulary lacks " + cls + " or " + sep);
  d->prefix = {cls_id};
  d->suffix = {sep_id};
  return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(d)));
}

}  // namespace ferrum
