// Regex wrapper, normalizers, pre-tokenizers and the added-token matcher.
#include "tokenizer/pipeline.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>

#include "tokenizer/unicode_util.h"

namespace ferrum::tok {

// ---------------------------------------------------------------- Regex

Result<std::unique_ptr<Regex>> Regex::compile(std::string_view pattern, bool literal) {
  int err = 0;
  PCRE2_SIZE err_off = 0;
  const uint32_t opts = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), opts, &err,
                                   &err_off, nullptr);
  if (!code) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof(msg));
    return Error("invalid regex '" + std::string(pattern) + "' at offset " + std::to_string(err_off) + ": " +
                 reinterpret_cast<const char*>(msg));
  }
  std::unique_ptr<Regex> re(new Regex());
  re->code_ = code;
  re->jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  return re;
}

Regex::~Regex() { pcre2_code_free(code_); }

namespace {

// One match-data block per thread: matching is re-entrant and allocation-free.
struct MatchData {
  pcre2_match_data* md = pcre2_match_data_create(1, nullptr);
  ~MatchData() { pcre2_match_data_free(md); }
};

}  // namespace

void Regex::find_all(std::string_view subject, std::vector<Span>& out) const {
  thread_local MatchData data;
  const auto* s = reinterpret_cast<PCRE2_SPTR>(subject.data());
  const size_t n = subject.size();
  size_t pos = 0;
  while (pos < n) {
    const int rc = jit_ ? pcre2_jit_match(code_, s, n, pos, 0, data.md, nullptr)
                        : pcre2_match(code_, s, n, pos, PCRE2_NO_UTF_CHECK, data.md, nullptr);
    if (rc < 0) break;  // no further match
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(data.md);
    if (ov[1] == ov[0]) {
      // Empty matches split nothing; step over one character.
      if (ov[0] >= n) break;
      pos = ov[0] + utf8_len(uint8_t(subject[ov[0]]));
      continue;
    }
    out.emplace_back(uint32_t(ov[0]), uint32_t(ov[1]));
    pos = ov[1];
  }
}

// ---------------------------------------------------------------- normalizers

namespace {

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> steps) : steps_(std::move(steps)) {}
  void apply(std::string& s) const override {
    for (const auto& n : steps_) n->apply(s);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> steps_;
};

class UnicodeNormalizer : public Normalizer {
 public:
  explicit UnicodeNormalizer(NormForm f) : form_(f) {}
  void apply(std::string& s) const override { normalize(s, form_); }

 private:
  NormForm form_;
};

class LowercaseNormalizer : public Normalizer {
 public:
  void apply(std::string& s) const override { lowercase(s); }
};

// NFD, then drop nonspacing marks (HF strips accents this way).
void strip_accents(std::string& s) {
  normalize(s, NormForm::kNFD);
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const size_t start = i;
    const uint32_t cp = next_cp(s, i);
    if (cp < 0x300 || !is_mark_nonspacing(cp)) out.append(s, start, i - start);
  }
  s.swap(out);
}

class StripAccentsNormalizer : public Normalizer {
 public:
  void apply(std::string& s) const override { strip_accents(s); }
};

class StripNormalizer : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  void apply(std::string& s) const override {
    size_t b = 0, e = s.size();
    if (left_) {
      while (b < e) {
        size_t i = b;
        if (!is_white_space(next_cp(s, i))) break;
        b = i;
      }
    }
    if (right_) {
      while (e > b) {
        size_t start = e - 1;
        while (start > b && (uint8_t(s[start]) & 0xC0) == 0x80) --start;
        size_t i = start;
        if (!is_white_space(next_cp(s, i))) break;
        e = start;
      }
    }
    s = s.substr(b, e - b);
  }

 private:
  bool left_, right_;
};

class PrependNormalizer : public Normalizer {
 public:
  explicit PrependNormalizer(std::string p) : prefix_(std::move(p)) {}
  void apply(std::string& s) const override {
    if (!s.empty()) s.insert(0, prefix_);
  }

 private:
  std::string prefix_;
};

void replace_all(const Regex& re, const std::string& content, std::string& s) {
  std::vector<Span> m;
  re.find_all(s, m);
  if (m.empty()) return;
  std::string out;
  out.reserve(s.size());
  uint32_t prev = 0;
  for (const auto& [b, e] : m) {
    out.append(s, prev, b - prev);
    out += content;
    prev = e;
  }
  out.append(s, prev, std::string::npos);
  s.swap(out);
}

class ReplaceNormalizer : public Normalizer {
 public:
  ReplaceNormalizer(std::unique_ptr<Regex> re, std::string content)
      : re_(std::move(re)), content_(std::move(content)) {}
  void apply(std::string& s) const override { replace_all(*re_, content_, s); }

 private:
  std::unique_ptr<Regex> re_;
  std::string content_;
};

bool is_chinese_char(uint32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
         (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

class BertNormalizer : public Normalizer {
 public:
  BertNormalizer(bool clean, bool chinese, bool strip, bool lower)
      : clean_(clean), chinese_(chinese), strip_(strip), lower_(lower) {}
  void apply(std::string& s) const override {
    if (clean_ || chinese_) {
      std::string out;
      out.reserve(s.size() + 8);
      size_t i = 0;
      while (i < s.size()) {
        const size_t start = i;
        const uint32_t cp = next_cp(s, i);
        if (clean_) {
          // Control characters go first (so U+0085, VT and FF vanish); \t \n \r count as whitespace.
          const bool tab_or_newline = cp == '\t' || cp == '\n' || cp == '\r';
          if (cp == 0 || cp == 0xFFFD || (!tab_or_newline && is_other(cp))) continue;
          if (is_white_space(cp)) {
            out.push_back(' ');
            continue;
          }
        }
        if (chinese_ && is_chinese_char(cp)) {
          out.push_back(' ');
          out.append(s, start, i - start);
          out.push_back(' ');
        } else {
          out.append(s, start, i - start);
        }
      }
      s.swap(out);
    }
    if (strip_) strip_accents(s);
    if (lower_) lowercase(s);
  }

 private:
  bool clean_, chinese_, strip_, lower_;
};

}  // namespace

std::unique_ptr<Normalizer> make_sequence_normalizer(std::vector<std::unique_ptr<Normalizer>> steps) {
  return std::make_unique<SequenceNormalizer>(std::move(steps));
}
std::unique_ptr<Normalizer> make_unicode_normalizer(NormForm form) {
  return std::make_unique<UnicodeNormalizer>(form);
}
std::unique_ptr<Normalizer> make_lowercase_normalizer() { return std::make_unique<LowercaseNormalizer>(); }
std::unique_ptr<Normalizer> make_strip_accents_normalizer() {
  return std::make_unique<StripAccentsNormalizer>();
}
std::unique_ptr<Normalizer> make_strip_normalizer(bool left, bool right) {
  return std::make_unique<StripNormalizer>(left, right);
}
std::unique_ptr<Normalizer> make_prepend_normalizer(std::string prefix) {
  return std::make_unique<PrependNormalizer>(std::move(prefix));
}
std::unique_ptr<Normalizer> make_replace_normalizer(std::unique_ptr<Regex> pattern, std::string content) {
  return std::make_unique<ReplaceNormalizer>(std::move(pattern), std::move(content));
}
std::unique_ptr<Normalizer> make_bert_normalizer(bool clean_text, bool handle_chinese_chars,
                                                 bool strip_accents, bool lowercase) {
  return std::make_unique<BertNormalizer>(clean_text, handle_chinese_chars, strip_accents, lowercase);
}

// ---------------------------------------------------------------- pre-tokenizers

namespace {

// Applies HF's SplitDelimiterBehavior to one span, given the matched sub-spans (absolute offsets).
void split_span(Span span, const std::vector<Span>& matches, SplitBehavior behavior, bool invert,
                std::vector<Span>& out) {
  // Regions in order, each flagged as a match (after inversion) or not.
  struct Region {
    Span s;
    bool match;
  };
  std::vector<Region> regions;
  regions.reserve(matches.size() * 2 + 1);
  uint32_t prev = span.first;
  for (const auto& m : matches) {
    if (m.first > prev) regions.push_back({{prev, m.first}, invert});
    regions.push_back({m, !invert});
    prev = m.second;
  }
  if (prev < span.second) regions.push_back({{prev, span.second}, invert});

  switch (behavior) {
    case SplitBehavior::kIsolated:
      for (const auto& r : regions) out.push_back(r.s);
      break;
    case SplitBehavior::kRemoved:
      for (const auto& r : regions)
        if (!r.match) out.push_back(r.s);
      break;
    case SplitBehavior::kMergedWithPrevious: {
      bool prev_open = false;
      for (const auto& r : regions) {
        if (r.match && prev_open) {
          out.back().second = r.s.second;
        } else {
          out.push_back(r.s);
        }
        prev_open = !r.match;
      }
      break;
    }
    case SplitBehavior::kMergedWithNext: {
      // A match joins the region after it unless that one is a match too (HF folds from the right).
      const size_t first = out.size();
      bool next_match = false;
      for (size_t k = regions.size(); k-- > 0;) {
        const auto& r = regions[k];
        if (r.match && !next_match && out.size() > first) {
          out.back().first = r.s.first;
        } else {
          out.push_back(r.s);
        }
        next_match = r.match;
      }
      std::reverse(out.begin() + std::ptrdiff_t(first), out.end());
      break;
    }
    case SplitBehavior::kContiguous: {
      bool prev_match = false;
      for (const auto& r : regions) {
        if (r.match && prev_match) {
          out.back().second = r.s.second;
        } else {
          out.push_back(r.s);
        }
        prev_match = r.match;
      }
      break;
    }
  }
}

// Splits every span by a per-span matcher, dropping empty results.
template <class FindMatches>
void split_all(Pieces& p, SplitBehavior behavior, bool invert, FindMatches&& find) {
  std::vector<Span> out;
  out.reserve(p.spans.size() * 4);
  std::vector<Span> matches;
  for (const Span& sp : p.spans) {
    matches.clear();
    find(std::string_view(p.buf).substr(sp.first, sp.second - sp.first), sp.first, matches);
    split_span(sp, matches, behavior, invert, out);
  }
  std::erase_if(out, [](const Span& s) { return s.first == s.second; });
  p.spans.swap(out);
}

void regex_matches(const Regex& re, std::string_view piece, uint32_t base, std::vector<Span>& out) {
  const size_t first = out.size();
  re.find_all(piece, out);
  for (size_t i = first; i < out.size(); ++i) {
    out[i].first += base;
    out[i].second += base;
  }
}

// Matches made of single characters that satisfy `pred`.
template <class Pred>
void char_matches(std::string_view piece, uint32_t base, Pred&& pred, std::vector<Span>& out) {
  size_t i = 0;
  while (i < piece.size()) {
    const size_t start = i;
    const uint32_t cp = next_cp(piece, i);
    if (pred(cp)) out.emplace_back(base + uint32_t(start), base + uint32_t(i));
  }
}

class SequencePreTokenizer : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> steps)
      : steps_(std::move(steps)) {}
  void apply(Pieces& p, bool at_origin) const override {
    for (const auto& s : steps_) s->apply(p, at_origin);
  }
  bool byte_level() const override {
    for (const auto& s : steps_)
      if (s->byte_level()) return true;
    return false;
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> steps_;
};

class SplitPreTokenizer : public PreTokenizer {
 public:
  SplitPreTokenizer(std::unique_ptr<Regex> re, SplitBehavior b, bool invert)
      : re_(std::move(re)), behavior_(b), invert_(invert) {}
  void apply(Pieces& p, bool) const override {
    split_all(p, behavior_, invert_, [this](std::string_view piece, uint32_t base, std::vector<Span>& out) {
      regex_matches(*re_, piece, base, out);
    });
  }

 private:
  std::unique_ptr<Regex> re_;
  SplitBehavior behavior_;
  bool invert_;
};

// Inserts `prefix` before every span that does not already start with it.
void prepend_to_spans(Pieces& p, std::string_view prefix, bool first_only) {
  std::string buf;
  buf.reserve(p.buf.size() + p.spans.size() * prefix.size());
  for (size_t k = 0; k < p.spans.size(); ++k) {
    auto& sp = p.spans[k];
    const std::string_view text = std::string_view(p.buf).substr(sp.first, sp.second - sp.first);
    const uint32_t begin = uint32_t(buf.size());
    const bool add = (!first_only || (k == 0 && sp.first == 0)) && !text.starts_with(prefix);
    if (add) buf += prefix;
    buf += text;
    sp = {begin, uint32_t(buf.size())};
  }
  p.buf.swap(buf);
}

class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, std::unique_ptr<Regex> re)
      : add_prefix_space_(add_prefix_space), re_(std::move(re)) {}
  void apply(Pieces& p, bool) const override {
    if (add_prefix_space_) prepend_to_spans(p, " ", false);
    if (re_) {
      split_all(p, SplitBehavior::kIsolated, false,
                [this](std::string_view piece, uint32_t base, std::vector<Span>& out) {
                  regex_matches(*re_, piece, base, out);
                });
    }
  }
  bool byte_level() const override { return true; }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Regex> re_;
};

class MetaspacePreTokenizer : public PreTokenizer {
 public:
  MetaspacePreTokenizer(std::string replacement, PrependScheme scheme, bool split)
      : rep_(std::move(replacement)), scheme_(scheme), split_(split) {}
  void apply(Pieces& p, bool at_origin) const override {
    // Spaces become the replacement character.
    std::string buf;
    buf.reserve(p.buf.size() * 2);
    for (auto& sp : p.spans) {
      const uint32_t begin = uint32_t(buf.size());
      for (uint32_t i = sp.first; i < sp.second; ++i) {
        if (p.buf[i] == ' ') {
          buf += rep_;
        } else {
          buf.push_back(p.buf[i]);
        }
      }
      sp = {begin, uint32_t(buf.size())};
    }
    p.buf.swap(buf);
    if (scheme_ == PrependScheme::kAlways) prepend_to_spans(p, rep_, false);
    if (scheme_ == PrependScheme::kFirst && at_origin) prepend_to_spans(p, rep_, true);
    if (split_) {
      split_all(p, SplitBehavior::kMergedWithNext, false,
                [this](std::string_view piece, uint32_t base, std::vector<Span>& out) {
                  size_t pos = 0;
                  while ((pos = piece.find(rep_, pos)) != std::string_view::npos) {
                    out.emplace_back(base + uint32_t(pos), base + uint32_t(pos + rep_.size()));
                    pos += rep_.size();
                  }
                });
    }
  }

 private:
  std::string rep_;
  PrependScheme scheme_;
  bool split_;
};

bool is_bert_punctuation(uint32_t cp) {
  if (cp < 0x80)
    return (cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) ||
           (cp >= 123 && cp <= 126);
  return is_punctuation(cp);
}

class BertPreTokenizer : public PreTokenizer {
 public:
  void apply(Pieces& p, bool) const override {
    split_all(p, SplitBehavior::kRemoved, false,
              [](std::string_view piece, uint32_t base, std::vector<Span>& out) {
                char_matches(piece, base, is_white_space, out);
              });
    split_all(p, SplitBehavior::kIsolated, false,
              [](std::string_view piece, uint32_t base, std::vector<Span>& out) {
                char_matches(piece, base, is_bert_punctuation, out);
              });
  }
};

class WhitespaceSplitPreTokenizer : public PreTokenizer {
 public:
  void apply(Pieces& p, bool) const override {
    split_all(p, SplitBehavior::kRemoved, false,
              [](std::string_view piece, uint32_t base, std::vector<Span>& out) {
                char_matches(piece, base, is_white_space, out);
              });
  }
};

class DigitsPreTokenizer : public PreTokenizer {
 public:
  explicit DigitsPreTokenizer(bool individual) : individual_(individual) {}
  void apply(Pieces& p, bool) const override {
    split_all(p, individual_ ? SplitBehavior::kIsolated : SplitBehavior::kContiguous, false,
              [](std::string_view piece, uint32_t base, std::vector<Span>& out) {
                char_matches(piece, base, is_numeric, out);
              });
  }

 private:
  bool individual_;
};

}  // namespace

std::unique_ptr<PreTokenizer> make_sequence_pre_tokenizer(std::vector<std::unique_ptr<PreTokenizer>> steps) {
  return std::make_unique<SequencePreTokenizer>(std::move(steps));
}
std::unique_ptr<PreTokenizer> make_split_pre_tokenizer(std::unique_ptr<Regex> pattern, SplitBehavior behavior,
                                                       bool invert) {
  return std::make_unique<SplitPreTokenizer>(std::move(pattern), behavior, invert);
}
Result<std::unique_ptr<PreTokenizer>> make_byte_level_pre_tokenizer(bool add_prefix_space, bool use_regex) {
  std::unique_ptr<Regex> re;
  if (use_regex) {
    FERRUM_ASSIGN_OR_RETURN(
        re, Regex::compile(R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)"));
  }
  return std::unique_ptr<PreTokenizer>(
      std::make_unique<ByteLevelPreTokenizer>(add_prefix_space, std::move(re)));
}
std::unique_ptr<PreTokenizer> make_metaspace_pre_tokenizer(std::string replacement, PrependScheme scheme,
                                                           bool split) {
  return std::make_unique<MetaspacePreTokenizer>(std::move(replacement), scheme, split);
}
std::unique_ptr<PreTokenizer> make_bert_pre_tokenizer() { return std::make_unique<BertPreTokenizer>(); }
std::unique_ptr<PreTokenizer> make_whitespace_split_pre_tokenizer() {
  return std::make_unique<WhitespaceSplitPreTokenizer>();
}
std::unique_ptr<PreTokenizer> make_digits_pre_tokenizer(bool individual_digits) {
  return std::make_unique<DigitsPreTokenizer>(individual_digits);
}

// ---------------------------------------------------------------- added tokens

void AddedMatcher::build(const std::vector<AddedToken>& tokens) {
  tokens_ = tokens;
  edges_.clear();
  terminal_.assign(1, -1);
  std::fill(std::begin(first_byte_), std::end(first_byte_), false);
  for (size_t t = 0; t < tokens_.size(); ++t) {
    const std::string& c = tokens_[t].content;
    if (c.empty()) continue;
    first_byte_[uint8_t(c[0])] = true;
    int32_t node = 0;
    for (const char ch : c) {
      const uint64_t key = (uint64_t(node) << 8) | uint8_t(ch);
      auto it = edges_.find(key);
      if (it == edges_.end()) {
        it = edges_.emplace(key, int32_t(terminal_.size())).first;
        terminal_.push_back(-1);
      }
      node = it->second;
    }
    // A later duplicate wins, as it would in HF's content -> token map.
    terminal_[size_t(node)] = int32_t(t);
  }
}

int32_t AddedMatcher::child(int32_t node, uint8_t byte) const {
  const auto it = edges_.find((uint64_t(node) << 8) | byte);
  return it == edges_.end() ? -1 : it->second;
}

namespace {

bool is_word_char(uint32_t cp) { return cp == '_' || is_alphanumeric(cp); }

uint32_t last_cp(std::string_view s) {
  size_t start = s.size() - 1;
  while (start > 0 && (uint8_t(s[start]) & 0xC0) == 0x80) --start;
  return next_cp(s, start);
}

}  // namespace

void AddedMatcher::split(std::string_view text, bool parse_special, std::vector<Segment>& out) const {
  const size_t n = text.size();
  size_t start_offset = 0;
  size_t i = 0;
  while (i < n) {
    if (!first_byte_[uint8_t(text[i])]) {
      ++i;
      continue;
    }
    // Longest token starting at i.
    int32_t node = 0, best = -1;
    size_t best_end = 0;
    for (size_t j = i; j < n; ++j) {
      node = child(node, uint8_t(text[j]));
      if (node < 0) break;
      if (terminal_[size_t(node)] >= 0) {
        best = terminal_[size_t(node)];
        best_end = j + 1;
      }
    }
    if (best < 0) {
      ++i;
      continue;
    }
    const AddedToken& tok = tokens_[size_t(best)];
    size_t start = i, stop = best_end;
    i = best_end;
    if (tok.special && !parse_special) continue;
    if (tok.single_word) {
      const bool start_space = start == 0 || !is_word_char(last_cp(text.substr(0, start)));
      size_t k = stop;
      const bool stop_space = stop == n || !is_word_char(next_cp(text, k));
      if (!start_space || !stop_space) continue;
    }
    if (tok.lstrip) {
      size_t s = start;
      while (s > start_offset) {
        size_t b = s - 1;
        while (b > 0 && (uint8_t(text[b]) & 0xC0) == 0x80) --b;
        size_t k = b;
        if (!is_white_space(next_cp(text, k))) break;
        s = b;
      }
      start = s;
    }
    if (tok.rstrip) {
      while (stop < n) {
        size_t k = stop;
        if (!is_white_space(next_cp(text, k))) break;
        stop = k;
      }
      i = stop;
    }
    if (start_offset < start) out.push_back({uint32_t(start_offset), uint32_t(start), -1});
    out.push_back({uint32_t(start), uint32_t(stop), tok.id});
    start_offset = stop;
  }
  if (start_offset < n) out.push_back({uint32_t(start_offset), uint32_t(n), -1});
}

}  // namespace ferrum::tok
