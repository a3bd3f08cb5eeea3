// See headers.hpp.
#include "core/http/headers.hpp"

#include "core/strings.hpp"

namespace reportstore::http {

HeaderLineKind ParseHeaderLine(std::string_view line, Header *out) {
	if (strings::StartsWith(line, "HTTP/"))
		return HeaderLineKind::kStatusLine;
	line = strings::Trim(line);
	if (line.empty())
		return HeaderLineKind::kIgnored;
	const std::size_t colon = line.find(':');
	if (colon == std::string_view::npos || colon == 0)
		return HeaderLineKind::kIgnored;
	if (out) {
		out->first = strings::Lower(strings::Trim(line.substr(0, colon)));
		out->second = std::string(strings::Trim(line.substr(colon + 1)));
	}
	return HeaderLineKind::kHeader;
}

bool ParseContentLength(std::string_view value, std::uint64_t *out) {
	return strings::ParseUint(value, out);
}

bool IsToken(std::string_view s) {
	if (s.empty())
		return false;
	for (char c : s)
		if (!strings::IsAlnum(c) && std::string_view("!#$&'*+-.^_`|~").find(c) == std::string_view::npos)
			return false;
	return true;
}

bool IsFieldValue(std::string_view s) {
	for (char c : s) {
		const auto u = static_cast<unsigned char>(c);
		if ((u < 0x20 && c != '\t') || u == 0x7f)
			return false;
	}
	return true;
}

bool HasLineBreak(std::string_view s) {
	return s.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos;
}

} // namespace reportstore::http
