// Classification of failed S3 exchanges: S3 error documents, bare status
// codes and transport failures.
#include "core/s3/errors.hpp"

#include <gtest/gtest.h>

#include "core/s3/client.hpp"
#include "s3_test_support.hpp"

namespace reportstore::s3 {
namespace {

struct ErrorCase {
	int status;
	std::string code;
	ErrorKind kind;
	std::string sqlstate;
	std::string hint_part;
};

TEST_F(S3ClientTest, XmlErrorBodiesAreClassified) {
	const std::vector<ErrorCase> cases = {
	    {403, "AccessDenied", ErrorKind::kSystemic, "42501", "reportstore.secret_access_key are right"},
	    {403, "SignatureDoesNotMatch", ErrorKind::kSystemic, "28000",
	     "Check reportstore.access_key_id and reportstore.secret_access_key."},
	    {403, "InvalidAccessKeyId", ErrorKind::kSystemic, "28000", "reportstore.secret_access_key"},
	    {400, "ExpiredToken", ErrorKind::kSystemic, "28000", "session token"},
	    {404, "NoSuchBucket", ErrorKind::kSystemic, "42704", "Create the bucket or set reportstore.bucket."},
	    {404, "NoSuchKey", ErrorKind::kNotFound, "58P01", ""},
	    {503, "SlowDown", ErrorKind::kTransient, "58030", "retry"},
	    {500, "InternalError", ErrorKind::kTransient, "58030", "Retry"},
	    {400, "RequestTimeout", ErrorKind::kTransient, "58030", "Retry"},
	    {400, "BadDigest", ErrorKind::kIntegrity, "XX001", ""},
	    {400, "AuthorizationHeaderMalformed", ErrorKind::kConfig, "22023", "reportstore.region"},
	    {400, "InvalidArgument", ErrorKind::kClient, "58030", ""},
	    {412, "PreconditionFailed", ErrorKind::kExists, "42710", ""},
	    {409, "ConditionalRequestConflict", ErrorKind::kTransient, "58030", "Retry"},
	    {503, "SomethingNew", ErrorKind::kTransient, "58030", ""},
	};
	for (const ErrorCase &c : cases) {
		SCOPED_TRACE(c.code);
		// Real SignatureDoesNotMatch bodies echo the string to sign and the key id.
		const std::string extra = "<AWSAccessKeyId>" + std::string(kAccessKey) +
		                          "</AWSAccessKeyId><StringToSign>AWS4-HMAC-SHA256\n20150830T123600Z</StringToSign>"
		                          "<SignatureProvided>abcdef0123</SignatureProvided>";
		FakeResponse resp = FakeResponse::Status(c.status, ErrorXml(c.code, "Message for " + c.code, extra));
		resp.headers = {{"Content-Type", "application/xml"}};
		server.Enqueue(resp);
		PutRequest req;
		req.bucket = "reports";
		req.key = kReportKey;
		req.body = "body";
		Error e = Capture([&] { client.Put(req, kNever); });
		EXPECT_EQ(e.kind(), c.kind) << ErrorKindName(e.kind());
		EXPECT_EQ(e.sqlstate(), c.sqlstate);
		EXPECT_EQ(std::string(e.what()), std::string("could not upload object \"s3://reports/") + kReportKey + "\"");
		EXPECT_EQ(e.detail(), "S3 error " + c.code + " (HTTP " + std::to_string(c.status) + "): Message for " + c.code +
		                          " (request id REQ123)");
		if (!c.hint_part.empty()) {
			EXPECT_NE(e.hint().find(c.hint_part), std::string::npos) << e.hint();
		}
		EXPECT_EQ(e.detail().find("abcdef0123"), std::string::npos);
	}
}

TEST_F(S3ClientTest, BareStatusCodesAreClassified) {
	const std::vector<ErrorCase> cases = {
	    {500, "", ErrorKind::kTransient, "58030", "Retry"},
	    {502, "", ErrorKind::kTransient, "58030", "Retry"},
	    {503, "", ErrorKind::kTransient, "58030", "Retry"},
	    {403, "", ErrorKind::kSystemic, "42501", "reportstore.access_key_id"},
	    {404, "", ErrorKind::kNotFound, "58P01", ""},
	    {301, "", ErrorKind::kConfig, "22023", "reportstore.endpoint"},
	    {412, "", ErrorKind::kExists, "42710", ""},
	    {400, "", ErrorKind::kClient, "58030", ""},
	};
	for (const ErrorCase &c : cases) {
		SCOPED_TRACE(c.status);
		server.Enqueue(FakeResponse::Status(c.status, c.status == 502 ? "<html>Bad Gateway</html>" : ""));
		std::string got;
		Error e = Capture([&] { client.Get({"reports", kReportKey, ""}, &got, kNever); });
		EXPECT_EQ(e.kind(), c.kind) << ErrorKindName(e.kind());
		EXPECT_EQ(e.sqlstate(), c.sqlstate);
		EXPECT_EQ(std::string(e.what()), std::string("could not download object \"s3://reports/") + kReportKey + "\"");
		EXPECT_NE(e.detail().find("HTTP " + std::to_string(c.status)), std::string::npos) << e.detail();
		if (!c.hint_part.empty()) {
			EXPECT_NE(e.hint().find(c.hint_part), std::string::npos) << e.hint();
		}
	}
}

TEST_F(S3ClientTest, ConnectionRefusedIsSystemic) {
	Client dead(MakeConfig("http://127.0.0.1:" + std::to_string(reportstore::testing::UnusedLoopbackPort())), engine,
	            FixedClock());
	PutRequest req;
	req.bucket = "reports";
	req.key = kReportKey;
	req.body = "x";
	Error e = Capture([&] { dead.Put(req, kNever); });
	EXPECT_EQ(e.kind(), ErrorKind::kSystemic);
	EXPECT_EQ(e.sqlstate(), "08001");
	EXPECT_EQ(e.hint(), "Check reportstore.endpoint and that the S3 server is running.");
}

TEST(S3ErrorFromResponse, TransportFailures) {
	struct Case {
		http::TransportStatus status;
		ErrorKind kind;
		std::string sqlstate;
		std::string hint_part;
	};
	const std::vector<Case> cases = {
	    {http::TransportStatus::kTimeout, ErrorKind::kTransient, "58030", ""},
	    {http::TransportStatus::kConnectFailed, ErrorKind::kSystemic, "08001", "reportstore.endpoint"},
	    {http::TransportStatus::kResolveFailed, ErrorKind::kSystemic, "08001", "reportstore.endpoint"},
	    {http::TransportStatus::kTlsError, ErrorKind::kSystemic, "08001", "reportstore.ca_file"},
	    {http::TransportStatus::kConnectionLost, ErrorKind::kTransient, "58030", ""},
	    {http::TransportStatus::kInterrupted, ErrorKind::kInterrupted, "57014", ""},
	    {http::TransportStatus::kTooLarge, ErrorKind::kClient, "54000", ""},
	    {http::TransportStatus::kOther, ErrorKind::kTransient, "58030", ""},
	    {http::TransportStatus::kNotSent, ErrorKind::kInternal, "XX000", ""},
	};
	for (const Case &c : cases) {
		SCOPED_TRACE(http::TransportStatusName(c.status));
		http::Response resp;
		resp.transport = c.status;
		resp.transport_error = "SSL certificate problem: self-signed certificate\n";
		Error e = ErrorFromResponse(resp, "upload", "reports", "k.json");
		EXPECT_EQ(e.kind(), c.kind);
		EXPECT_EQ(e.sqlstate(), c.sqlstate);
		EXPECT_EQ(std::string(e.what()), "could not upload object \"s3://reports/k.json\"");
		EXPECT_EQ(e.detail().find('\n'), std::string::npos);
		if (!c.hint_part.empty()) {
			EXPECT_NE(e.hint().find(c.hint_part), std::string::npos) << e.hint();
		}
		// Only a server that never answered makes a batch's failures the endpoint's.
		const bool no_answer = c.status == http::TransportStatus::kTimeout ||
		                       c.status == http::TransportStatus::kConnectFailed ||
		                       c.status == http::TransportStatus::kConnectionLost;
		EXPECT_EQ(e.no_answer(), no_answer);
	}
	http::Response answered;
	answered.transport = http::TransportStatus::kOk;
	answered.status = 503;
	EXPECT_FALSE(ErrorFromResponse(answered, "upload", "reports", "k.json").no_answer());
}

} // namespace
} // namespace reportstore::s3
