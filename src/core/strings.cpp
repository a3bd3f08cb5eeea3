// See strings.hpp.
#include "core/strings.hpp"

#include <algorithm>
#include <limits>

namespace reportstore::strings {

std::string Lower(std::string_view s) {
	std::string out(s);
	for (char &c : out)
		c = Lower(c);
	return out;
}

std::string_view TrimLeft(std::string_view s) {
	while (!s.empty() && IsBlank(s.front()))
		s.remove_prefix(1);
	return s;
}

std::string_view Trim(std::string_view s) {
	s = TrimLeft(s);
	while (!s.empty() && IsBlank(s.back()))
		s.remove_suffix(1);
	return s;
}

bool StartsWith(std::string_view s, std::string_view prefix) {
	return s.substr(0, prefix.size()) == prefix;
}

bool EndsWith(std::string_view s, std::string_view suffix) {
	return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

std::string StripQuotes(std::string_view s) {
	if (s.size() >= 2 && s.front() == '"' && s.back() == '"')
		s = s.substr(1, s.size() - 2);
	return std::string(s);
}

std::string Clean(std::string_view text, std::size_t limit) {
	std::string out;
	out.reserve(std::min(text.size(), limit) + 3);
	for (char c : text.substr(0, limit)) {
		const auto u = static_cast<unsigned char>(c);
		if (u >= 0x20 && u < 0x7f)
			out += c;
		else
			out += (c == '\t' || c == '\r' || c == '\n') ? ' ' : '?';
	}
	if (text.size() > limit)
		out += "...";
	return out;
}

std::string Redact(std::string text, std::initializer_list<std::string_view> secrets) {
	static constexpr std::string_view kMask = "[redacted]";
	for (std::string_view secret : secrets) {
		if (secret.size() < 4)
			continue;
		for (std::size_t at = text.find(secret); at != std::string::npos; at = text.find(secret, at + kMask.size()))
			text.replace(at, secret.size(), kMask);
	}
	return text;
}

bool IsPrintable(std::string_view s) {
	for (char c : s) {
		const auto u = static_cast<unsigned char>(c);
		if (u < 0x20 || u >= 0x7f)
			return false;
	}
	return true;
}

bool ParseUint(std::string_view s, std::uint64_t *out) {
	if (s.empty())
		return false;
	std::uint64_t v = 0;
	for (char c : s) {
		if (!IsDigit(c))
			return false;
		const auto d = static_cast<std::uint64_t>(c - '0');
		if (v > (std::numeric_limits<std::uint64_t>::max() - d) / 10)
			return false;
		v = v * 10 + d;
	}
	if (out)
		*out = v;
	return true;
}

bool IsHex(std::string_view s) {
	if (s.empty())
		return false;
	for (char c : s)
		if (!IsHexDigit(c))
			return false;
	return true;
}

bool HexDecode(std::string_view hex, std::string *out) {
	if (hex.size() % 2 != 0)
		return false;
	auto nibble = [](char c) {
		if (IsDigit(c))
			return c - '0';
		const char l = Lower(c);
		return (l >= 'a' && l <= 'f') ? l - 'a' + 10 : -1;
	};
	out->clear();
	out->reserve(hex.size() / 2);
	for (std::size_t i = 0; i < hex.size(); i += 2) {
		const int hi = nibble(hex[i]);
		const int lo = nibble(hex[i + 1]);
		if (hi < 0 || lo < 0)
			return false;
		out->push_back(static_cast<char>(hi * 16 + lo));
	}
	return true;
}

} // namespace reportstore::strings
