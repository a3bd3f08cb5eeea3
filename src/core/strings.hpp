// Small string helpers shared by the core. All of them work on ASCII bytes and
// ignore the C locale on purpose: a PostgreSQL backend may run with an
// LC_CTYPE (e.g. tr_TR) in which std::tolower('I') is not 'i', and HTTP, S3
// and SigV4 are defined on ASCII.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

namespace reportstore::strings {

inline bool IsDigit(char c) {
	return c >= '0' && c <= '9';
}
inline bool IsHexDigit(char c) {
	return IsDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
inline bool IsAlnum(char c) {
	return IsDigit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
// Space, tab, CR or LF.
inline bool IsBlank(char c) {
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}
inline char Lower(char c) {
	return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

std::string Lower(std::string_view s);

// s without leading and trailing blanks (IsBlank).
std::string_view Trim(std::string_view s);
std::string_view TrimLeft(std::string_view s);

bool StartsWith(std::string_view s, std::string_view prefix);
bool EndsWith(std::string_view s, std::string_view suffix);

// s without one pair of surrounding double quotes (an HTTP ETag).
std::string StripQuotes(std::string_view s);

// Text from outside (a server, a setting) made safe to repeat in a message:
// printable ASCII is kept, tab, CR and LF become spaces, any other byte '?';
// beyond `limit` bytes the text is cut and "..." appended.
std::string Clean(std::string_view text, std::size_t limit);

// text with every occurrence of each secret (of at least 4 bytes) replaced
// by "[redacted]": for text from a server, before Clean() may cut it, so that
// no prefix of a secret that the server echoed survives either.
std::string Redact(std::string text, std::initializer_list<std::string_view> secrets);

// True when every byte is printable ASCII (0x20..0x7e).
bool IsPrintable(std::string_view s);

// An unsigned decimal: ASCII digits only (no sign, no blanks), at least one,
// and no overflow. On failure *out is left untouched; out may be null.
bool ParseUint(std::string_view s, std::uint64_t *out);

// True when s is not empty and only hex digits.
bool IsHex(std::string_view s);

// Bytes of an even-length hex string (either case). False, with *out
// unspecified, on an odd length or a non-hex character.
bool HexDecode(std::string_view hex, std::string *out);

} // namespace reportstore::strings
