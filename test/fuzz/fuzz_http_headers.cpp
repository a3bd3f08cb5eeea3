// libFuzzer target: HTTP response header lines as libcurl hands them to the
// engine's header callback (http::ParseHeaderLine, http::ParseContentLength),
// and the Content-Encoding interpretation of stored objects.
//
// The input is cut into lines after each '\n' (as libcurl delivers them);
// the whole input is also tried as one line (a server may send anything).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/compression.hpp"
#include "core/error.hpp"
#include "core/http/engine.hpp"
#include "fuzz_check.hpp"

using namespace reportstore;

namespace {

bool IsSpace(char c) {
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

void CheckContentLength(std::string_view v) {
	std::uint64_t len = 12345;
	if (!http::ParseContentLength(v, &len)) {
		FUZZ_CHECK(len == 12345); // untouched on failure
		return;
	}
	FUZZ_CHECK(!v.empty());
	for (char c : v)
		FUZZ_CHECK(c >= '0' && c <= '9');
	std::string_view digits = v;
	while (digits.size() > 1 && digits.front() == '0')
		digits.remove_prefix(1);
	FUZZ_CHECK(std::to_string(len) == digits); // exact value, no silent overflow
}

void CheckContentEncoding(std::string_view v) {
	try {
		const compression::Codec c = compression::CodecFromContentEncoding(v);
		FUZZ_CHECK(c == compression::Codec::kNone || c == compression::Codec::kGzip || c == compression::Codec::kZstd);
	} catch (const Error &e) {
		FUZZ_CHECK(e.kind() == ErrorKind::kClient);
		FUZZ_CHECK(e.sqlstate() == "0A000");
		FUZZ_CHECK(std::string(e.what()).size() < 200); // the value is echoed bounded
	}
}

void CheckLine(std::string_view line) {
	http::Header h{"sentinel", "sentinel"};
	const http::HeaderLineKind kind = http::ParseHeaderLine(line, &h);
	FUZZ_CHECK(kind == http::ParseHeaderLine(line, nullptr));
	const bool status = line.size() >= 5 && line.substr(0, 5) == "HTTP/";
	FUZZ_CHECK((kind == http::HeaderLineKind::kStatusLine) == status);
	if (kind != http::HeaderLineKind::kHeader) {
		FUZZ_CHECK(h.first == "sentinel" && h.second == "sentinel");
		return;
	}
	const std::string &name = h.first;
	const std::string &value = h.second;
	FUZZ_CHECK(!name.empty());
	FUZZ_CHECK(name.find(':') == std::string::npos);
	FUZZ_CHECK(!IsSpace(name.front()) && !IsSpace(name.back()));
	if (!value.empty())
		FUZZ_CHECK(!IsSpace(value.front()) && !IsSpace(value.back()));
	for (char c : name)
		FUZZ_CHECK(!(c >= 'A' && c <= 'Z'));
	FUZZ_CHECK(name.size() + value.size() < line.size());   // the colon at least is dropped
	FUZZ_CHECK(line.find(value) != std::string_view::npos); // value is verbatim
	if (name == "content-length")
		CheckContentLength(value);
	if (name == "content-encoding")
		CheckContentEncoding(value);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
	const std::string_view all(reinterpret_cast<const char *>(data), size);
	std::string_view rest = all;
	while (!rest.empty()) {
		const std::size_t nl = rest.find('\n');
		const std::size_t n = nl == std::string_view::npos ? rest.size() : nl + 1;
		CheckLine(rest.substr(0, n));
		rest.remove_prefix(n);
	}
	CheckLine(all);
	CheckContentLength(all);
	CheckContentEncoding(all);
	return 0;
}
