// libFuzzer target: what STS and the instance metadata service send back
// (STS credentials and error documents, the IMDS credentials JSON, the
// ISO 8601 expiration times in both).
// Allowed outcomes: a result whose fields are within their bounds, or
// reportstore::Error of the documented kind (kSystemic: 08P01 for a document
// that is not STS's or IMDS's, 28000 for an IMDS answer whose Code is not
// Success); anything else is a bug.
#include <cstddef>
#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>

#include "core/aws/credentials.hpp"
#include "core/aws/imds.hpp"
#include "core/aws/sts.hpp"
#include "core/error.hpp"
#include "fuzz_check.hpp"

using namespace reportstore;

namespace {

bool Printable(const std::string &s, std::size_t max) {
	if (s.empty() || s.size() > max)
		return false;
	for (char c : s)
		if (c < 0x20 || c > 0x7e)
			return false;
	return true;
}

void CheckCredentials(const aws::TimedCredentials &t) {
	FUZZ_CHECK(Printable(t.credentials.access_key_id, 256));
	FUZZ_CHECK(Printable(t.credentials.secret_access_key, 256));
	FUZZ_CHECK(Printable(t.credentials.session_token, aws::kMaxSessionTokenBytes));
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
	const std::string_view text(reinterpret_cast<const char *>(data), size);

	for (const char *action : {"AssumeRole", "AssumeRoleWithWebIdentity"}) {
		try {
			CheckCredentials(aws::ParseStsCredentials(text, action));
		} catch (const Error &e) {
			FUZZ_CHECK(e.kind() == ErrorKind::kSystemic);
			FUZZ_CHECK(e.sqlstate() == sqlstate::kProtocolViolation);
		}
	}

	aws::StsError error;
	const bool ok = aws::ParseStsError(text, &error);
	FUZZ_CHECK(ok == aws::ParseStsError(text, nullptr)); // deterministic, out optional

	try {
		CheckCredentials(aws::ParseImdsCredentials(text));
	} catch (const Error &e) {
		FUZZ_CHECK(e.kind() == ErrorKind::kSystemic);
		FUZZ_CHECK(e.sqlstate() == sqlstate::kProtocolViolation || e.sqlstate() == sqlstate::kInvalidAuthorization);
	}

	std::time_t t = 0;
	if (aws::ParseIso8601Utc(text, &t)) {
		FUZZ_CHECK(size >= 20 && size <= 40);
		// What parses prints back as a valid date.
		FUZZ_CHECK(aws::FormatUtc(t).size() >= 23);
	}
	return 0;
}
