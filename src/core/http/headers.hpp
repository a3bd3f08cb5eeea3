// HTTP header fields: the type shared by the signer and the engine, the
// parsing of received header lines and the checks on fields before sending.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace reportstore::http {

using Header = std::pair<std::string, std::string>;
using Headers = std::vector<Header>;

enum class HeaderLineKind {
	kStatusLine, // "HTTP/..." : a new response starts (100 Continue, redirect, final)
	kHeader,     // "Name: value" : *out gets the lowercased name and the trimmed value
	kIgnored,    // blank, folded (no colon) or malformed line
};
// Classifies one raw header line as libcurl hands it over (CRLF included or
// not). Never throws except std::bad_alloc.
HeaderLineKind ParseHeaderLine(std::string_view line, Header *out);

// A Content-Length value: ASCII digits only, no sign, no overflow.
bool ParseContentLength(std::string_view value, std::uint64_t *out);

// A field name (RFC 9110 token): at least one of A-Z a-z 0-9 !#$&'*+-.^_`|~
bool IsToken(std::string_view s);
// A field value we may send: no control character other than tab.
bool IsFieldValue(std::string_view s);
// CR, LF or NUL: would split or end a header line (header injection).
bool HasLineBreak(std::string_view s);

} // namespace reportstore::http
