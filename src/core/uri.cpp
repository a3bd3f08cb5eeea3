#include "core/uri.hpp"

#include <openssl/rand.h>

#include "core/crypto.hpp"
#include "core/error.hpp"
#include "core/strings.hpp"

namespace reportstore::uri {

namespace {

bool IsUnreserved(unsigned char c) {
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
	       c == '_' || c == '~';
}

using strings::EndsWith;
using strings::IsDigit;
using strings::StartsWith;

bool IsLowerAlnum(char c) {
	return (c >= 'a' && c <= 'z') || IsDigit(c);
}

[[noreturn]] void BadEndpoint(const std::string &message, const std::string &detail = {}) {
	throw Error(ErrorKind::kConfig, sqlstate::kInvalidParameterValue, message, detail,
	            "Use a URL of the form \"https://host[:port]\", e.g. \"https://s3.eu-west-1.amazonaws.com\".");
}

// Host name of an endpoint: DNS labels of letters, digits and '-', or an IPv4 address.
bool IsValidHostName(const std::string &host) {
	if (host.empty() || host.size() > 253)
		return false;
	std::size_t start = 0;
	while (start <= host.size()) {
		std::size_t end = host.find('.', start);
		if (end == std::string::npos)
			end = host.size();
		std::size_t len = end - start;
		if (len == 0 || len > 63)
			return false;
		if (host[start] == '-' || host[end - 1] == '-')
			return false;
		for (std::size_t i = start; i < end; i++)
			if (!IsLowerAlnum(host[i]) && host[i] != '-')
				return false;
		start = end + 1;
	}
	return true;
}

bool IsValidIpv6(const std::string &host) {
	if (host.size() < 2 || host.find(':') == std::string::npos)
		return false;
	for (char c : host)
		if (!strings::IsHexDigit(c) && c != ':' && c != '.')
			return false;
	return true;
}

bool LooksLikeIpv4(std::string_view s) {
	int groups = 0;
	std::size_t start = 0;
	while (true) {
		std::size_t end = s.find('.', start);
		if (end == std::string_view::npos)
			end = s.size();
		if (end == start || end - start > 3)
			return false;
		for (std::size_t i = start; i < end; i++)
			if (!IsDigit(s[i]))
				return false;
		groups++;
		if (end == s.size())
			break;
		start = end + 1;
	}
	return groups == 4;
}

} // namespace

std::string UriEncode(std::string_view s, bool encode_slash) {
	static const char kHex[] = "0123456789ABCDEF";
	std::string out;
	out.reserve(s.size() * 3);
	for (char ch : s) {
		auto c = static_cast<unsigned char>(ch);
		if (IsUnreserved(c) || (c == '/' && !encode_slash)) {
			out.push_back(ch);
		} else {
			out.push_back('%');
			out.push_back(kHex[c >> 4]);
			out.push_back(kHex[c & 0x0f]);
		}
	}
	return out;
}

std::string Endpoint::HostHeader() const {
	std::string out = ipv6 ? "[" + host + "]" : host;
	int default_port = scheme == "https" ? 443 : 80;
	if (explicit_port && port != default_port)
		out += ":" + std::to_string(port);
	return out;
}

std::string Endpoint::Origin() const {
	return scheme + "://" + HostHeader();
}

Endpoint ParseEndpoint(std::string_view url) {
	// Never echo the URL: it may carry credentials the user pasted by mistake.
	if (url.find('@') != std::string_view::npos)
		BadEndpoint("endpoint URL must not contain user credentials",
		            "Credentials are configured separately, never in the endpoint URL.");
	for (char c : url)
		if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f)
			BadEndpoint("endpoint URL contains whitespace or a non-ASCII character");

	std::size_t sep = url.find("://");
	if (sep == std::string_view::npos)
		BadEndpoint("endpoint URL has no scheme");
	Endpoint ep;
	for (char c : url.substr(0, sep))
		ep.scheme.push_back(strings::Lower(c));
	if (ep.scheme != "http" && ep.scheme != "https")
		BadEndpoint("endpoint URL scheme must be \"http\" or \"https\"", "The scheme is \"" + ep.scheme + "\".");
	ep.port = ep.scheme == "https" ? 443 : 80;

	std::string_view rest = url.substr(sep + 3);
	if (rest.find('?') != std::string_view::npos || rest.find('#') != std::string_view::npos)
		BadEndpoint("endpoint URL must not contain a query or a fragment");
	std::size_t slash = rest.find('/');
	std::string_view authority = rest.substr(0, slash);
	if (slash != std::string_view::npos && rest.substr(slash) != "/")
		BadEndpoint("endpoint URL must not contain a path",
		            "Give the bucket in its own setting; the endpoint ends after the host and port.");
	if (authority.empty())
		BadEndpoint("endpoint URL has no host");

	std::string_view port_text;
	bool has_port = false;
	if (authority.front() == '[') {
		std::size_t close = authority.find(']');
		if (close == std::string_view::npos)
			BadEndpoint("endpoint URL has an unterminated IPv6 address");
		for (char c : authority.substr(1, close - 1))
			ep.host.push_back(strings::Lower(c));
		if (!IsValidIpv6(ep.host))
			BadEndpoint("endpoint URL has an invalid IPv6 address");
		ep.ipv6 = true;
		std::string_view after = authority.substr(close + 1);
		if (!after.empty()) {
			if (after.front() != ':')
				BadEndpoint("endpoint URL has garbage after the IPv6 address");
			has_port = true;
			port_text = after.substr(1);
		}
	} else {
		std::size_t colon = authority.rfind(':');
		std::string_view host = authority.substr(0, colon);
		if (colon != std::string_view::npos) {
			has_port = true;
			port_text = authority.substr(colon + 1);
		}
		for (char c : host)
			ep.host.push_back(strings::Lower(c));
		if (ep.host.empty())
			BadEndpoint("endpoint URL has no host");
		if (!IsValidHostName(ep.host))
			BadEndpoint("endpoint URL has an invalid host name \"" + ep.host + "\"");
	}

	if (has_port) {
		if (port_text.empty() || port_text.size() > 5)
			BadEndpoint("endpoint URL has an invalid port");
		int port = 0;
		for (char c : port_text) {
			if (!IsDigit(c))
				BadEndpoint("endpoint URL has an invalid port");
			port = port * 10 + (c - '0');
		}
		if (port < 1 || port > 65535)
			BadEndpoint("endpoint URL port " + std::to_string(port) + " is out of range",
			            "The port must be between 1 and 65535.");
		ep.port = port;
		ep.explicit_port = true;
	}
	return ep;
}

bool IsValidBucketName(std::string_view bucket) {
	if (bucket.size() < 3 || bucket.size() > 63)
		return false;
	for (char c : bucket)
		if (!IsLowerAlnum(c) && c != '.' && c != '-')
			return false;
	if (!IsLowerAlnum(bucket.front()) || !IsLowerAlnum(bucket.back()))
		return false;
	// Dot-separated labels must be DNS-compatible for virtual-hosted access.
	if (bucket.find("..") != std::string_view::npos || bucket.find(".-") != std::string_view::npos ||
	    bucket.find("-.") != std::string_view::npos)
		return false;
	if (LooksLikeIpv4(bucket))
		return false;
	// Prefixes and suffixes AWS reserves for access points and other features.
	if (StartsWith(bucket, "xn--") || StartsWith(bucket, "sthree-") || StartsWith(bucket, "amzn-s3-demo-") ||
	    EndsWith(bucket, "-s3alias") || EndsWith(bucket, "--ol-s3") || EndsWith(bucket, ".mrap") ||
	    EndsWith(bucket, "--x-s3"))
		return false;
	return true;
}

bool ParseBucketList(std::string_view list, std::vector<std::string> *out) {
	if (out != nullptr)
		out->clear();
	while (!list.empty()) {
		const std::size_t comma = list.find(',');
		std::string_view name = list.substr(0, comma);
		while (!name.empty() && name.front() == ' ')
			name.remove_prefix(1);
		while (!name.empty() && name.back() == ' ')
			name.remove_suffix(1);
		if (!IsValidBucketName(name))
			return false;
		if (out != nullptr)
			out->emplace_back(name);
		if (comma == std::string_view::npos)
			break;
		list.remove_prefix(comma + 1);
	}
	return true;
}

std::string S3Location::ToUri() const {
	return "s3://" + bucket + "/" + key;
}

bool ParseS3Uri(std::string_view uri, S3Location *out) {
	constexpr std::string_view kPrefix = "s3://";
	if (!StartsWith(uri, kPrefix))
		return false;
	std::string_view rest = uri.substr(kPrefix.size());
	std::size_t slash = rest.find('/');
	if (slash == std::string_view::npos)
		return false;
	std::string_view bucket = rest.substr(0, slash);
	std::string_view key = rest.substr(slash + 1);
	if (!IsValidBucketName(bucket) || key.empty() || key.size() > 1024)
		return false;
	if (out != nullptr) {
		out->bucket = std::string(bucket);
		out->key = std::string(key);
	}
	return true;
}

std::string ReportObjectKey(std::string_view report_id, std::string_view format) {
	bool uuid_ok = report_id.size() == 36;
	for (std::size_t i = 0; uuid_ok && i < report_id.size(); i++) {
		char c = report_id[i];
		if (i == 8 || i == 13 || i == 18 || i == 23)
			uuid_ok = c == '-';
		else
			uuid_ok = IsDigit(c) || (c >= 'a' && c <= 'f');
	}
	if (!uuid_ok)
		throw Error(ErrorKind::kClient, sqlstate::kInvalidParameterValue, "invalid report id", {},
		            "A report id is a lowercase UUID such as \"0f8fad5b-d9cb-469f-a165-70867728950e\".");

	bool format_ok = !format.empty() && format.size() <= 32;
	for (char c : format)
		format_ok = format_ok && (IsLowerAlnum(c) || c == '_');
	if (!format_ok)
		throw Error(ErrorKind::kClient, sqlstate::kInvalidParameterValue, "invalid report format", {},
		            "A report format is 1 to 32 lowercase letters, digits or underscores, e.g. \"csv\".");

	return "reports/" + std::string(report_id) + "/report." + std::string(format);
}

namespace {

bool IsGeneration(std::string_view generation) {
	if (generation.size() != 24)
		return false;
	for (char c : generation)
		if (!(IsDigit(c) || (c >= 'a' && c <= 'f')))
			return false;
	return true;
}

} // namespace

std::string ReportGenerationKey(std::string_view report_id, std::string_view format, std::string_view generation) {
	std::string seed = ReportObjectKey(report_id, format); // validates both
	if (!IsGeneration(generation))
		throw Error(ErrorKind::kInternal, sqlstate::kInvalidParameterValue, "invalid object generation", {},
		            "A generation is 24 lowercase hex digits.");
	const std::size_t slash = seed.rfind('/');
	return seed.substr(0, slash + 1) + std::string(generation) + seed.substr(slash);
}

std::string NewGeneration(long long seconds) {
	std::uint8_t random[8];
	if (RAND_bytes(random, sizeof(random)) != 1)
		throw Error(ErrorKind::kInternal, sqlstate::kInternalError, "could not generate random bytes");
	// 8 hex digits of the time (the low 32 bits), then the random bits.
	const std::uint32_t s = seconds < 0 ? 0 : static_cast<std::uint32_t>(seconds & 0xffffffffLL);
	const std::uint8_t time_bytes[4] = {static_cast<std::uint8_t>(s >> 24), static_cast<std::uint8_t>(s >> 16),
	                                    static_cast<std::uint8_t>(s >> 8), static_cast<std::uint8_t>(s)};
	return crypto::HexEncode(time_bytes, sizeof(time_bytes)) + crypto::HexEncode(random, sizeof(random));
}

bool IsReportKey(std::string_view key, std::string_view report_id, std::string_view format) {
	std::string seed;
	try {
		seed = ReportObjectKey(report_id, format);
	} catch (const Error &) {
		return false;
	}
	if (key == seed)
		return true;
	// reports/{id}/{generation}/report.{format}
	const std::size_t slash = seed.rfind('/');
	const std::string_view prefix(seed.data(), slash + 1);
	const std::string_view leaf(seed.data() + slash, seed.size() - slash);
	if (key.size() != seed.size() + 25 || key.substr(0, prefix.size()) != prefix ||
	    key.substr(key.size() - leaf.size()) != leaf)
		return false;
	return IsGeneration(key.substr(prefix.size(), 24));
}

} // namespace reportstore::uri
