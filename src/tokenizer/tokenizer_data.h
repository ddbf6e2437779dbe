// Everything a loaded tokenizer holds; the loaders (GGUF, tokenizer.json, vocab.txt) fill it in.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "tokenizer/pipeline.h"

namespace ferrum::tok {

struct TokenizerData {
  std::vector<std::string> pieces;  // id -> vocabulary string (added tokens included)
  std::vector<uint8_t> special;     // id -> skipped by decode(skip_special)
  // Strings the decoder sees instead of `pieces` (GGUF control/user tokens in byte-level vocabularies
  // are raw text; the decoder expects the byte-level form).
  std::unordered_map<int32_t, std::string> decoder_text;
  StringMap piece_to_id;

  std::vector<AddedToken> added;
  AddedMatcher raw_matcher;         // added tokens matched on the input text
  AddedMatcher normalized_matcher;  // added tokens matched after normalization

  std::unique_ptr<Normalizer> normalizer;
  std::unique_ptr<PreTokenizer> pre_tokenizer;
  std::unique_ptr<Model> model;
  std::unique_ptr<Decoder> decoder;  // none: tokens are joined with spaces
  std::vector<int32_t> prefix;       // post-processor framing for a single sequence
  std::vector<int32_t> suffix;

  int32_t bos = -1;
  std::vector<int32_t> eos;
  std::string chat_template;

  // Fills piece_to_id and the matchers from pieces/added; checks ids.
  Status finish(const std::string& source);
  // Appends end-of-turn tokens found among the special tokens to `eos` (llama.cpp's end-of-generation set).
  void add_end_of_turn_tokens();
};

}  // namespace ferrum::tok
