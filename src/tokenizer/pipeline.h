// The stages of a tokenizer, modelled on Hugging Face `tokenizers`: added-token splitting,
// normalizer, pre-tokenizer, model, post-processor (prefix/suffix ids) and decoder.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "ferrum/status.h"
#include "tokenizer/unicode_util.h"

typedef struct pcre2_real_code_8 pcre2_code_8;

namespace ferrum::tok {

// Hash for unordered maps keyed by std::string that are probed with std::string_view.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using StringMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

inline int32_t lookup(const StringMap& m, std::string_view key) {
  const auto it = m.find(key);
  return it == m.end() ? -1 : it->second;
}

// A compiled PCRE2 pattern (UTF + UCP, JIT when available).
class Regex {
 public:
  // `literal`: the pattern is a plain string, not a regular expression.
  static Result<std::unique_ptr<Regex>> compile(std::string_view pattern, bool literal = false);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
  // Appends the [begin, end) offsets of every non-overlapping match in `subject`, left to right.
  void find_all(std::string_view subject, std::vector<std::pair<uint32_t, uint32_t>>& out) const;

 private:
  Regex() = default;
  pcre2_code_8* code_ = nullptr;
  bool jit_ = false;
};

using Span = std::pair<uint32_t, uint32_t>;

// Pre-tokenized text: spans into one buffer.
struct Pieces {
  std::string buf;
  std::vector<Span> spans;
};

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void apply(std::string& s) const = 0;
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Splits (and may rewrite) the pieces; `at_origin`: they start at offset 0 of the input text.
  virtual void apply(Pieces& p, bool at_origin) const = 0;
  // Whether the model sees bytes mapped through the GPT-2 byte-level alphabet.
  virtual bool byte_level() const { return false; }
};

class Model {
 public:
  virtual ~Model() = default;
  // Appends the ids of one pre-tokenized word.
  virtual void encode_word(std::string_view word, std::vector<int32_t>& out) const = 0;
};

class Decoder {
 public:
  virtual ~Decoder() = default;
  // Rewrites the token strings in place (several decoders fuse them into one).
  virtual void decode_chain(std::vector<std::string>& tokens) const = 0;
};

struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool special = false;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;
};

// A run of text ([begin, end) into the searched string) or an added token (id >= 0).
struct Segment {
  uint32_t begin = 0;
  uint32_t end = 0;
  int32_t id = -1;
};

// Finds added tokens leftmost-longest, with HF's single_word / lstrip / rstrip rules.
class AddedMatcher {
 public:
  void build(const std::vector<AddedToken>& tokens);
  bool empty() const { return tokens_.empty(); }
  // Splits `text`; special tokens are matched only when `parse_special`.
  void split(std::string_view text, bool parse_special, std::vector<Segment>& out) const;

 private:
  int32_t child(int32_t node, uint8_t byte) const;
  std::vector<AddedToken> tokens_;
  std::unordered_map<uint64_t, int32_t> edges_;  // (node << 8 | byte) -> node
  std::vector<int32_t> terminal_;                // node -> index into tokens_, or -1
  bool first_byte_[256] = {};
};

// Factories (pipeline.cpp, models.cpp, decoders.cpp).
std::unique_ptr<Normalizer> make_sequence_normalizer(std::vector<std::unique_ptr<Normalizer>> steps);
std::unique_ptr<Normalizer> make_unicode_normalizer(NormForm form);
std::unique_ptr<Normalizer> make_lowercase_normalizer();
std::unique_ptr<Normalizer> make_strip_accents_normalizer();
std::unique_ptr<Normalizer> make_strip_normalizer(bool left, bool right);
std::unique_ptr<Normalizer> make_prepend_normalizer(std::string prefix);
std::unique_ptr<Normalizer> make_replace_normalizer(std::unique_ptr<Regex> pattern, std::string content);
std::unique_ptr<Normalizer> make_bert_normalizer(bool clean_text, bool handle_chinese_chars,
                                                 bool strip_accents, bool lowercase);

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };
std::unique_ptr<PreTokenizer> make_sequence_pre_tokenizer(std::vector<std::unique_ptr<PreTokenizer>> steps);
std::unique_ptr<PreTokenizer> make_split_pre_tokenizer(std::unique_ptr<Regex> pattern, SplitBehavior behavior,
                                                       bool invert);
// GPT-2 byte level: optional prefix space and GPT-2 regex; the byte mapping itself is folded into the model.
Result<std::unique_ptr<PreTokenizer>> make_byte_level_pre_tokenizer(bool add_prefix_space, bool use_regex);
enum class PrependScheme { kAlways, kFirst, kNever };
std::unique_ptr<PreTokenizer> make_metaspace_pre_tokenizer(std::string replacement, PrependScheme scheme,
                                                           bool split);
std::unique_ptr<PreTokenizer> make_bert_pre_tokenizer();
std::unique_ptr<PreTokenizer> make_whitespace_split_pre_tokenizer();
std::unique_ptr<PreTokenizer> make_digits_pre_tokenizer(bool individual_digits);

// BPE over a vocabulary given in its file form (byte-level strings when `byte_level`); merges
// are pairs of vocabulary strings in rank order.
struct BpeConfig {
  bool byte_level = false;
  bool byte_fallback = false;
  bool ignore_merges = false;
  bool fuse_unk = false;
  int32_t unk_id = -1;
};
Result<std::unique_ptr<Model>> make_bpe_model(const std::vector<std::string>& vocab,
                                              const std::vector<std::pair<std::string, std::string>>& merges,
                                              const BpeConfig& cfg);
// SentencePiece-style merging by token score, as llama.cpp's SPM tokenizer does.
std::unique_ptr<Model> make_spm_model(const std::vector<std::string>& vocab, std::vector<float> scores,
                                      int32_t unk_id);
Result<std::unique_ptr<Model>> make_wordpiece_model(const std::vector<std::string>& vocab,
                                                    std::string unk_token, std::string prefix,
                                                    size_t max_input_chars_per_word);

std::unique_ptr<Decoder> make_sequence_decoder(std::vector<std::unique_ptr<Decoder>> steps);
std::unique_ptr<Decoder> make_byte_level_decoder();
std::unique_ptr<Decoder> make_metaspace_decoder(std::string replacement, PrependScheme scheme);
std::unique_ptr<Decoder> make_wordpiece_decoder(std::string prefix, bool cleanup);
std::unique_ptr<Decoder> make_replace_decoder(std::unique_ptr<Regex> pattern, std::string content);
std::unique_ptr<Decoder> make_byte_fallback_decoder();
std::unique_ptr<Decoder> make_fuse_decoder();
std::unique_ptr<Decoder> make_strip_decoder(std::string content, size_t start, size_t stop);
std::unique_ptr<Decoder> make_bpe_suffix_decoder(std::string suffix);

}  // namespace ferrum::tok
