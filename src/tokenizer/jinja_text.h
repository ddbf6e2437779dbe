// Python str semantics on UTF-8 strings, for the Jinja interpreter: templates index, slice, strip and
// split by code point and must print numbers and reprs exactly as CPython does.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ferrum::jinja::text {

// Input strings are valid UTF-8 (the lexer and the JSON parser check it).
std::u32string decode(std::string_view s);
std::string encode(std::u32string_view s);
bool is_valid_utf8(std::string_view s);
size_t length(std::string_view s);  // in code points

// str.isspace(): the Unicode whitespace Python's strip() and split() use.
bool is_space(char32_t c);

// str.strip/lstrip/rstrip; `chars` absent strips whitespace.
std::string strip(std::string_view s, const std::optional<std::string>& chars, bool left, bool right);
// str.split / str.rsplit; `sep` absent splits on whitespace runs. maxsplit < 0 means no limit.
std::vector<std::string> split(std::string_view s, const std::optional<std::string>& sep, int64_t maxsplit);
std::vector<std::string> rsplit(std::string_view s, const std::optional<std::string>& sep, int64_t maxsplit);
// str.splitlines() without keepends.
std::vector<std::string> splitlines(std::string_view s);
// str.replace; count < 0 replaces all.
std::string replace(std::string_view s, std::string_view old, std::string_view repl, int64_t count);
// str.find / str.rfind / str.count in code points.
int64_t find(std::string_view s, std::string_view sub, bool reverse);
int64_t count(std::string_view s, std::string_view sub);

// Case mapping uses Unicode simple case mappings (Python also applies the few multi-character
// special cases such as 'ß'.upper() == 'SS'; those are not replicated).
std::string upper(std::string_view s);
std::string lower(std::string_view s);
std::string capitalize(std::string_view s);  // str.capitalize
std::string title(std::string_view s);       // str.title
bool is_alpha(char32_t c);
bool is_digit(char32_t c);
bool is_word(char32_t c);  // the regex class \w
bool is_lower(char32_t c);
bool is_upper(char32_t c);

// repr(float) / str(float): shortest round-trip digits, CPython's choice of fixed or exponent form.
std::string float_repr(double v);
// repr(str): quotes and escapes as CPython.
std::string repr(std::string_view s);
// A string as json.dumps writes it; with ensure_ascii, non-ASCII becomes \uXXXX escapes.
void append_json_string(std::string& out, std::string_view s, bool ensure_ascii);

}  // namespace ferrum::jinja::text
