// UTF-8 and Unicode helpers for the tokenizers (categories and normalization come from utf8proc).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace ferrum::tok {

// Decodes the code point at s[i] (s must be valid UTF-8) and advances i past it.
inline uint32_t next_cp(std::string_view s, size_t& i) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data()) + i;
  uint32_t c = p[0];
  if (c < 0x80) {
    i += 1;
    return c;
  }
  if (c < 0xE0) {
    i += 2;
    return ((c & 0x1F) << 6) | (p[1] & 0x3F);
  }
  if (c < 0xF0) {
    i += 3;
    return ((c & 0x0F) << 12) | ((p[1] & 0x3F) << 6) | (p[2] & 0x3F);
  }
  i += 4;
  return ((c & 0x07) << 18) | ((p[1] & 0x3F) << 12) | ((p[2] & 0x3F) << 6) | (p[3] & 0x3F);
}

// Length of the UTF-8 sequence that starts with byte `lead` (valid input assumed).
inline size_t utf8_len(uint8_t lead) { return lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4; }

void append_utf8(std::string& out, uint32_t cp);

// Invalid UTF-8 is replaced the way Rust's String::from_utf8_lossy (and so HF tokenizers) does:
// each maximal ill-formed subsequence becomes one U+FFFD. Returns false (and leaves `out`
// untouched) when `s` is already valid, so the common case costs a scan and no copy.
bool sanitize_utf8(std::string_view s, std::string& out);
// Same replacement, always producing a string.
std::string utf8_lossy(std::string_view s);

// Character classes as HF tokenizers sees them: Rust's char methods (current Unicode) for the
// first four, the unicode_categories crate (Unicode 8.0 data) for the BERT-only last three.
bool is_white_space(uint32_t cp);      // White_Space (char::is_whitespace)
bool is_letter(uint32_t cp);           // L*
bool is_numeric(uint32_t cp);          // N* (char::is_numeric)
bool is_alphanumeric(uint32_t cp);     // L* or N*
bool is_punctuation(uint32_t cp);      // P*
bool is_other(uint32_t cp);            // Cc, Cf, Co, Cs (not unassigned code points)
bool is_mark_nonspacing(uint32_t cp);  // Mn

enum class NormForm { kNFC, kNFD, kNFKC, kNFKD };
// Normalizes valid UTF-8 text in place.
void normalize(std::string& s, NormForm form);
// Full lowercase mapping (Rust str::to_lowercase without the final-sigma context rule).
void lowercase(std::string& s);

// GPT-2 byte-level alphabet: every byte maps to one printable code point.
struct ByteLevelAlphabet {
  std::array<uint32_t, 256> byte_to_cp{};
  // Inverse for code points below 0x144 (the largest one used); -1 where none.
  std::array<int16_t, 0x144> cp_to_byte{};
  ByteLevelAlphabet();
};
const ByteLevelAlphabet& byte_level_alphabet();
// Raw bytes → byte-level string (each byte as its alphabet character).
std::string byte_level_encode(std::string_view raw);
// Byte-level string → raw bytes; false if some character is outside the alphabet.
bool byte_level_decode(std::string_view text, std::string& out);

}  // namespace ferrum::tok
