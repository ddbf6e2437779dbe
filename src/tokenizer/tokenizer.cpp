#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <filesystem>

#include "formats/gguf.h"
#include "tokenizer/tokenizer_data.h"
#include "tokenizer/unicode_util.h"

namespace ferrum {

using tok::Pieces;
using tok::Segment;
using tok::TokenizerData;

namespace tok {

Status TokenizerData::finish(const std::string& source) {
  special.resize(pieces.size(), 0);
  for (const AddedToken& t : added) {
    if (t.id < 0) return Error(source + ": added token '" + t.content + "' has a negative id");
    if (size_t(t.id) >= pieces.size()) {
      pieces.resize(size_t(t.id) + 1);
      special.resize(size_t(t.id) + 1, 0);
    }
    pieces[size_t(t.id)] = t.content;
    special[size_t(t.id)] = t.special;
  }
  piece_to_id.reserve(pieces.size());
  for (size_t id = 0; id < pieces.size(); ++id) piece_to_id.emplace(pieces[id], int32_t(id));
  for (const AddedToken& t : added) piece_to_id.insert_or_assign(t.content, t.id);

  std::vector<AddedToken> raw, norm;
  for (const AddedToken& t : added) (t.normalized ? norm : raw).push_back(t);
  raw_matcher.build(raw);
  normalized_matcher.build(norm);
  auto valid = [&](int32_t id) { return id >= 0 && size_t(id) < pieces.size(); };
  for (const int32_t id : prefix)
    if (!valid(id))
      return Error(source + ": post-processor token id " + std::to_string(id) + " is out of range");
  for (const int32_t id : suffix)
    if (!valid(id))
      return Error(source + ": post-processor token id " + std::to_string(id) + " is out of range");
  if (bos >= 0 && !valid(bos)) return Error(source + ": bos id " + std::to_string(bos) + " is out of range");
  std::erase_if(eos, [&](int32_t id) { return !valid(id); });
  return {};
}

void TokenizerData::add_end_of_turn_tokens() {
  static constexpr std::string_view kEndOfTurn[] = {
      "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>",   "<|endoftext|>",
      "<|eom_id|>", "<EOT>",      "_<EOT>",  "<|end_of_text|>", "<end_of_utterance>"};
  for (const auto name : kEndOfTurn) {
    const int32_t id = lookup(piece_to_id, name);
    if (id >= 0 && special[size_t(id)] && std::find(eos.begin(), eos.end(), id) == eos.end())
      eos.push_back(id);
  }
}

}  // namespace tok

Tokenizer::Tokenizer(std::unique_ptr<TokenizerData> d) : d_(std::move(d)) {}
Tokenizer::~Tokenizer() = default;

namespace {

// Pre-tokenizes one run of normalized text and runs the model on every piece.
void encode_text(const TokenizerData& d, std::string_view text, bool at_origin, Pieces& p,
                 std::vector<int32_t>& out) {
  if (text.empty()) return;
  if (!d.pre_tokenizer) {
    d.model->encode_word(text, out);
    return;
  }
  p.buf.assign(text);
  p.spans.assign(1, {0, uint32_t(text.size())});
  d.pre_tokenizer->apply(p, at_origin);
  const std::string_view buf = p.buf;
  for (const auto& [b, e] : p.spans) d.model->encode_word(buf.substr(b, e - b), out);
}

}  // namespace

std::vector<int32_t> Tokenizer::encode(std::string_view input, bool add_special, bool parse_special) const {
  const TokenizerData& d = *d_;
  std::string fixed;
  const std::string_view text = tok::sanitize_utf8(input, fixed) ? std::string_view(fixed) : input;

  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + d.prefix.size() + d.suffix.size() + 1);
  if (add_special) out.insert(out.end(), d.prefix.begin(), d.prefix.end());

  std::vector<Segment> segments, inner;
  d.raw_matcher.split(text, parse_special, segments);
  Pieces pieces;
  std::string norm;
  for (const Segment& seg : segments) {
    if (seg.id >= 0) {
      out.push_back(seg.id);
      continue;
    }
    const std::string_view run = text.substr(seg.begin, seg.end - seg.begin);
    std::string_view normalized = run;
    if (d.normalizer) {
      norm.assign(run);
      d.normalizer->apply(norm);
      normalized = norm;
    }
    if (d.normalized_matcher.empty()) {
      encode_text(d, normalized, seg.begin == 0, pieces, out);
      continue;
    }
    // Added tokens with normalized=true are found in the normalized text, after the others.
    inner.clear();
    d.normalized_matcher.split(normalized, parse_special, inner);
    for (const Segment& s : inner) {
      if (s.id >= 0) {
        out.push_back(s.id);
      } else {
        encode_text(d, normalized.substr(s.begin, s.end - s.begin), seg.begin == 0 && s.begin == 0, pieces,
                    out);
      }
    }
  }
  if (add_special) out.insert(out.end(), d.suffix.begin(), d.suffix.end());
  return out;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  const TokenizerData& d = *d_;
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (const int32_t id : ids) {
    if (id < 0 || size_t(id) >= d.pieces.size()) continue;
    if (skip_special && d.special[size_t(id)]) continue;
    if (!d.decoder_text.empty()) {
      if (const auto it = d.decoder_text.find(id); it != d.decoder_text.end()) {
        tokens.push_back(it->second);
        continue;
      }
    }
    tokens.push_back(d.pieces[size_t(id)]);
  }
  std::string out;
  if (!d.decoder) {
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (i) out.push_back(' ');
      out += tokens[i];
    }
    return out;
  }
  d.decoder->decode_chain(tokens);
  for (const auto& t : tokens) out += t;
  return out;
}

std::string Tokenizer::token_piece(int32_t id) const {
  if (id < 0 || size_t(id) >= d_->pieces.size()) return {};
  return d_->pieces[size_t(id)];
}

int32_t Tokenizer::token_id(std::string_view piece) const { return tok::lookup(d_->piece_to_id, piece); }
int32_t Tokenizer::vocab_size() const { return int32_t(d_->pieces.size()); }
int32_t Tokenizer::bos_id() const { return d_->bos; }
const std::vector<int32_t>& Tokenizer::eos_ids() const { return d_->eos; }
bool Tokenizer::is_eos(int32_t id) const {
  return std::find(d_->eos.begin(), d_->eos.end(), id) != d_->eos.end();
}
bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && size_t(id) < d_->special.size() && d_->special[size_t(id)];
}
bool Tokenizer::adds_bos() const { return d_->bos >= 0 && !d_->prefix.empty() && d_->prefix[0] == d_->bos; }
const std::string& Tokenizer::chat_template() const { return d_->chat_template; }

Result<std::unique_ptr<Tokenizer>> Tokenizer::load(const std::string& model_path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(model_path, ec)) {
    const fs::path dir(model_path);
    if (fs::exists(dir / "tokenizer.json", ec)) return from_hf_json((dir / "tokenizer.json").string());
    if (fs::exists(dir / "vocab.txt", ec)) return from_wordpiece_vocab((dir / "vocab.txt").string());
    return Error(model_path + ": folder has neither tokenizer.json nor vocab.txt");
  }
  if (!fs::exists(model_path, ec)) return Error(model_path + ": no such file or folder");
  const std::string ext = fs::path(model_path).extension().string();
  if (ext == ".json") return from_hf_json(model_path);
  if (ext == ".txt") return from_wordpiece_vocab(model_path);
  FERRUM_ASSIGN_OR_RETURN(auto gguf, GgufFile::open(model_path));
  return from_gguf(*gguf);
}

StreamDecoder::StreamDecoder(const Tokenizer& tok, bool skip_special)
    : tok_(tok), skip_special_(skip_special) {}

std::string StreamDecoder::step(int32_t id) {
  ids_.push_back(id);
  std::string text = tok_.decode(ids_, skip_special_);
  // Hold back while nothing new is final: an incomplete UTF-8 sequence decodes to a trailing U+FFFD.
  if (text.size() <= prefix_.size() || text.ends_with("\xEF\xBF\xBD")) return {};
  std::string fresh;
  if (text.starts_with(prefix_)) {
    fresh = text.substr(prefix_.size());
  } else {
    // Later bytes changed how earlier ones decode (an invalid byte run); the emitted text stands
    // and the pending ids are decoded on their own.
    fresh = tok_.decode(std::vector<int32_t>(ids_.begin() + std::ptrdiff_t(prefix_index_), ids_.end()),
                        skip_special_);
  }
  const size_t new_prefix_index = ids_.size() - prefix_index_;
  ids_.erase(ids_.begin(), ids_.begin() + std::ptrdiff_t(prefix_index_));
  prefix_ = tok_.decode(ids_, skip_special_);
  prefix_index_ = new_prefix_index;
  return fresh;
}

std::string StreamDecoder::flush() {
  const std::string text = tok_.decode(ids_, skip_special_);
  std::string rest;
  if (text.starts_with(prefix_)) {
    rest = text.substr(prefix_.size());
  } else {
    rest = tok_.decode(std::vector<int32_t>(ids_.begin() + std::ptrdiff_t(prefix_index_), ids_.end()),
                       skip_special_);
  }
  ids_.clear();
  prefix_.clear();
  prefix_index_ = 0;
  return rest;
}

}  // namespace ferrum
