// Text <-> token ids, exactly as Hugging Face `tokenizers` (and llama.cpp for GGUF vocabularies) do.
//
// Sources: GGUF metadata (tokenizer.ggml.model llama / gpt2 / bert), a HF tokenizer.json (with the
// tokenizer_config.json / generation_config.json beside it), or a BERT vocab.txt folder.
//
// Invalid UTF-8 in encode() input is not an error: every maximal ill-formed subsequence is replaced
// by U+FFFD first, like Rust's String::from_utf8_lossy (what HF sees for such bytes). decode()
// output is always valid UTF-8 (incomplete byte sequences decode to U+FFFD, as in HF).
//
// A Tokenizer is immutable after loading; encode/decode may run concurrently from many threads.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ferrum/status.h"

namespace ferrum {

class GgufFile;

namespace tok {
struct TokenizerData;
}

class Tokenizer {
 public:
  static Result<std::unique_ptr<Tokenizer>> from_gguf(const GgufFile& gguf);
  // tokenizer.json; tokenizer_config.json, generation_config.json and chat_template.jinja are read
  // from the same folder when present.
  static Result<std::unique_ptr<Tokenizer>> from_hf_json(const std::string& path);
  // A BERT WordPiece vocab.txt (one token per line); tokenizer_config.json beside it may set
  // do_lower_case / strip_accents / tokenize_chinese_chars.
  static Result<std::unique_ptr<Tokenizer>> from_wordpiece_vocab(const std::string& path);
  // A .gguf file, a tokenizer.json / vocab.txt file, or a model folder (tokenizer.json, else vocab.txt).
  static Result<std::unique_ptr<Tokenizer>> load(const std::string& model_path);

  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // add_special: the model's BOS/CLS/SEP... framing. parse_special: text that spells a special
  // token becomes that token (non-special added tokens are always recognised, as in HF).
  std::vector<int32_t> encode(std::string_view text, bool add_special = true,
                              bool parse_special = false) const;
  // Ids outside the vocabulary are skipped, as HF does.
  std::string decode(const std::vector<int32_t>& ids, bool skip_special = false) const;
  // The vocabulary string of a token (HF id_to_token), "" for an unknown id.
  std::string token_piece(int32_t id) const;
  // Id of a vocabulary string or added token, -1 if none.
  int32_t token_id(std::string_view piece) const;

  int32_t vocab_size() const;
  int32_t bos_id() const;  // -1 if the model has none
  // Ids that end generation: EOS plus end-of-turn tokens (eot/eom ids, <|eot_id|>, <|im_end|>, ...
  // and generation_config.json's eos_token_id).
  const std::vector<int32_t>& eos_ids() const;
  bool is_eos(int32_t id) const;
  bool is_special(int32_t id) const;
  bool adds_bos() const;  // encode(add_special=true) starts with bos_id()
  const std::string& chat_template() const;

 private:
  explicit Tokenizer(std::unique_ptr<tok::TokenizerData> d);
  friend class StreamDecoder;
  std::unique_ptr<tok::TokenizerData> d_;
};

// Incremental detokenization for streaming: feed ids one at a time and get back only text that
// is final (complete UTF-8, with the SPM leading-space rule applied as a whole decode would).
// Works like HF's DecodeStream: it re-decodes a short window of ids and emits the new suffix.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok, bool skip_special = true);
  // Text completed by `id` (possibly empty).
  std::string step(int32_t id);
  // Whatever is still held back (e.g. an incomplete UTF-8 sequence, as U+FFFD) at end of stream.
  std::string flush();

 private:
  const Tokenizer& tok_;
  bool skip_special_;
  std::vector<int32_t> ids_;
  std::string prefix_;
  size_t prefix_index_ = 0;
};

}  // namespace ferrum
