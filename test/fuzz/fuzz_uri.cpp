// libFuzzer target: endpoint URLs, bucket names, s3:// URIs, report object
// keys and SigV4 URI encoding, with round-trip properties.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/error.hpp"
#include "core/uri.hpp"
#include "fuzz_check.hpp"

using namespace reportstore;

namespace {

bool IsUnreserved(unsigned char c) {
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
	       c == '_' || c == '~';
}

int HexValue(char c) {
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1; // lowercase hex is not SigV4's form
}

void CheckUriEncode(std::string_view s, bool encode_slash) {
	const std::string enc = uri::UriEncode(s, encode_slash);
	std::string dec;
	for (std::size_t i = 0; i < enc.size(); i++) {
		const auto c = static_cast<unsigned char>(enc[i]);
		if (c == '%') {
			FUZZ_CHECK(i + 2 < enc.size());
			const int hi = HexValue(enc[i + 1]), lo = HexValue(enc[i + 2]);
			FUZZ_CHECK(hi >= 0 && lo >= 0);
			const auto b = static_cast<unsigned char>(hi * 16 + lo);
			// Only what must be encoded is encoded.
			FUZZ_CHECK(!IsUnreserved(b) && !(b == '/' && !encode_slash));
			dec.push_back(static_cast<char>(b));
			i += 2;
		} else {
			FUZZ_CHECK(IsUnreserved(c) || (c == '/' && !encode_slash));
			dec.push_back(static_cast<char>(c));
		}
	}
	FUZZ_CHECK(dec == s);
	if (enc.find('%') == std::string::npos)
		FUZZ_CHECK(uri::UriEncode(enc, encode_slash) == enc); // nothing left to encode
}

void CheckEndpoint(std::string_view s) {
	uri::Endpoint ep;
	try {
		ep = uri::ParseEndpoint(s);
	} catch (const Error &e) {
		FUZZ_CHECK(e.kind() == ErrorKind::kConfig);
		FUZZ_CHECK(e.sqlstate() == sqlstate::kInvalidParameterValue);
		// Never echo credentials: a URL with user info is refused without quoting it.
		if (s.find('@') != std::string_view::npos) {
			FUZZ_CHECK(std::string(e.what()).find('@') == std::string::npos);
			FUZZ_CHECK(e.detail().find('@') == std::string::npos);
		}
		return;
	}
	FUZZ_CHECK(s.find('@') == std::string_view::npos);
	FUZZ_CHECK(ep.scheme == "http" || ep.scheme == "https");
	FUZZ_CHECK(!ep.host.empty());
	FUZZ_CHECK(ep.port >= 1 && ep.port <= 65535);
	const std::string hh = ep.HostHeader();
	for (char c : hh)
		FUZZ_CHECK(c > 0x20 && c < 0x7f && c != '/' && c != '@' && c != '?' && c != '#');
	// The origin re-parses to the same endpoint, and is a fixed point.
	const std::string origin = ep.Origin();
	uri::Endpoint again;
	try {
		again = uri::ParseEndpoint(origin);
	} catch (const Error &) {
		FUZZ_CHECK(!"Origin() of an accepted endpoint is refused");
	}
	FUZZ_CHECK(again.scheme == ep.scheme && again.host == ep.host && again.port == ep.port &&
	           again.ipv6 == ep.ipv6);
	FUZZ_CHECK(again.HostHeader() == hh);
	FUZZ_CHECK(again.Origin() == origin);
	FUZZ_CHECK(uri::ParseEndpoint(origin + "/").Origin() == origin);
}

void CheckBucket(std::string_view s) {
	if (!uri::IsValidBucketName(s))
		return;
	FUZZ_CHECK(s.size() >= 3 && s.size() <= 63);
	for (char c : s)
		FUZZ_CHECK((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-');
	FUZZ_CHECK(s.find("..") == std::string_view::npos);
	// A valid bucket is usable in an s3:// URI and as a virtual host label.
	uri::S3Location loc;
	FUZZ_CHECK(uri::ParseS3Uri("s3://" + std::string(s) + "/k", &loc));
	FUZZ_CHECK(loc.bucket == s && loc.key == "k");
	FUZZ_CHECK(uri::UriEncode(s, true) == s);
}

void CheckS3Uri(std::string_view s) {
	uri::S3Location loc;
	const bool ok = uri::ParseS3Uri(s, &loc);
	FUZZ_CHECK(ok == uri::ParseS3Uri(s, nullptr));
	if (!ok)
		return;
	FUZZ_CHECK(uri::IsValidBucketName(loc.bucket));
	FUZZ_CHECK(!loc.key.empty() && loc.key.size() <= 1024);
	FUZZ_CHECK(loc.ToUri() == s);
}

void CheckReportKey(std::string_view id, std::string_view format) {
	std::string key;
	try {
		key = uri::ReportObjectKey(id, format);
	} catch (const Error &e) {
		FUZZ_CHECK(e.kind() == ErrorKind::kClient);
		FUZZ_CHECK(e.sqlstate() == sqlstate::kInvalidParameterValue);
		return;
	}
	FUZZ_CHECK(key == "reports/" + std::string(id) + "/report." + std::string(format));
	FUZZ_CHECK(key.find("..") == std::string::npos);
	std::size_t slashes = 0;
	for (char c : key)
		slashes += c == '/';
	FUZZ_CHECK(slashes == 2);
	FUZZ_CHECK(uri::UriEncode(key, false) == key); // nothing to escape in a key
	uri::S3Location loc;
	FUZZ_CHECK(uri::ParseS3Uri("s3://reports-bucket/" + key, &loc) && loc.key == key);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
	const std::string_view s(reinterpret_cast<const char *>(data), size);
	CheckUriEncode(s, true);
	CheckUriEncode(s, false);
	CheckEndpoint(s);
	CheckBucket(s);
	CheckS3Uri(s);
	// "report_id format": split at the first space (or 36 bytes).
	const std::size_t sp = s.find(' ');
	if (sp != std::string_view::npos)
		CheckReportKey(s.substr(0, sp), s.substr(sp + 1));
	else
		CheckReportKey(s.substr(0, 36), s.substr(std::min<std::size_t>(36, s.size())));
	return 0;
}
