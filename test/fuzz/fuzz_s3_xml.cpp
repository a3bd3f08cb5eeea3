// libFuzzer target: S3 XML bodies (error, ListObjectsV2, lifecycle, the
// multipart responses).
// Every parser sees every input. Allowed outcomes: a result, or
// reportstore::Error of the documented kind; anything else (another
// exception, a crash, a sanitizer report) is a bug.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/error.hpp"
#include "core/s3/xml.hpp"
#include "fuzz_check.hpp"

using namespace reportstore;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
	const std::string_view xml(reinterpret_cast<const char *>(data), size);

	s3::ErrorBody body;
	const bool ok = s3::ParseErrorBody(xml, &body);
	FUZZ_CHECK(ok == s3::ParseErrorBody(xml, nullptr)); // deterministic, out optional
	if (!ok)
		FUZZ_CHECK(body.code.empty() && body.message.empty()); // untouched on failure

	try {
		const s3::ListPage page = s3::ParseListObjectsV2(xml);
		for (const auto &o : page.objects)
			FUZZ_CHECK(!o.key.empty());
		if (page.is_truncated)
			FUZZ_CHECK(!page.next_continuation_token.empty());
		// A document is either an <Error> or a <ListBucketResult>, never both.
		FUZZ_CHECK(!ok);
	} catch (const Error &e) {
		FUZZ_CHECK(e.kind() == ErrorKind::kProtocol);
		FUZZ_CHECK(e.sqlstate() == sqlstate::kProtocolViolation);
	}

	try {
		const auto rules = s3::ParseLifecycleRules(xml);
		for (const auto &r : rules)
			FUZZ_CHECK(r.expiration_days >= 0);
		if (xml.empty())
			FUZZ_CHECK(rules.empty());
	} catch (const Error &e) {
		FUZZ_CHECK(e.kind() == ErrorKind::kProtocol);
		FUZZ_CHECK(e.sqlstate() == sqlstate::kProtocolViolation);
		FUZZ_CHECK(!xml.empty());
	}

	try {
		const std::string upload_id = s3::ParseInitiateMultipartUpload(xml);
		FUZZ_CHECK(!upload_id.empty() && upload_id.size() <= 1024);
		for (char c : upload_id)
			FUZZ_CHECK(c >= 0x20 && c < 0x7f);
	} catch (const Error &e) {
		FUZZ_CHECK(e.kind() == ErrorKind::kProtocol);
		FUZZ_CHECK(e.sqlstate() == sqlstate::kProtocolViolation);
	}

	try {
		const s3::CompleteMultipartUploadResult done = s3::ParseCompleteMultipartUpload(xml);
		if (done.is_error)
			FUZZ_CHECK(done.etag.empty());
	} catch (const Error &e) {
		FUZZ_CHECK(e.kind() == ErrorKind::kProtocol);
		FUZZ_CHECK(e.sqlstate() == sqlstate::kProtocolViolation);
	}
	return 0;
}
