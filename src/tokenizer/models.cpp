// Tokenization models: BPE (merge ranks, HF semantics), SPM (llama.cpp score merging), WordPiece.
#include <algorithm>
#include <array>
#include <cstdio>
#include <mutex>
#include <queue>
#include <shared_mutex>

#include "tokenizer/pipeline.h"
#include "tokenizer/unicode_util.h"

namespace ferrum::tok {

namespace {

// Open-addressing map from an (left id, right id) pair to (rank, merged id).
class PairTable {
 public:
  void reserve(size_t n) {
    size_t cap = 16;
    while (cap < n * 2) cap <<= 1;
    keys_.assign(cap, kEmpty);
    vals_.assign(cap, {0, 0});
    mask_ = cap - 1;
  }
  void insert(int32_t a, int32_t b, int32_t rank, int32_t id) {
    const uint64_t key = pack(a, b);
    size_t i = slot(key);
    while (keys_[i] != kEmpty && keys_[i] != key) i = (i + 1) & mask_;
    keys_[i] = key;
    vals_[i] = {rank, id};
  }
  // (rank, merged id), or nullptr when the pair does not merge.
  const std::pair<int32_t, int32_t>* find(int32_t a, int32_t b) const {
    const uint64_t key = pack(a, b);
    for (size_t i = slot(key);; i = (i + 1) & mask_) {
      if (keys_[i] == key) return &vals_[i];
      if (keys_[i] == kEmpty) return nullptr;
    }
  }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t{0};
  static uint64_t pack(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }
  size_t slot(uint64_t key) const { return size_t((key * 0x9E3779B97F4A7C15ull) >> 20) & mask_; }
  std::vector<uint64_t> keys_;
  std::vector<std::pair<int32_t, int32_t>> vals_;
  size_t mask_ = 0;
};

std::string byte_token_name(uint8_t b) {
  char buf[8];
  std::snprintf(buf, sizeof(buf), "<0x%02X>", b);
  return buf;
}

// Results for recently seen words. Readers share a lock; when full the cache starts over, so a
// long-running server keeps adapting to its traffic.
class WordCache {
 public:
  bool get(std::string_view word, std::vector<int32_t>& out) const {
    std::shared_lock lock(mu_);
    const auto it = map_.find(word);
    if (it == map_.end()) return false;
    out.insert(out.end(), it->second.begin(), it->second.end());
    return true;
  }
  void put(std::string_view word, const int32_t* ids, size_t n) {
    std::unique_lock lock(mu_);
    if (map_.size() >= kCapacity) map_.clear();
    map_.emplace(std::string(word), std::vector<int32_t>(ids, ids + n));
  }
  static constexpr size_t kMaxWordBytes = 256;

 private:
  static constexpr size_t kCapacity = 1 << 16;
  mutable std::shared_mutex mu_;
  std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> map_;
};

class BpeModel : public Model {
 public:
  static Result<std::unique_ptr<Model>> create(const std::vector<std::string>& vocab,
                                               const std::vector<std::pair<std::string, std::string>>& merges,
                                               const BpeConfig& cfg) {
    std::unique_ptr<BpeModel> m(new BpeModel());
    m->cfg_ = cfg;
    StringMap file_form;  // the vocabulary as written in the file, for resolving merges
    file_form.reserve(vocab.size());
    m->vocab_.reserve(vocab.size());
    std::string raw;
    for (size_t id = 0; id < vocab.size(); ++id) {
      // Later duplicates win, as in llama.cpp's token_to_id.
      file_form.insert_or_assign(vocab[id], int32_t(id));
      if (cfg.byte_level && byte_level_decode(vocab[id], raw)) {
        m->vocab_.insert_or_assign(raw, int32_t(id));
      } else {
        m->vocab_.insert_or_assign(vocab[id], int32_t(id));
      }
    }
    m->byte_id_.fill(-1);
    for (int b = 0; b < 256; ++b) {
      if (cfg.byte_level) {
        std::string ch;
        append_utf8(ch, byte_level_alphabet().byte_to_cp[size_t(b)]);
        m->byte_id_[size_t(b)] = lookup(file_form, ch);
      } else if (cfg.byte_fallback) {
        m->byte_id_[size_t(b)] = lookup(file_form, byte_token_name(uint8_t(b)));
      }
    }
    m->merges_.reserve(merges.size());
    for (size_t r = 0; r < merges.size(); ++r) {
      const auto& [a, b] = merges[r];
      const int32_t ia = lookup(file_form, a), ib = lookup(file_form, b), im = lookup(file_form, a + b);
      if (ia < 0 || ib < 0 || im < 0) {
        return Error("merge " + std::to_string(r) + " ('" + a + "' '" + b +
                     "') uses a token missing from the vocab");
      }
      m->merges_.insert(ia, ib, int32_t(r), im);
    }
    return std::unique_ptr<Model>(std::move(m));
  }

  void encode_word(std::string_view word, std::vector<int32_t>& out) const override {
    if (word.empty()) return;
    if (cfg_.ignore_merges) {
      const int32_t id = lookup(vocab_, word);
      if (id >= 0) {
        out.push_back(id);
        return;
      }
    }
    if (cfg_.byte_level && word.size() == 1) {
      if (byte_id_[uint8_t(word[0])] >= 0) out.push_back(byte_id_[uint8_t(word[0])]);
      return;
    }
    const bool cacheable = word.size() < WordCache::kMaxWordBytes;
    if (cacheable && cache_.get(word, out)) return;
    const size_t first = out.size();
    merge_word(word, out);
    if (cacheable) cache_.put(word, out.data() + first, out.size() - first);
  }

 private:
  struct Sym {
    int32_t id;
    int32_t prev;
    int32_t next;
  };
  struct Candidate {
    int32_t rank;
    int32_t pos;
    bool operator<(const Candidate& o) const {  // min-heap on (rank, pos)
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };

  // Initial symbols as HF's BPE::merge_word builds them (bytes for byte-level vocabularies,
  // characters otherwise, with byte fallback and unknown-token fusing).
  void initial_symbols(std::string_view word, std::vector<int32_t>& ids) const {
    int32_t pending_unk = -1;
    size_t i = 0;
    while (i < word.size()) {
      const size_t start = i;
      int32_t id;
      if (cfg_.byte_level) {
        id = byte_id_[uint8_t(word[i])];
        ++i;
      } else {
        i += utf8_len(uint8_t(word[i]));
        id = lookup(vocab_, word.substr(start, i - start));
      }
      if (id >= 0) {
        if (pending_unk >= 0) ids.push_back(pending_unk);
        pending_unk = -1;
        ids.push_back(id);
        continue;
      }
      if (cfg_.byte_fallback && !cfg_.byte_level) {
        bool all = true;
        for (size_t k = start; k < i; ++k) all = all && byte_id_[uint8_t(word[k])] >= 0;
        if (all) {
          for (size_t k = start; k < i; ++k) ids.push_back(byte_id_[uint8_t(word[k])]);
          continue;
        }
      }
      if (cfg_.unk_id >= 0) {
        if (pending_unk >= 0 && !cfg_.fuse_unk) ids.push_back(pending_unk);
        pending_unk = cfg_.unk_id;
      }
    }
    if (pending_unk >= 0) ids.push_back(pending_unk);
  }

  void merge_word(std::string_view word, std::vector<int32_t>& out) const {
    std::vector<int32_t> ids;
    ids.reserve(word.size());
    initial_symbols(word, ids);
    const int32_t n = int32_t(ids.size());
    std::vector<Sym> syms(static_cast<size_t>(n));
    std::vector<Candidate> heap;
    heap.reserve(size_t(n));
    for (int32_t k = 0; k < n; ++k) {
      syms[size_t(k)] = {ids[size_t(k)], k - 1, k + 1 < n ? k + 1 : -1};
      if (k + 1 < n) {
        if (const auto* m = merges_.find(ids[size_t(k)], ids[size_t(k + 1)])) heap.push_back({m->first, k});
      }
    }
    std::make_heap(heap.begin(), heap.end());
    auto push = [&](int32_t left) {
      const int32_t right = syms[size_t(left)].next;
      if (right < 0) return;
      if (const auto* m = merges_.find(syms[size_t(left)].id, syms[size_t(right)].id)) {
        heap.push_back({m->first, left});
        std::push_heap(heap.begin(), heap.end());
      }
    };
    while (!heap.empty()) {
      std::pop_heap(heap.begin(), heap.end());
      const Candidate c = heap.back();
      heap.pop_back();
      Sym& left = syms[size_t(c.pos)];
      if (left.id < 0 || left.next < 0) continue;
      Sym& right = syms[size_t(left.next)];
      const auto* m = merges_.find(left.id, right.id);
      if (!m || m->first != c.rank) continue;  // stale: a neighbour changed since it was queued
      left.id = m->second;
      right.id = -1;
      left.next = right.next;
      if (left.next >= 0) syms[size_t(left.next)].prev = c.pos;
      if (left.prev >= 0) push(left.prev);
      push(c.pos);
    }
    for (int32_t k = n > 0 ? 0 : -1; k >= 0; k = syms[size_t(k)].next) out.push_back(syms[size_t(k)].id);
  }

  BpeConfig cfg_;
  StringMap vocab_;  // raw bytes for byte-level vocabularies
  std::array<int32_t, 256> byte_id_{};
  PairTable merges_;
  mutable WordCache cache_;
};

// llama.cpp's SentencePiece tokenizer: repeatedly merge the adjacent pair whose concatenation is the
// highest-scoring token (leftmost on ties); characters that never form a token become byte tokens.
class SpmModel : public Model {
 public:
  SpmModel(const std::vector<std::string>& vocab, std::vector<float> scores, int32_t unk_id)
      : scores_(std::move(scores)), unk_id_(unk_id) {
    vocab_.reserve(vocab.size());
    for (size_t id = 0; id < vocab.size(); ++id) vocab_.insert_or_assign(vocab[id], int32_t(id));
    for (int b = 0; b < 256; ++b) {
      int32_t id = lookup(vocab_, byte_token_name(uint8_t(b)));
      if (id < 0) id = lookup(vocab_, std::string(1, char(b)));
      byte_id_[size_t(b)] = id >= 0 ? id : unk_id_;
    }
  }

  void encode_word(std::string_view text, std::vector<int32_t>& out) const override {
    struct Sym {
      uint32_t start;
      uint32_t len;
      int32_t prev;
      int32_t next;
    };
    struct Bigram {
      float score;
      int32_t left;
      int32_t right;
      uint32_t size;
      bool operator<(const Bigram& o) const {  // max score first, then leftmost
        return score < o.score || (score == o.score && left > o.left);
      }
    };
    std::vector<Sym> syms;
    syms.reserve(text.size());
    for (uint32_t off = 0; off < text.size();) {
      const uint32_t len =
          std::min<uint32_t>(uint32_t(utf8_len(uint8_t(text[off]))), uint32_t(text.size()) - off);
      const int32_t idx = int32_t(syms.size());
      syms.push_back({off, len, idx - 1, off + len == text.size() ? -1 : idx + 1});
      off += len;
    }
    std::priority_queue<Bigram> queue;
    auto try_add = [&](int32_t left, int32_t right) {
      if (left < 0 || right < 0) return;
      const std::string_view s =
          text.substr(syms[size_t(left)].start, syms[size_t(left)].len + syms[size_t(right)].len);
      const int32_t id = lookup(vocab_, s);
      if (id < 0) return;
      queue.push({scores_[size_t(id)], left, right, uint32_t(s.size())});
    };
    for (int32_t k = 1; k < int32_t(syms.size()); ++k) try_add(k - 1, k);
    while (!queue.empty()) {
      const Bigram b = queue.top();
      queue.pop();
      Sym& l = syms[size_t(b.left)];
      Sym& r = syms[size_t(b.right)];
      if (l.len == 0 || r.len == 0 || l.len + r.len != b.size) continue;
      l.len += r.len;
      r.len = 0;
      l.next = r.next;
      if (r.next >= 0) syms[size_t(r.next)].prev = b.left;
      try_add(l.prev, b.left);
      try_add(b.left, l.next);
    }
    for (int32_t k = syms.empty() ? -1 : 0; k >= 0; k = syms[size_t(k)].next) {
      const std::string_view s = text.substr(syms[size_t(k)].start, syms[size_t(k)].len);
      const int32_t id = lookup(vocab_, s);
      if (id >= 0) {
        out.push_back(id);
      } else {
        for (const char ch : s) out.push_back(byte_id_[uint8_t(ch)]);
      }
    }
  }

 private:
  StringMap vocab_;
  std::vector<float> scores_;
  int32_t unk_id_;
  std::array<int32_t, 256> byte_id_{};
};

// Greedy longest-match-first WordPiece; a word with any unmatched remainder becomes the unknown token.
class WordPieceModel : public Model {
 public:
  WordPieceModel(StringMap vocab, int32_t unk_id, std::string prefix, size_t max_chars)
      : vocab_(std::move(vocab)), unk_id_(unk_id), prefix_(std::move(prefix)), max_chars_(max_chars) {}

  void encode_word(std::string_view word, std::vector<int32_t>& out) const override {
    size_t chars = 0;
    for (const char ch : word) chars += (uint8_t(ch) & 0xC0) != 0x80;
    if (chars > max_chars_) {
      out.push_back(unk_id_);
      return;
    }
    const size_t first = out.size();
    std::string buf;
    size_t start = 0;
    while (start < word.size()) {
      size_t end = word.size();
      int32_t id = -1;
      while (start < end) {
        const std::string_view sub = word.substr(start, end - start);
        if (start > 0) {
          buf.assign(prefix_);
          buf.append(sub);
          id = lookup(vocab_, buf);
        } else {
          id = lookup(vocab_, sub);
        }
        if (id >= 0) break;
        do {
          --end;
        } while (end > start && (uint8_t(word[end]) & 0xC0) == 0x80);
      }
      if (id < 0) {
        out.resize(first);
        out.push_back(unk_id_);
        return;
      }
      out.push_back(id);
      start = end;
    }
  }

 private:
  StringMap vocab_;
  int32_t unk_id_;
  std::string prefix_;
  size_t max_chars_;
};

}  // namespace

Result<std::unique_ptr<Model>> make_bpe_model(const std::vector<std::string>& vocab,
                                              const std::vector<std::pair<std::string, std::string>>& merges,
                                              const BpeConfig& cfg) {
  return BpeModel::create(vocab, merges, cfg);
}

std::unique_ptr<Model> make_spm_model(const std::vector<std::string>& vocab, std::vector<float> scores,
                                      int32_t unk_id) {
  return std::make_unique<SpmModel>(vocab, std::move(scores), unk_id);
}

Result<std::unique_ptr<Model>> make_wordpiece_model(const std::vector<std::string>& vocab,
                                                    std::string unk_token, std::string prefix,
                                                    size_t max_input_chars_per_word) {
  StringMap map;
  map.reserve(vocab.size());
  for (size_t id = 0; id < vocab.size(); ++id) map.insert_or_assign(vocab[id], int32_t(id));
  const int32_t unk = lookup(map, unk_token);
  if (unk < 0) return Error("WordPiece unk_token '" + unk_token + "' is not in the vocab");
  return std::unique_ptr<Model>(
      std::make_unique<WordPieceModel>(std::move(map), unk, std::move(prefix), max_input_chars_per_word));
}

}  // namespace ferrum::tok
