// Tests of the S3 client against the scripted loopback server, plus an
// optional live round trip against a real S3 server (REPORTSTORE_TEST_S3_*).
#include "core/s3/client.hpp"
#include "core/s3/errors.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>

#include "core/compression.hpp"
#include "core/crypto.hpp"
#include "core/s3/xml.hpp"
#include "core/uri.hpp"
#include "fake_http_server.hpp"

namespace reportstore::s3 {
namespace {

using reportstore::testing::FakeHttpServer;
using reportstore::testing::FakeRequest;
using reportstore::testing::FakeResponse;

constexpr const char *kAccessKey = "AKIDTESTACCESSKEY";
constexpr const char *kSecret = "s3cr3t/K7MDENG+bPxRfiCYSECRETKEY";
constexpr const char *kSessionToken = "SESSIONTOKENVALUE1234";
constexpr std::time_t kNow = 1440938160; // 2015-08-30T12:36:00Z
constexpr const char *kReportKey = "reports/8f2c8d9e-4b7a-4c4e-9d0e-1a2b3c4d5e6f/report.json";

const http::InterruptProbe kNever = [] { return false; };

std::string Hex(std::string_view s) {
	return crypto::HexEncode(crypto::Sha256(s));
}
std::string Md5Hex(std::string_view s) {
	return crypto::HexEncode(crypto::Md5(s));
}

int HexVal(char c) {
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

std::string PercentDecode(std::string_view s) {
	std::string out;
	for (std::size_t i = 0; i < s.size(); ++i) {
		if (s[i] == '%' && i + 2 < s.size() && HexVal(s[i + 1]) >= 0 && HexVal(s[i + 2]) >= 0) {
			out.push_back(static_cast<char>(HexVal(s[i + 1]) * 16 + HexVal(s[i + 2])));
			i += 2;
		} else {
			out.push_back(s[i]);
		}
	}
	return out;
}

std::vector<std::string> Split(const std::string &s, char sep) {
	std::vector<std::string> out;
	std::string cur;
	std::istringstream in(s);
	while (std::getline(in, cur, sep))
		out.push_back(cur);
	return out;
}

// Recomputes the SigV4 Authorization of a received request from what was
// actually sent (Host header, encoded path, query, signed headers): a request
// whose signed view differs from the wire view fails here, as on real S3.
::testing::AssertionResult SignatureMatches(const FakeRequest &req, const std::string &region = "us-east-1") {
	const std::string *auth = req.Header("authorization");
	const std::string *host = req.Header("host");
	const std::string *payload = req.Header("x-amz-content-sha256");
	if (!auth || !host || !payload)
		return ::testing::AssertionFailure() << "missing authorization, host or x-amz-content-sha256";
	const std::size_t sh = auth->find("SignedHeaders=");
	if (sh == std::string::npos)
		return ::testing::AssertionFailure() << "no SignedHeaders";
	const std::string names = auth->substr(sh + 14, auth->find(',', sh) - sh - 14);
	aws::RequestToSign rs;
	rs.method = req.method;
	rs.host = *host;
	rs.path = PercentDecode(req.Path());
	for (const std::string &kv : Split(req.Query(), '&')) {
		if (kv.empty())
			continue;
		const std::size_t eq = kv.find('=');
		rs.query.emplace_back(PercentDecode(kv.substr(0, eq)),
		                      eq == std::string::npos ? "" : PercentDecode(kv.substr(eq + 1)));
	}
	for (const std::string &name : Split(names, ';')) {
		if (name == "host" || name == "x-amz-date" || name == "x-amz-content-sha256" ||
		    name == "x-amz-security-token")
			continue;
		const std::string *v = req.Header(name);
		if (!v)
			return ::testing::AssertionFailure() << "signed header " << name << " was not sent";
		rs.headers.emplace_back(name, *v);
	}
	rs.payload_hash = *payload;
	aws::Credentials creds{kAccessKey, kSecret, req.Header("x-amz-security-token") ? kSessionToken : ""};
	aws::Signer signer(creds, region, "s3", [] { return kNow; });
	for (const auto &h : signer.Sign(rs)) {
		if (h.first == "Authorization") {
			if (h.second == *auth)
				return ::testing::AssertionSuccess();
			return ::testing::AssertionFailure() << "signature mismatch:\n  sent     " << *auth << "\n  expected "
			                                     << h.second;
		}
	}
	return ::testing::AssertionFailure() << "signer returned no Authorization";
}

Config MakeConfig(const std::string &endpoint, UrlStyle style = UrlStyle::kPath) {
	Config c;
	c.endpoint = uri::ParseEndpoint(endpoint);
	c.region = "us-east-1";
	c.url_style = style;
	c.credentials = aws::Credentials{kAccessKey, kSecret, ""};
	c.timeouts.request_ms = 5000;
	c.timeouts.connect_ms = 2000;
	return c;
}

aws::Clock FixedClock() {
	return [] { return kNow; };
}

// Answers PUTs like S3: ETag = MD5 of the received body.
FakeResponse S3PutOk(const FakeRequest &req) {
	FakeResponse r = FakeResponse::Status(200);
	r.headers = {{"ETag", "\"" + Md5Hex(req.body) + "\""}, {"x-amz-version-id", "v-" + std::to_string(req.body.size())}};
	return r;
}

std::string ErrorXml(const std::string &code, const std::string &message, const std::string &extra = "") {
	return "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>" + code + "</Code><Message>" + message +
	       "</Message>" + extra + "<RequestId>REQ123</RequestId><HostId>host-id</HostId></Error>";
}

void ExpectNoSecrets(const Error &e) {
	for (const std::string &text : {std::string(e.what()), e.detail(), e.hint()}) {
		EXPECT_EQ(text.find(kSecret), std::string::npos) << text;
		EXPECT_EQ(text.find(kSessionToken), std::string::npos) << text;
		EXPECT_EQ(text.find("Signature="), std::string::npos) << text;
		EXPECT_EQ(text.find("AWS4-HMAC-SHA256"), std::string::npos) << text;
	}
}

template <typename Fn> Error Capture(Fn &&fn) {
	try {
		fn();
	} catch (const Error &e) {
		ExpectNoSecrets(e);
		return e;
	}
	ADD_FAILURE() << "no reportstore::Error thrown";
	return Error(ErrorKind::kInternal, "XX000", "none");
}

class S3ClientTest : public ::testing::Test {
  protected:
	FakeHttpServer server;
	http::Engine engine;
	Client client{MakeConfig(server.url()), engine, FixedClock()};
};

TEST_F(S3ClientTest, ObjectUrls) {
	EXPECT_EQ(client.ObjectUrl("reports", "a b/c+d.json"), server.url() + "/reports/a%20b/c%2Bd.json");
	Client virt(MakeConfig("https://s3.example.com", UrlStyle::kVirtual), engine, FixedClock());
	EXPECT_EQ(virt.ObjectUrl("reports", "x/y~z.json"), "https://reports.s3.example.com/x/y~z.json");
	Client virt_port(MakeConfig("http://minio.local:9000", UrlStyle::kVirtual), engine, FixedClock());
	EXPECT_EQ(virt_port.ObjectUrl("b1", "k"), "http://b1.minio.local:9000/k");
}

TEST_F(S3ClientTest, PutPathStyleSendsSignedIntegrityHeaders) {
	server.SetHandler(S3PutOk);
	const std::string body = "{\"report\": [1, 2, 3]}";
	PutRequest req;
	req.bucket = "reports";
	req.key = kReportKey;
	req.body = body;
	req.content_encoding = "identity";
	req.storage_class = "STANDARD_IA";
	req.metadata = {{"Report-Id", "8f2c8d9e"}, {"sha256", "forged"}};
	PutResult res = client.Put(req, kNever);
	EXPECT_EQ(res.etag, Md5Hex(body));
	EXPECT_EQ(res.version_id, "v-" + std::to_string(body.size()));
	EXPECT_EQ(res.sha256_hex, Hex(body));
	EXPECT_EQ(res.size, body.size());

	auto reqs = server.Requests();
	ASSERT_EQ(reqs.size(), 1u);
	const FakeRequest &r = reqs[0];
	EXPECT_EQ(r.method, "PUT");
	EXPECT_EQ(r.target, std::string("/reports/") + kReportKey);
	EXPECT_EQ(*r.Header("host"), "127.0.0.1:" + std::to_string(server.port()));
	EXPECT_EQ(r.body, body);
	EXPECT_EQ(*r.Header("content-type"), "application/json");
	EXPECT_EQ(*r.Header("content-md5"), crypto::Base64Encode(std::string_view(
	                                          reinterpret_cast<const char *>(crypto::Md5(body).data()), 16)));
	EXPECT_EQ(*r.Header("x-amz-content-sha256"), Hex(body));
	EXPECT_EQ(*r.Header("x-amz-meta-sha256"), Hex(body)); // the caller's "forged" value is ignored
	EXPECT_EQ(*r.Header("x-amz-meta-report-id"), "8f2c8d9e");
	EXPECT_EQ(*r.Header("content-encoding"), "identity");
	EXPECT_EQ(*r.Header("x-amz-storage-class"), "STANDARD_IA");
	EXPECT_EQ(*r.Header("x-amz-date"), "20150830T123600Z");
	const std::string &auth = *r.Header("authorization");
	EXPECT_EQ(auth.rfind(std::string("AWS4-HMAC-SHA256 Credential=") + kAccessKey +
	                         "/20150830/us-east-1/s3/aws4_request, SignedHeaders=",
	                     0),
	          0u)
	    << auth;
	for (const char *h : {"content-md5", "content-type", "content-encoding", "host", "x-amz-content-sha256",
	                      "x-amz-date", "x-amz-meta-sha256", "x-amz-meta-report-id", "x-amz-storage-class"})
		EXPECT_NE(auth.find(h), std::string::npos) << h << " not signed: " << auth;
	EXPECT_TRUE(SignatureMatches(r));
	EXPECT_EQ(r.Header("expect"), nullptr);
}

TEST_F(S3ClientTest, PutEncodesAwkwardKeysAsSigned) {
	server.SetHandler(S3PutOk);
	const std::string body = "x";
	for (const std::string key : {"reports/a b/ü+=~%.json", "reports/./x/../y//z.json", "reports/q?x=1&y#z"}) {
		PutRequest req;
		req.bucket = "reports";
		req.key = key;
		req.body = body;
		client.Put(req, kNever);
	}
	auto reqs = server.Requests();
	ASSERT_EQ(reqs.size(), 3u);
	EXPECT_EQ(reqs[0].target, "/reports/reports/a%20b/%C3%BC%2B%3D~%25.json");
	EXPECT_EQ(reqs[1].target, "/reports/reports/./x/../y//z.json"); // no dot-segment removal
	EXPECT_EQ(reqs[2].target, "/reports/reports/q%3Fx%3D1%26y%23z");
	for (const auto &r : reqs)
		EXPECT_TRUE(SignatureMatches(r)) << r.target;
}

TEST_F(S3ClientTest, SessionTokenIsSentAndSigned) {
	Config cfg = MakeConfig(server.url());
	cfg.credentials.session_token = kSessionToken;
	Client c(cfg, engine, FixedClock());
	server.SetHandler(S3PutOk);
	PutRequest req;
	req.bucket = "reports";
	req.key = kReportKey;
	req.body = "abc";
	c.Put(req, kNever);
	const FakeRequest r = server.Requests().at(0);
	ASSERT_NE(r.Header("x-amz-security-token"), nullptr);
	EXPECT_EQ(*r.Header("x-amz-security-token"), kSessionToken);
	EXPECT_TRUE(SignatureMatches(r));
}

TEST_F(S3ClientTest, VirtualHostedStyle) {
	// *.localhost resolves to the loopback interface inside libcurl.
	Client virt(MakeConfig("http://localhost:" + std::to_string(server.port()), UrlStyle::kVirtual), engine,
	            FixedClock());
	server.SetHandler(S3PutOk);
	const std::string body = "virtual body";
	PutRequest req;
	req.bucket = "reports";
	req.key = "reports/a b.json";
	req.body = body;
	EXPECT_EQ(virt.ObjectUrl("reports", req.key),
	          "http://reports.localhost:" + std::to_string(server.port()) + "/reports/a%20b.json");
	virt.Put(req, kNever);
	auto reqs = server.Requests();
	ASSERT_EQ(reqs.size(), 1u);
	EXPECT_EQ(reqs[0].target, "/reports/a%20b.json");
	EXPECT_EQ(*reqs[0].Header("host"), "reports.localhost:" + std::to_string(server.port()));
	EXPECT_TRUE(SignatureMatches(reqs[0]));
}

TEST_F(S3ClientTest, PutEtagMismatchIsIntegrityError) {
	server.SetHandler([](const FakeRequest &) {
		FakeResponse r = FakeResponse::Status(200);
		r.headers = {{"ETag", "\"00000000000000000000000000000000\""}};
		return r;
	});
	PutRequest req;
	req.bucket = "reports";
	req.key = kReportKey;
	req.body = "payload";
	Error e = Capture([&] { client.Put(req, kNever); });
	EXPECT_EQ(e.kind(), ErrorKind::kIntegrity);
	EXPECT_EQ(e.sqlstate(), "XX001");
	EXPECT_NE(std::string(e.what()).find(std::string("s3://reports/") + kReportKey), std::string::npos) << e.what();
}

TEST_F(S3ClientTest, PutWithNonMd5EtagVerifiesWithHead) {
	const std::string body = "multipart-like body";
	server.SetHandler([&](const FakeRequest &r) {
		FakeResponse resp = FakeResponse::Status(200);
		if (r.method == "PUT") {
			resp.headers = {{"ETag", "\"0123456789abcdef0123456789abcdef-2\""}, {"x-amz-version-id", "ver1"}};
		} else {
			resp.body = body; // HEAD: only the Content-Length is sent
			resp.headers = {{"x-amz-meta-sha256", Hex(body)}, {"ETag", "\"whatever-2\""}};
		}
		return resp;
	});
	PutRequest req;
	req.bucket = "reports";
	req.key = kReportKey;
	req.body = body;
	PutResult res = client.Put(req, kNever);
	EXPECT_EQ(res.etag, "0123456789abcdef0123456789abcdef-2");
	auto reqs = server.Requests();
	ASSERT_EQ(reqs.size(), 2u);
	EXPECT_EQ(reqs[1].method, "HEAD");
	EXPECT_EQ(reqs[1].Query(), "versionId=ver1");
	EXPECT_TRUE(SignatureMatches(reqs[1]));
}

TEST_F(S3ClientTest, PutWithKmsEtagAndWrongStoredHashIsIntegrityError) {
	const std::string body = "kms body";
	server.SetHandler([&](const FakeRequest &r) {
		FakeResponse resp = FakeResponse::Status(200);
		if (r.method == "PUT") {
			resp.headers = {{"ETag", "\"ffffffffffffffffffffffffffffffff\""},
			                {"x-amz-server-side-encryption", "aws:kms"}};
		} else {
			resp.body = body;
			resp.headers = {{"x-amz-meta-sha256", Hex("something else")}};
		}
		return resp;
	});
	PutRequest req;
	req.bucket = "reports";
	req.key = kReportKey;
	req.body = body;
	Error e = Capture([&] { client.Put(req, kNever); });
	EXPECT_EQ(e.kind(), ErrorKind::kIntegrity);
	EXPECT_EQ(e.sqlstate(), "XX001");
	EXPECT_EQ(server.RequestCount(), 2u);
}

TEST_F(S3ClientTest, GetVerifiesAgainstMetadata) {
	const std::string body = "stored report bytes";
	FakeResponse ok = FakeResponse::Status(200, body);
	ok.headers = {{"x-amz-meta-sha256", Hex(body)},
	              {"ETag", "\"" + Md5Hex(body) + "\""},
	              {"Content-Type", "application/json"},
	              {"x-amz-meta-report-id", "r1"},
	              {"x-amz-version-id", "v7"}};
	server.Enqueue(ok);
	std::string got;
	ObjectInfo info = client.Get({"reports", kReportKey, ""}, &got, kNever);
	EXPECT_EQ(got, body);
	EXPECT_EQ(info.size, body.size());
	EXPECT_EQ(info.etag, Md5Hex(body));
	EXPECT_EQ(info.version_id, "v7");
	EXPECT_EQ(info.content_type, "application/json");
	ASSERT_NE(info.Meta("report-id"), nullptr);
	EXPECT_EQ(*info.Meta("report-id"), "r1");
	const FakeRequest r = server.Requests().at(0);
	EXPECT_EQ(r.method, "GET");
	EXPECT_EQ(*r.Header("x-amz-content-sha256"), crypto::kEmptySha256Hex);
	EXPECT_TRUE(SignatureMatches(r));
}

TEST_F(S3ClientTest, GetCorruptedBodyIsIntegrityError) {
	const std::string body = "stored report bytes";
	FakeResponse bad = FakeResponse::Status(200, "stored rep0rt bytes");
	bad.headers = {{"x-amz-meta-sha256", Hex(body)}};
	server.Enqueue(bad);
	std::string got = "untouched";
	Error e = Capture([&] { client.Get({"reports", kReportKey, ""}, &got, kNever); });
	EXPECT_EQ(e.kind(), ErrorKind::kIntegrity);
	EXPECT_EQ(e.sqlstate(), "XX001");
	EXPECT_NE(std::string(e.what()).find(std::string("s3://reports/") + kReportKey), std::string::npos);
	EXPECT_EQ(got, "untouched"); // the bad bytes are not handed out
}

TEST_F(S3ClientTest, GetChecksExpectedHashAndSize) {
	const std::string body = "abc";
	server.Enqueue(FakeResponse::Status(200, body));
	std::string got;
	client.Get({"reports", kReportKey, "v1"}, &got, kNever, Hex(body), 3);
	EXPECT_EQ(got, body);
	EXPECT_EQ(server.Requests().at(0).Query(), "versionId=v1");
	EXPECT_TRUE(SignatureMatches(server.Requests().at(0)));

	// The caller's hash wins over the metadata.
	FakeResponse lying = FakeResponse::Status(200, "abd");
	lying.headers = {{"x-amz-meta-sha256", Hex("abd")}};
	server.Enqueue(lying);
	Error e1 = Capture([&] { client.Get({"reports", kReportKey, ""}, &got, kNever, Hex(body)); });
	EXPECT_EQ(e1.kind(), ErrorKind::kIntegrity);

	server.Enqueue(FakeResponse::Status(200, "abcd"));
	Error e2 = Capture([&] { client.Get({"reports", kReportKey, ""}, &got, kNever, "", 3); });
	EXPECT_EQ(e2.kind(), ErrorKind::kIntegrity);
}

TEST_F(S3ClientTest, TruncatedGetIsAnError) {
	FakeResponse cut = FakeResponse::Status(200, std::string(50000, 'r'));
	cut.send_body_bytes = 20000;
	server.Enqueue(cut);
	std::string got;
	Error e = Capture([&] { client.Get({"reports", kReportKey, ""}, &got, kNever); });
	EXPECT_EQ(e.kind(), ErrorKind::kTransient);
	EXPECT_EQ(e.sqlstate(), "58030");
	EXPECT_TRUE(got.empty());
}

TEST_F(S3ClientTest, GetContentLengthMismatchWithoutTransportError) {
	// A response whose Content-Length header disagrees with what arrived
	// (the body ends at close, Content-Length advertised smaller).
	FakeResponse odd = FakeResponse::Status(200, "0123456789");
	odd.content_length = false;
	odd.headers = {{"X-Note", "no length"}};
	server.Enqueue(odd);
	std::string got;
	ObjectInfo info = client.Get({"reports", kReportKey, ""}, &got, kNever);
	EXPECT_EQ(got, "0123456789"); // close-delimited, no metadata: accepted
	EXPECT_EQ(info.size, 10u);
}

struct ErrorCase {
	int status;
	std::string code;
	ErrorKind kind;
	std::string sqlstate;
	std::string hint_part;
};

TEST_F(S3ClientTest, XmlErrorBodiesAreClassified) {
	const std::vector<ErrorCase> cases = {
	    {403, "AccessDenied", ErrorKind::kSystemic, "42501", "reportstore.access_key_id"},
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
		EXPECT_EQ(e.detail(), "S3 error " + c.code + " (HTTP " + std::to_string(c.status) + "): Message for " +
		                          c.code + " (request id REQ123)");
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

TEST_F(S3ClientTest, HeadNotFoundAndMetadata) {
	server.Enqueue(FakeResponse::Status(404));
	Error e = Capture([&] { client.Head({"reports", kReportKey, ""}, kNever); });
	EXPECT_EQ(e.kind(), ErrorKind::kNotFound);
	EXPECT_EQ(e.sqlstate(), "58P01");

	FakeResponse ok = FakeResponse::Status(200, std::string(1234, 'x'));
	ok.headers = {{"ETag", "\"abc\""},
	              {"X-Amz-Meta-Sha256", "deadbeef"},
	              {"Content-Encoding", "gzip"},
	              {"Content-Type", "text/csv"}};
	server.Enqueue(ok);
	ObjectInfo info = client.Head({"reports", kReportKey, ""}, kNever);
	EXPECT_EQ(info.size, 1234u);
	EXPECT_EQ(info.etag, "abc");
	EXPECT_EQ(info.content_encoding, "gzip");
	EXPECT_EQ(info.content_type, "text/csv");
	ASSERT_NE(info.Meta(kSha256MetaKey), nullptr);
	EXPECT_EQ(*info.Meta(kSha256MetaKey), "deadbeef");
	EXPECT_EQ(info.Meta("missing"), nullptr);
	EXPECT_TRUE(SignatureMatches(server.Requests().at(1)));
}

TEST_F(S3ClientTest, DeleteToleratesMissingObjects) {
	server.Enqueue(FakeResponse::Status(204));
	server.Enqueue(FakeResponse::Status(200));
	server.Enqueue(FakeResponse::Status(404, ErrorXml("NoSuchKey", "gone")));
	client.Delete({"reports", kReportKey, ""}, kNever);
	client.Delete({"reports", kReportKey, "v3"}, kNever);
	client.Delete({"reports", kReportKey, ""}, kNever);
	auto reqs = server.Requests();
	ASSERT_EQ(reqs.size(), 3u);
	EXPECT_EQ(reqs[0].method, "DELETE");
	EXPECT_EQ(reqs[1].Query(), "versionId=v3");
	for (const auto &r : reqs)
		EXPECT_TRUE(SignatureMatches(r));

	server.Enqueue(FakeResponse::Status(404, ErrorXml("NoSuchBucket", "no bucket")));
	Error e = Capture([&] { client.Delete({"reports", kReportKey, ""}, kNever); });
	EXPECT_EQ(e.sqlstate(), "42704");
	EXPECT_EQ(std::string(e.what()), std::string("could not delete object \"s3://reports/") + kReportKey + "\"");

	server.Enqueue(FakeResponse::Status(403, ErrorXml("AccessDenied", "no")));
	Error e2 = Capture([&] { client.Delete({"reports", kReportKey, ""}, kNever); });
	EXPECT_EQ(e2.sqlstate(), "42501");
}

TEST_F(S3ClientTest, PutManyCollectsPerObjectOutcomes) {
	server.SetHandler([](const FakeRequest &r) {
		if (r.target.find("bad") != std::string::npos)
			return FakeResponse::Status(500, ErrorXml("InternalError", "We encountered an internal error."));
		FakeResponse ok = S3PutOk(r);
		ok.delay_ms = 50;
		return ok;
	});
	std::vector<std::string> bodies;
	std::vector<PutRequest> reqs;
	for (int i = 0; i < 7; ++i)
		bodies.push_back("body number " + std::to_string(i) + std::string(static_cast<std::size_t>(i) * 1000, 'p'));
	for (int i = 0; i < 7; ++i) {
		PutRequest p;
		p.bucket = "reports";
		p.key = i == 3 ? "reports/bad/report.json" : "reports/r" + std::to_string(i) + "/report.json";
		p.body = bodies[static_cast<std::size_t>(i)];
		reqs.push_back(p);
	}
	PutRequest invalid = reqs[0];
	invalid.metadata = {{"bad name", "x"}};
	reqs.push_back(invalid);

	std::vector<PutOutcome> out = client.PutMany(reqs, 3, kNever);
	ASSERT_EQ(out.size(), reqs.size());
	for (std::size_t i = 0; i < 7; ++i) {
		SCOPED_TRACE(i);
		if (i == 3) {
			ASSERT_TRUE(out[i].error.has_value());
			EXPECT_FALSE(out[i].result.has_value());
			EXPECT_EQ(out[i].error->kind(), ErrorKind::kTransient);
			EXPECT_EQ(out[i].error->sqlstate(), "58030");
			ExpectNoSecrets(*out[i].error);
		} else {
			ASSERT_TRUE(out[i].result.has_value());
			EXPECT_FALSE(out[i].error.has_value());
			EXPECT_EQ(out[i].result->etag, Md5Hex(bodies[i]));
			EXPECT_EQ(out[i].result->sha256_hex, Hex(bodies[i]));
			EXPECT_EQ(out[i].result->version_id, "v-" + std::to_string(bodies[i].size()));
		}
	}
	ASSERT_TRUE(out[7].error.has_value()); // invalid metadata name: never sent
	EXPECT_EQ(server.RequestCount(), 7u);
	EXPECT_LE(server.max_in_flight(), 3);
	EXPECT_LE(server.accepted_connections(), 3);
	for (const auto &r : server.Requests()) {
		EXPECT_EQ(*r.Header("x-amz-content-sha256"), Hex(r.body));
		EXPECT_TRUE(SignatureMatches(r));
	}
}

TEST_F(S3ClientTest, ConnectionRefusedIsSystemic) {
	Client dead(MakeConfig("http://127.0.0.1:" + std::to_string(reportstore::testing::UnusedLoopbackPort())),
	            engine, FixedClock());
	PutRequest req;
	req.bucket = "reports";
	req.key = kReportKey;
	req.body = "x";
	Error e = Capture([&] { dead.Put(req, kNever); });
	EXPECT_EQ(e.kind(), ErrorKind::kSystemic);
	EXPECT_EQ(e.sqlstate(), "08001");
	EXPECT_EQ(e.hint(), "Check reportstore.endpoint and that the S3 server is running.");
}

TEST_F(S3ClientTest, InterruptedTransfer) {
	FakeResponse slow = FakeResponse::Status(200, "late");
	slow.delay_ms = 10000;
	server.Enqueue(slow);
	const auto start = std::chrono::steady_clock::now();
	auto probe = [&] { return std::chrono::steady_clock::now() - start > std::chrono::milliseconds(200); };
	std::string got;
	Error e = Capture([&] { client.Get({"reports", kReportKey, ""}, &got, probe); });
	EXPECT_EQ(e.kind(), ErrorKind::kInterrupted);
	EXPECT_EQ(e.sqlstate(), "57014");
	EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
}

TEST_F(S3ClientTest, PresignedGetCanBeFetched) {
	const std::string body = "presigned content";
	server.Enqueue(FakeResponse::Status(200, body));
	const std::string url = client.PresignGet({"reports", "reports/a b.json", ""}, std::chrono::seconds(600));
	EXPECT_EQ(url.rfind(server.url() + "/reports/reports/a%20b.json?", 0), 0u) << url;
	EXPECT_NE(url.find("X-Amz-Signature="), std::string::npos);
	EXPECT_NE(url.find("X-Amz-Expires=600"), std::string::npos);
	EXPECT_EQ(url.find(kSecret), std::string::npos);
	http::Request req;
	req.method = "GET";
	req.url = url;
	http::Response r = engine.PerformOne(req, kNever);
	ASSERT_EQ(r.transport, http::TransportStatus::kOk) << r.transport_error;
	EXPECT_EQ(r.body, body);
	const FakeRequest got = server.Requests().at(0);
	EXPECT_EQ(got.Header("authorization"), nullptr);
	EXPECT_EQ(got.target, url.substr(server.url().size()));
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
	}
}

// ---------------------------------------------------------------------------
// ListObjectsV2

std::string ListXml(const std::vector<std::string> &keys, const std::string &next_token) {
	std::string xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
	                  "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>reports</Name>";
	xml += "<KeyCount>" + std::to_string(keys.size()) + "</KeyCount>";
	xml += std::string("<IsTruncated>") + (next_token.empty() ? "false" : "true") + "</IsTruncated>";
	if (!next_token.empty())
		xml += "<NextContinuationToken>" + next_token + "</NextContinuationToken>";
	for (const std::string &k : keys)
		xml += "<Contents><Key>" + k + "</Key><LastModified>2024-01-02T03:04:05.000Z</LastModified><ETag>&quot;" +
		       Md5Hex(k) + "&quot;</ETag><Size>" + std::to_string(k.size()) +
		       "</Size><StorageClass>STANDARD</StorageClass></Contents>";
	return xml + "</ListBucketResult>";
}

std::string Md5Base64(std::string_view s) {
	const crypto::Md5Digest d = crypto::Md5(s);
	return crypto::Base64Encode(std::string_view(reinterpret_cast<const char *>(d.data()), d.size()));
}

TEST_F(S3ClientTest, ListSendsSignedListObjectsV2) {
	server.Enqueue(FakeResponse::Status(200, ListXml({"reports/a b/1.json", "reports/a b/2.json"}, "tok/2+=")));
	const ListPage page = client.List("reports", "reports/a b/", "tok/1+=", 2, kNever);
	ASSERT_EQ(page.objects.size(), 2u);
	EXPECT_EQ(page.objects[0].key, "reports/a b/1.json");
	EXPECT_EQ(page.objects[0].size, 18u);
	EXPECT_EQ(page.objects[0].etag, Md5Hex("reports/a b/1.json"));
	EXPECT_EQ(page.objects[0].last_modified, "2024-01-02T03:04:05.000Z");
	EXPECT_EQ(page.objects[1].key, "reports/a b/2.json");
	EXPECT_TRUE(page.is_truncated);
	EXPECT_EQ(page.next_continuation_token, "tok/2+=");

	const FakeRequest r = server.Requests().at(0);
	EXPECT_EQ(r.method, "GET");
	EXPECT_EQ(r.target,
	          "/reports?list-type=2&prefix=reports%2Fa%20b%2F&max-keys=2&continuation-token=tok%2F1%2B%3D");
	EXPECT_EQ(*r.Header("host"), "127.0.0.1:" + std::to_string(server.port()));
	EXPECT_EQ(*r.Header("x-amz-content-sha256"), crypto::kEmptySha256Hex);
	EXPECT_TRUE(r.body.empty());
	EXPECT_TRUE(SignatureMatches(r));
}

TEST_F(S3ClientTest, ListOmitsEmptyParameters) {
	server.Enqueue(FakeResponse::Status(200, ListXml({}, "")));
	const ListPage page = client.List("reports", "", "", 0, kNever);
	EXPECT_TRUE(page.objects.empty());
	EXPECT_FALSE(page.is_truncated);
	const FakeRequest r = server.Requests().at(0);
	EXPECT_EQ(r.target, "/reports?list-type=2");
	EXPECT_TRUE(SignatureMatches(r));
}

TEST_F(S3ClientTest, ListVirtualHosted) {
	Client virt(MakeConfig("http://localhost:" + std::to_string(server.port()), UrlStyle::kVirtual), engine,
	            FixedClock());
	server.Enqueue(FakeResponse::Status(200, ListXml({"p/x"}, "")));
	const ListPage page = virt.List("reports", "p/", "", 1000, kNever);
	ASSERT_EQ(page.objects.size(), 1u);
	const FakeRequest r = server.Requests().at(0);
	EXPECT_EQ(r.target, "/?list-type=2&prefix=p%2F&max-keys=1000");
	EXPECT_EQ(*r.Header("host"), "reports.localhost:" + std::to_string(server.port()));
	EXPECT_TRUE(SignatureMatches(r));
}

TEST_F(S3ClientTest, ListPaginatesWithContinuationTokens) {
	// Emulates S3: 5 objects, pages of max-keys, opaque tokens.
	const std::vector<std::string> all = {"r/1", "r/2", "r/3", "r/4", "r/5"};
	server.SetHandler([&](const FakeRequest &req) {
		std::size_t start = 0, max = 1000;
		for (const std::string &kv : Split(req.Query(), '&')) {
			if (kv.rfind("continuation-token=", 0) == 0)
				start = static_cast<std::size_t>(std::stoul(PercentDecode(kv.substr(19)).substr(4)));
			if (kv.rfind("max-keys=", 0) == 0)
				max = static_cast<std::size_t>(std::stoul(kv.substr(9)));
		}
		std::vector<std::string> keys(all.begin() + static_cast<long>(start),
		                              all.begin() + static_cast<long>(std::min(all.size(), start + max)));
		const std::size_t next = start + keys.size();
		return FakeResponse::Status(200, ListXml(keys, next < all.size() ? "tok=" + std::to_string(next) : ""));
	});
	std::vector<std::string> seen;
	std::string token;
	int pages = 0;
	do {
		const ListPage page = client.List("reports", "r/", token, 2, kNever);
		for (const auto &o : page.objects)
			seen.push_back(o.key);
		token = page.next_continuation_token;
		++pages;
		ASSERT_LT(pages, 10);
	} while (!token.empty());
	EXPECT_EQ(pages, 3);
	EXPECT_EQ(seen, all);
	const auto reqs = server.Requests();
	ASSERT_EQ(reqs.size(), 3u);
	EXPECT_EQ(reqs[0].target, "/reports?list-type=2&prefix=r%2F&max-keys=2");
	EXPECT_EQ(reqs[1].target, "/reports?list-type=2&prefix=r%2F&max-keys=2&continuation-token=tok%3D2");
	EXPECT_EQ(reqs[2].target, "/reports?list-type=2&prefix=r%2F&max-keys=2&continuation-token=tok%3D4");
	for (const auto &r : reqs)
		EXPECT_TRUE(SignatureMatches(r));
}

TEST_F(S3ClientTest, ListErrors) {
	server.Enqueue(FakeResponse::Status(404, ErrorXml("NoSuchBucket", "The specified bucket does not exist")));
	Error e1 = Capture([&] { client.List("reports", "reports/", "", 0, kNever); });
	EXPECT_EQ(e1.kind(), ErrorKind::kSystemic);
	EXPECT_EQ(e1.sqlstate(), "42704");
	EXPECT_EQ(std::string(e1.what()), "could not list objects under \"s3://reports/reports/\"");
	EXPECT_EQ(e1.detail(), "S3 error NoSuchBucket (HTTP 404): The specified bucket does not exist (request id REQ123)");

	server.Enqueue(FakeResponse::Status(403, ErrorXml("AccessDenied", "Access Denied")));
	Error e2 = Capture([&] { client.List("reports", "", "", 0, kNever); });
	EXPECT_EQ(e2.sqlstate(), "42501");
	EXPECT_NE(e2.hint().find("s3:ListBucket"), std::string::npos) << e2.hint();

	server.Enqueue(FakeResponse::Status(503));
	Error e3 = Capture([&] { client.List("reports", "", "", 0, kNever); });
	EXPECT_EQ(e3.kind(), ErrorKind::kTransient);

	server.Enqueue(FakeResponse::Status(200, "<html>captive portal</html>"));
	Error e4 = Capture([&] { client.List("reports", "", "", 0, kNever); });
	EXPECT_EQ(e4.kind(), ErrorKind::kProtocol);
	EXPECT_EQ(e4.sqlstate(), "08P01");
	EXPECT_EQ(e4.hint().find("Retry"), std::string::npos) << e4.hint();
	EXPECT_EQ(std::string(e4.what()), "could not parse S3 ListObjectsV2 response");

	const std::size_t sent = server.RequestCount();
	Error e5 = Capture([&] { client.List("", "", "", 0, kNever); });
	EXPECT_EQ(e5.kind(), ErrorKind::kConfig);
	EXPECT_EQ(e5.sqlstate(), "22023");
	EXPECT_EQ(server.RequestCount(), sent);
}

// ---------------------------------------------------------------------------
// Bucket lifecycle

TEST_F(S3ClientTest, GetBucketLifecycleReturnsTheXml) {
	const std::string xml = "<LifecycleConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Rule><ID>r1"
	                        "</ID><Filter><Prefix>reports/</Prefix></Filter><Status>Enabled</Status><Expiration>"
	                        "<Days>30</Days></Expiration></Rule></LifecycleConfiguration>";
	server.Enqueue(FakeResponse::Status(200, xml));
	EXPECT_EQ(client.GetBucketLifecycle("reports", kNever), xml);
	const FakeRequest r = server.Requests().at(0);
	EXPECT_EQ(r.method, "GET");
	EXPECT_EQ(r.target, "/reports?lifecycle");
	EXPECT_EQ(*r.Header("x-amz-content-sha256"), crypto::kEmptySha256Hex);
	EXPECT_TRUE(SignatureMatches(r));
	const auto rules = ParseLifecycleRules(xml);
	ASSERT_EQ(rules.size(), 1u);
	EXPECT_EQ(rules[0].expiration_days, 30);

	// None configured.
	server.Enqueue(FakeResponse::Status(
	    404, ErrorXml("NoSuchLifecycleConfiguration", "The lifecycle configuration does not exist",
	                  "<BucketName>reports</BucketName>")));
	EXPECT_EQ(client.GetBucketLifecycle("reports", kNever), "");

	Client virt(MakeConfig("http://localhost:" + std::to_string(server.port()), UrlStyle::kVirtual), engine,
	            FixedClock());
	server.Enqueue(FakeResponse::Status(200, xml));
	EXPECT_EQ(virt.GetBucketLifecycle("reports", kNever), xml);
	const FakeRequest v = server.Requests().at(2);
	EXPECT_EQ(v.target, "/?lifecycle");
	EXPECT_EQ(*v.Header("host"), "reports.localhost:" + std::to_string(server.port()));
	EXPECT_TRUE(SignatureMatches(v));
}

TEST_F(S3ClientTest, GetBucketLifecycleErrors) {
	server.Enqueue(FakeResponse::Status(404, ErrorXml("NoSuchBucket", "no bucket")));
	Error e1 = Capture([&] { client.GetBucketLifecycle("reports", kNever); });
	EXPECT_EQ(e1.kind(), ErrorKind::kSystemic);
	EXPECT_EQ(e1.sqlstate(), "42704");
	EXPECT_EQ(std::string(e1.what()), "could not read the lifecycle configuration of bucket \"reports\"");

	server.Enqueue(FakeResponse::Status(404)); // no S3 error document: not "no configuration"
	Error e2 = Capture([&] { client.GetBucketLifecycle("reports", kNever); });
	EXPECT_EQ(e2.kind(), ErrorKind::kNotFound);

	server.Enqueue(FakeResponse::Status(403, ErrorXml("AccessDenied", "Access Denied")));
	Error e3 = Capture([&] { client.GetBucketLifecycle("reports", kNever); });
	EXPECT_EQ(e3.sqlstate(), "42501");
	EXPECT_NE(e3.hint().find("s3:GetLifecycleConfiguration"), std::string::npos) << e3.hint();

	server.Enqueue(FakeResponse::Status(500, ErrorXml("InternalError", "oops")));
	Error e4 = Capture([&] { client.GetBucketLifecycle("reports", kNever); });
	EXPECT_EQ(e4.kind(), ErrorKind::kTransient);
}

TEST_F(S3ClientTest, PutBucketLifecycleExpirySendsOneRule) {
	server.Enqueue(FakeResponse::Status(200));
	client.PutBucketLifecycleExpiry("reports", "reports/", 30, "reportstore-expiry", kNever);
	const FakeRequest r = server.Requests().at(0);
	const std::string expected =
	    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
	    "<LifecycleConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Rule><ID>reportstore-expiry</ID>"
	    "<Filter><Prefix>reports/</Prefix></Filter><Status>Enabled</Status><Expiration><Days>30</Days></Expiration>"
	    "</Rule></LifecycleConfiguration>";
	EXPECT_EQ(r.method, "PUT");
	EXPECT_EQ(r.target, "/reports?lifecycle");
	EXPECT_EQ(r.body, expected);
	EXPECT_EQ(Client::LifecycleExpiryXml("reports/", 30, "reportstore-expiry"), expected);
	EXPECT_EQ(*r.Header("content-type"), "application/xml");
	EXPECT_EQ(*r.Header("content-md5"), Md5Base64(expected));
	EXPECT_EQ(*r.Header("x-amz-content-sha256"), Hex(expected));
	const std::string &auth = *r.Header("authorization");
	for (const char *h : {"content-md5", "content-type", "host", "x-amz-content-sha256", "x-amz-date"})
		EXPECT_NE(auth.find(h), std::string::npos) << h << " not signed: " << auth;
	EXPECT_TRUE(SignatureMatches(r));

	const auto rules = ParseLifecycleRules(r.body);
	ASSERT_EQ(rules.size(), 1u);
	EXPECT_EQ(rules[0].id, "reportstore-expiry");
	EXPECT_EQ(rules[0].prefix, "reports/");
	EXPECT_EQ(rules[0].status, "Enabled");
	EXPECT_EQ(rules[0].expiration_days, 30);
}

TEST_F(S3ClientTest, PutBucketLifecycleExpiryEscapesAndVirtualHost) {
	Client virt(MakeConfig("http://localhost:" + std::to_string(server.port()), UrlStyle::kVirtual), engine,
	            FixedClock());
	server.Enqueue(FakeResponse::Status(200));
	virt.PutBucketLifecycleExpiry("reports", "a&b <c> \"d\" 'e'/", 1, "id & <x>", kNever);
	const FakeRequest r = server.Requests().at(0);
	EXPECT_EQ(r.target, "/?lifecycle");
	EXPECT_EQ(*r.Header("host"), "reports.localhost:" + std::to_string(server.port()));
	EXPECT_NE(r.body.find("<ID>id &amp; &lt;x&gt;</ID>"), std::string::npos) << r.body;
	EXPECT_NE(r.body.find("<Prefix>a&amp;b &lt;c&gt; &quot;d&quot; &apos;e&apos;/</Prefix>"), std::string::npos)
	    << r.body;
	EXPECT_TRUE(SignatureMatches(r));
	const auto rules = ParseLifecycleRules(r.body);
	ASSERT_EQ(rules.size(), 1u);
	EXPECT_EQ(rules[0].id, "id & <x>");
	EXPECT_EQ(rules[0].prefix, "a&b <c> \"d\" 'e'/");
	EXPECT_EQ(rules[0].expiration_days, 1);

	// An empty prefix is the whole bucket.
	EXPECT_NE(Client::LifecycleExpiryXml("", 9, "all").find("<Filter><Prefix></Prefix></Filter>"), std::string::npos);
}

TEST_F(S3ClientTest, PutBucketLifecycleExpiryErrors) {
	struct Bad {
		std::string bucket, prefix, id;
		int days;
	};
	for (const Bad &b : std::vector<Bad>{{"reports", "p/", "id", 0},
	                                     {"reports", "p/", "id", -5},
	                                     {"reports", "p/", "", 1},
	                                     {"reports", "p/", std::string(256, 'i'), 1},
	                                     {"reports", std::string("p\x01/"), "id", 1},
	                                     {"reports", std::string(1025, 'p'), "id", 1},
	                                     {"reports", "p/", std::string("i\x7f"), 1},
	                                     {"", "p/", "id", 1}}) {
		SCOPED_TRACE(b.id + " " + std::to_string(b.days));
		Error e = Capture([&] { client.PutBucketLifecycleExpiry(b.bucket, b.prefix, b.days, b.id, kNever); });
		EXPECT_EQ(e.kind(), ErrorKind::kConfig);
		EXPECT_EQ(e.sqlstate(), "22023");
	}
	EXPECT_EQ(server.RequestCount(), 0u);

	server.Enqueue(FakeResponse::Status(400, ErrorXml("MalformedXML", "The XML you provided was not well-formed")));
	Error e1 = Capture([&] { client.PutBucketLifecycleExpiry("reports", "p/", 3, "id", kNever); });
	EXPECT_EQ(e1.kind(), ErrorKind::kClient);
	EXPECT_EQ(std::string(e1.what()), "could not set the lifecycle configuration of bucket \"reports\"");
	EXPECT_NE(e1.detail().find("MalformedXML"), std::string::npos);

	server.Enqueue(FakeResponse::Status(403, ErrorXml("AccessDenied", "Access Denied")));
	Error e2 = Capture([&] { client.PutBucketLifecycleExpiry("reports", "p/", 3, "id", kNever); });
	EXPECT_EQ(e2.sqlstate(), "42501");
	EXPECT_NE(e2.hint().find("s3:PutLifecycleConfiguration"), std::string::npos) << e2.hint();

	server.Enqueue(FakeResponse::Status(400, ErrorXml("InvalidDigest", "bad md5")));
	Error e3 = Capture([&] { client.PutBucketLifecycleExpiry("reports", "p/", 3, "id", kNever); });
	EXPECT_EQ(e3.kind(), ErrorKind::kIntegrity);
}

// ---------------------------------------------------------------------------
// Server-side encryption and storage class

TEST_F(S3ClientTest, PutSendsSignedSseAndStorageClass) {
	server.SetHandler([](const FakeRequest &r) {
		FakeResponse resp = S3PutOk(r);
		resp.headers.emplace_back("x-amz-server-side-encryption", "AES256"); // SSE-S3: the ETag is the MD5
		return resp;
	});
	const std::string body = "encrypted at rest";
	PutRequest req;
	req.bucket = "reports";
	req.key = kReportKey;
	req.body = body;
	req.sse = "AES256";
	req.storage_class = "GLACIER_IR";
	PutResult res = client.Put(req, kNever);
	EXPECT_EQ(res.etag, Md5Hex(body));
	ASSERT_EQ(server.RequestCount(), 1u); // no HEAD needed
	const FakeRequest r = server.Requests().at(0);
	EXPECT_EQ(*r.Header("x-amz-server-side-encryption"), "AES256");
	EXPECT_EQ(*r.Header("x-amz-storage-class"), "GLACIER_IR");
	EXPECT_EQ(r.Header("x-amz-server-side-encryption-aws-kms-key-id"), nullptr);
	const std::string &auth = *r.Header("authorization");
	EXPECT_NE(auth.find("x-amz-server-side-encryption;"), std::string::npos) << auth;
	EXPECT_NE(auth.find("x-amz-storage-class"), std::string::npos) << auth;
	EXPECT_TRUE(SignatureMatches(r));
}

TEST_F(S3ClientTest, PutWithSseKmsVerifiesWithHead) {
	const std::string body = "kms encrypted report";
	const std::string key_arn = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
	server.SetHandler([&](const FakeRequest &r) {
		FakeResponse resp = FakeResponse::Status(200);
		if (r.method == "PUT") {
			// An SSE-KMS ETag looks like an MD5 but is not the body's.
			resp.headers = {{"ETag", "\"9b2cf535f27731c974343645a3985328\""},
			                {"x-amz-server-side-encryption", "aws:kms"},
			                {"x-amz-server-side-encryption-aws-kms-key-id", key_arn},
			                {"x-amz-version-id", "kv1"}};
		} else {
			resp.body = body;
			resp.headers = {{"x-amz-meta-sha256", Hex(body)}, {"ETag", "\"9b2cf535f27731c974343645a3985328\""}};
		}
		return resp;
	});
	PutRequest req;
	req.bucket = "reports";
	req.key = kReportKey;
	req.body = body;
	req.sse = "aws:kms";
	req.sse_kms_key_id = key_arn;
	req.storage_class = "STANDARD";
	PutResult res = client.Put(req, kNever);
	EXPECT_EQ(res.etag, "9b2cf535f27731c974343645a3985328");
	EXPECT_EQ(res.version_id, "kv1");
	EXPECT_EQ(res.sha256_hex, Hex(body));
	const auto reqs = server.Requests();
	ASSERT_EQ(reqs.size(), 2u);
	EXPECT_EQ(*reqs[0].Header("x-amz-server-side-encryption"), "aws:kms");
	EXPECT_EQ(*reqs[0].Header("x-amz-server-side-encryption-aws-kms-key-id"), key_arn);
	EXPECT_EQ(*reqs[0].Header("x-amz-storage-class"), "STANDARD");
	const std::string &auth = *reqs[0].Header("authorization");
	EXPECT_NE(auth.find("x-amz-server-side-encryption-aws-kms-key-id"), std::string::npos) << auth;
	EXPECT_TRUE(SignatureMatches(reqs[0]));
	EXPECT_EQ(reqs[1].method, "HEAD");
	EXPECT_EQ(reqs[1].target, std::string("/reports/") + kReportKey + "?versionId=kv1");
	EXPECT_TRUE(SignatureMatches(reqs[1]));
}

TEST_F(S3ClientTest, PutWithSseKmsVerifiesWithHeadEvenWithoutEcho) {
	// A server that does not echo x-amz-server-side-encryption: the request's
	// aws:kms still means the ETag cannot be compared with the MD5.
	const std::string body = "kms body, no echo";
	server.SetHandler([&](const FakeRequest &r) {
		FakeResponse resp = FakeResponse::Status(200);
		if (r.method == "PUT") {
			resp.headers = {{"ETag", "\"00112233445566778899aabbccddeeff\""}};
		} else {
			resp.body = std::string(body.size() + 1, 'x'); // wrong size stored
			resp.headers = {{"x-amz-meta-sha256", Hex(body)}};
		}
		return resp;
	});
	PutRequest req;
	req.bucket = "reports";
	req.key = kReportKey;
	req.body = body;
	req.sse = "aws:kms";
	Error e = Capture([&] { client.Put(req, kNever); });
	EXPECT_EQ(e.kind(), ErrorKind::kIntegrity);
	EXPECT_NE(e.detail().find("18 bytes, 17 were sent"), std::string::npos) << e.detail();
	EXPECT_EQ(server.RequestCount(), 2u);
	EXPECT_EQ(server.Requests().at(0).Header("x-amz-server-side-encryption-aws-kms-key-id"), nullptr);
}

TEST_F(S3ClientTest, PutRejectsInvalidSseAndStorageClass) {
	server.SetHandler(S3PutOk);
	struct Bad {
		std::string sse, kms, storage_class;
	};
	for (const Bad &b : std::vector<Bad>{{"aes256", "", ""},
	                                     {"aws:kms:dsse", "", ""},
	                                     {"AES-256", "", ""},
	                                     {"", "key-1", ""},
	                                     {"AES256", "key-1", ""},
	                                     {"aws:kms", "key with space", ""},
	                                     {"aws:kms", std::string("key\nx-evil: 1"), ""},
	                                     {"", "", "STANDARD IA"},
	                                     {"", "", "STANDARD\r\nx-evil: 1"},
	                                     {"", "", std::string(65, 'S')}}) {
		SCOPED_TRACE(b.sse + "|" + b.kms + "|" + b.storage_class);
		PutRequest req;
		req.bucket = "reports";
		req.key = kReportKey;
		req.body = "x";
		req.sse = b.sse;
		req.sse_kms_key_id = b.kms;
		req.storage_class = b.storage_class;
		Error e = Capture([&] { client.Put(req, kNever); });
		EXPECT_EQ(e.kind(), ErrorKind::kConfig);
		EXPECT_EQ(e.sqlstate(), "22023");
		EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos);
	}
	EXPECT_EQ(server.RequestCount(), 0u);

	// In a batch the invalid request fails alone.
	PutRequest good;
	good.bucket = "reports";
	good.key = kReportKey;
	good.body = "good";
	good.sse = "aws:kms"; // no key id: the bucket's default KMS key
	PutRequest bad = good;
	bad.sse = "SSE-C";
	server.SetHandler([](const FakeRequest &r) {
		if (r.method == "HEAD") {
			FakeResponse h = FakeResponse::Status(200, "good");
			h.headers = {{"x-amz-meta-sha256", Hex("good")}};
			return h;
		}
		FakeResponse resp = FakeResponse::Status(200);
		resp.headers = {{"ETag", "\"ffffffffffffffffffffffffffffffff\""}, {"x-amz-server-side-encryption", "aws:kms"}};
		return resp;
	});
	auto out = client.PutMany({good, bad}, 2, kNever);
	ASSERT_TRUE(out[0].result.has_value()) << (out[0].error ? out[0].error->detail() : "");
	ASSERT_TRUE(out[1].error.has_value());
	EXPECT_EQ(out[1].error->sqlstate(), "22023");
	EXPECT_EQ(server.RequestCount(), 2u); // PUT + HEAD of the good one
}

TEST_F(S3ClientTest, GetReturnsStoredBytesAndContentEncoding) {
	const std::string plain = "{\"rows\": [1, 2, 3], \"note\": \"compressed at rest\"}";
	const std::string stored = compression::Compress(compression::Codec::kGzip, plain);
	FakeResponse ok = FakeResponse::Status(200, stored);
	ok.headers = {{"Content-Encoding", "gzip"},
	              {"Content-Type", "application/json"},
	              {"x-amz-meta-sha256", Hex(stored)}};
	server.Enqueue(ok);
	std::string got;
	ObjectInfo info = client.Get({"reports", kReportKey, ""}, &got, kNever, "", static_cast<std::int64_t>(stored.size()));
	EXPECT_TRUE(got == stored); // not decoded: the checksum covers the stored bytes
	EXPECT_EQ(info.content_encoding, "gzip");
	EXPECT_EQ(info.content_type, "application/json");
	EXPECT_EQ(info.size, stored.size());
	EXPECT_EQ(server.Requests().at(0).Header("accept-encoding"), nullptr);
	const compression::Codec codec = compression::CodecFromContentEncoding(info.content_encoding);
	EXPECT_EQ(compression::Decompress(codec, got, 1u << 20), plain);

	FakeResponse zs = FakeResponse::Status(200, compression::Compress(compression::Codec::kZstd, plain));
	zs.headers = {{"Content-Encoding", "zstd"}};
	server.Enqueue(zs);
	info = client.Get({"reports", kReportKey, ""}, &got, kNever);
	EXPECT_EQ(info.content_encoding, "zstd");
	EXPECT_EQ(compression::Decompress(compression::CodecFromContentEncoding(info.content_encoding), got, 1u << 20),
	          plain);
}

// ---------------------------------------------------------------------------
// Multipart uploads.

std::map<std::string, std::string> QueryMap(const FakeRequest &r) {
	std::map<std::string, std::string> m;
	for (const std::string &kv : Split(r.Query(), '&')) {
		const std::size_t eq = kv.find('=');
		m[PercentDecode(kv.substr(0, eq))] = eq == std::string::npos ? "" : PercentDecode(kv.substr(eq + 1));
	}
	return m;
}

std::string Md5Bytes(std::string_view s) {
	const auto d = crypto::Md5(s);
	return std::string(reinterpret_cast<const char *>(d.data()), d.size());
}

// S3's multipart ETag computed independently of the client.
std::string ExpectedMultipartEtag(const std::vector<std::string_view> &parts) {
	std::string cat;
	for (std::string_view p : parts)
		cat += Md5Bytes(p);
	return Md5Hex(cat) + "-" + std::to_string(parts.size());
}

std::string PseudoRandom(std::size_t n, unsigned seed = 1) {
	std::string s(n, '\0');
	std::uint32_t x = 2463534242u ^ seed;
	for (std::size_t i = 0; i < n; ++i) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		s[i] = static_cast<char>(x >> 24);
	}
	return s;
}

constexpr const char *kUploadId = "upl/1+x=y~ 2"; // must be encoded (and signed) in the query

// A fake S3 that speaks multipart: parts' ETags are their MD5s, the completed
// object's ETag is computed like S3's, HEAD reports what was uploaded. `tweak`
// may replace any answer. Safe to call from the server's threads.
struct FakeMultipartS3 {
	std::mutex mu;
	std::map<int, std::string> parts; // number -> bytes
	std::string meta_sha256;
	int part_delay_ms = 150;
	std::function<std::optional<FakeResponse>(const FakeRequest &)> tweak;

	FakeResponse operator()(const FakeRequest &r) {
		if (tweak) {
			if (std::optional<FakeResponse> t = tweak(r))
				return *t;
		}
		std::lock_guard<std::mutex> lock(mu);
		const auto q = QueryMap(r);
		if (r.method == "POST" && q.count("uploads")) {
			meta_sha256 = r.Header("x-amz-meta-sha256") ? *r.Header("x-amz-meta-sha256") : "";
			return FakeResponse::Status(
			    200, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<InitiateMultipartUploadResult "
			         "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Bucket>reports</Bucket><Key>k</Key>"
			         "<UploadId>upl/1+x=y~ 2</UploadId></InitiateMultipartUploadResult>");
		}
		if (r.method == "PUT" && q.count("partNumber")) {
			parts[std::stoi(q.at("partNumber"))] = r.body;
			FakeResponse resp = FakeResponse::Status(200);
			resp.headers = {{"ETag", "\"" + Md5Hex(r.body) + "\""}};
			resp.delay_ms = part_delay_ms;
			return resp;
		}
		if (r.method == "POST" && q.count("uploadId")) {
			FakeResponse resp = FakeResponse::Status(
			    200, "\n  \n<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CompleteMultipartUploadResult "
			         "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Location>x</Location>"
			         "<Bucket>reports</Bucket><Key>k</Key><ETag>&quot;" +
			             Etag() + "&quot;</ETag></CompleteMultipartUploadResult>");
			resp.headers = {{"x-amz-version-id", "mpv1"}};
			return resp;
		}
		if (r.method == "HEAD") {
			std::size_t size = 0;
			for (const auto &p : parts)
				size += p.second.size();
			FakeResponse resp = FakeResponse::Status(200);
			resp.headers = {{"Content-Length", std::to_string(size)},
			                {"ETag", "\"" + Etag() + "\""},
			                {"x-amz-meta-sha256", meta_sha256}};
			return resp;
		}
		if (r.method == "DELETE" && q.count("uploadId"))
			return FakeResponse::Status(204);
		return FakeResponse::Status(400, ErrorXml("InvalidRequest", "unexpected request"));
	}

	std::string Etag() const { // with mu held
		std::vector<std::string_view> views;
		for (const auto &p : parts)
			views.push_back(p.second);
		return ExpectedMultipartEtag(views);
	}
};

class S3MultipartTest : public ::testing::Test {
  protected:
	static Config SmallParts(const std::string &url) {
		Config c = MakeConfig(url);
		c.multipart_threshold = 6u << 20;
		c.part_size = 5u << 20;
		c.part_concurrency = 3;
		return c;
	}
	PutRequest Request(std::string_view body, const std::string &key = kReportKey) const {
		PutRequest req;
		req.bucket = "reports";
		req.key = key;
		req.body = body;
		return req;
	}
	std::vector<std::string> Methods() const {
		std::vector<std::string> out;
		for (const auto &r : server.Requests())
			out.push_back(r.method + " " + r.Query());
		return out;
	}
	bool AbortSent() const {
		const auto reqs = server.Requests();
		return !reqs.empty() && reqs.back().method == "DELETE" &&
		       reqs.back().Query() == "uploadId=" + uri::UriEncode(kUploadId, true) &&
		       reqs.back().Path() == std::string("/reports/") + kReportKey && SignatureMatches(reqs.back());
	}

	FakeHttpServer server;
	FakeMultipartS3 s3;
	http::Engine engine;
	Client client{SmallParts(server.url()), engine, FixedClock()};
	const std::string body = PseudoRandom(12u << 20);
};

TEST_F(S3MultipartTest, ConfigDefaults) {
	const Config c;
	EXPECT_EQ(c.multipart_threshold, 64u << 20);
	EXPECT_EQ(c.part_size, 16u << 20);
	EXPECT_EQ(c.part_concurrency, 4);
	Client defaults(MakeConfig(server.url()), engine, FixedClock());
	EXPECT_EQ(defaults.PartSizeFor(100u << 20), 16u << 20);
	Config tiny = MakeConfig(server.url());
	tiny.part_size = 1024;
	Client small(tiny, engine, FixedClock());
	EXPECT_EQ(small.PartSizeFor(12u << 20), kMinPartSize); // S3's minimum
	// At most 10,000 parts: 100 GiB in 5 MiB parts would be 20,480.
	const std::uint64_t huge = 100ull << 30;
	EXPECT_EQ(small.PartSizeFor(huge), (huge + 9999) / 10000);
	EXPECT_EQ(Client::MultipartEtag({Md5Hex("a"), Md5Hex("b")}), ExpectedMultipartEtag({"a", "b"}));
	// One part: MD5 of the part's binary MD5.
	EXPECT_EQ(Client::MultipartEtag({Md5Hex("abc")}), Md5Hex(Md5Bytes("abc")) + "-1");
}

TEST_F(S3MultipartTest, BodyAtTheThresholdIsASinglePut) {
	server.SetHandler(S3PutOk);
	const std::string_view at = std::string_view(body).substr(0, 6u << 20);
	PutResult res = client.Put(Request(at), kNever);
	EXPECT_EQ(res.etag, Md5Hex(at));
	ASSERT_EQ(server.RequestCount(), 1u);
	EXPECT_EQ(server.Requests()[0].method, "PUT");
	EXPECT_EQ(server.Requests()[0].Query(), "");
}

TEST_F(S3MultipartTest, PutSendsCreatePartsCompleteAndVerifies) {
	s3.part_delay_ms = 300;
	server.SetHandler(std::ref(s3));
	PutRequest req = Request(body);
	req.content_type = "application/x-ndjson";
	req.content_encoding = "gzip";
	req.storage_class = "STANDARD_IA";
	req.sse = "AES256";
	req.metadata = {{"Report-Id", "r-42"}, {"sha256", "forged"}};
	const auto start = std::chrono::steady_clock::now();
	PutResult res = client.Put(req, kNever);
	const auto elapsed = std::chrono::steady_clock::now() - start;

	const std::string_view b = body;
	const std::vector<std::string_view> slices = {b.substr(0, 5u << 20), b.substr(5u << 20, 5u << 20),
	                                              b.substr(10u << 20)};
	EXPECT_EQ(res.etag, ExpectedMultipartEtag(slices));
	EXPECT_EQ(res.etag.substr(res.etag.size() - 2), "-3");
	EXPECT_EQ(res.version_id, "mpv1");
	EXPECT_EQ(res.sha256_hex, Hex(body));
	EXPECT_EQ(res.size, body.size());
	EXPECT_GT(res.seconds, 0.0);

	const auto reqs = server.Requests();
	ASSERT_EQ(reqs.size(), 6u) << ::testing::PrintToString(Methods());
	const std::string path = std::string("/reports/") + kReportKey;
	const std::string id = uri::UriEncode(kUploadId, true);
	EXPECT_EQ(id, "upl%2F1%2Bx%3Dy~%202");
	for (const auto &r : reqs) {
		SCOPED_TRACE(r.method + " " + r.target);
		EXPECT_EQ(r.Path(), path);
		EXPECT_TRUE(SignatureMatches(r));
		ASSERT_NE(r.Header("x-amz-content-sha256"), nullptr);
		EXPECT_EQ(*r.Header("x-amz-content-sha256"), Hex(r.body));
	}

	// CreateMultipartUpload carries the object's headers, not a Content-MD5.
	const FakeRequest &create = reqs[0];
	EXPECT_EQ(create.method, "POST");
	EXPECT_EQ(create.Query(), "uploads");
	EXPECT_EQ(create.body, "");
	EXPECT_EQ(*create.Header("content-type"), "application/x-ndjson");
	EXPECT_EQ(*create.Header("content-encoding"), "gzip");
	EXPECT_EQ(*create.Header("x-amz-storage-class"), "STANDARD_IA");
	EXPECT_EQ(*create.Header("x-amz-server-side-encryption"), "AES256");
	EXPECT_EQ(*create.Header("x-amz-meta-sha256"), Hex(body));
	EXPECT_EQ(*create.Header("x-amz-meta-report-id"), "r-42");
	EXPECT_EQ(create.Header("content-md5"), nullptr);
	const std::string &auth = *create.Header("authorization");
	for (const char *h : {"content-type", "content-encoding", "x-amz-meta-sha256", "x-amz-meta-report-id",
	                      "x-amz-server-side-encryption", "x-amz-storage-class"})
		EXPECT_NE(auth.find(h), std::string::npos) << h;

	// The parts, in any order, each with its own digests.
	std::set<int> numbers;
	for (std::size_t i = 1; i <= 3; ++i) {
		const FakeRequest &p = reqs[i];
		EXPECT_EQ(p.method, "PUT");
		const auto q = QueryMap(p);
		ASSERT_EQ(q.size(), 2u) << p.Query();
		const int n = std::stoi(q.at("partNumber"));
		EXPECT_EQ(p.Query(), "partNumber=" + std::to_string(n) + "&uploadId=" + id);
		ASSERT_TRUE(n >= 1 && n <= 3);
		numbers.insert(n);
		const std::string_view slice = slices[static_cast<std::size_t>(n - 1)];
		EXPECT_TRUE(p.body == slice);
		EXPECT_EQ(*p.Header("content-md5"), crypto::Base64Encode(Md5Bytes(slice)));
		EXPECT_EQ(*p.Header("x-amz-content-sha256"), Hex(slice));
		EXPECT_NE(p.Header("authorization")->find("content-md5"), std::string::npos);
		EXPECT_EQ(p.Header("x-amz-meta-sha256"), nullptr);
	}
	EXPECT_EQ(numbers, (std::set<int>{1, 2, 3}));
	// Concurrent: the 3 parts (300 ms each) were in flight together.
	EXPECT_EQ(server.max_in_flight(), 3);
	EXPECT_GE(elapsed, std::chrono::milliseconds(300));

	const FakeRequest &complete = reqs[4];
	EXPECT_EQ(complete.method, "POST");
	EXPECT_EQ(complete.Query(), "uploadId=" + id);
	EXPECT_EQ(*complete.Header("content-type"), "application/xml");
	EXPECT_EQ(*complete.Header("content-md5"), crypto::Base64Encode(Md5Bytes(complete.body)));
	std::string xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
	                  "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">";
	for (std::size_t i = 0; i < 3; ++i)
		xml += "<Part><PartNumber>" + std::to_string(i + 1) + "</PartNumber><ETag>\"" + Md5Hex(slices[i]) +
		       "\"</ETag></Part>";
	xml += "</CompleteMultipartUpload>";
	EXPECT_EQ(complete.body, xml);

	EXPECT_EQ(reqs[5].method, "HEAD");
	EXPECT_EQ(reqs[5].Query(), "versionId=mpv1");
}

TEST_F(S3MultipartTest, NullVersionIsNotQueried) {
	s3.part_delay_ms = 0;
	s3.tweak = [&](const FakeRequest &r) -> std::optional<FakeResponse> {
		if (r.method != "POST" || r.Query().rfind("uploadId=", 0) != 0)
			return std::nullopt;
		std::lock_guard<std::mutex> lock(s3.mu);
		FakeResponse resp = FakeResponse::Status(200, "<CompleteMultipartUploadResponse><ETag>\"" + s3.Etag() +
		                                                  "\"</ETag></CompleteMultipartUploadResponse>");
		resp.headers = {{"x-amz-version-id", "null"}};
		return resp;
	};
	server.SetHandler(std::ref(s3));
	PutResult res = client.Put(Request(body), kNever);
	EXPECT_EQ(res.version_id, "");
	const auto reqs = server.Requests();
	ASSERT_EQ(reqs.size(), 6u);
	EXPECT_EQ(reqs[5].method, "HEAD");
	EXPECT_EQ(reqs[5].Query(), "");
}

TEST_F(S3MultipartTest, FailingPartAbortsTheUpload) {
	s3.tweak = [](const FakeRequest &r) -> std::optional<FakeResponse> {
		if (r.method == "PUT" && r.Query().rfind("partNumber=2&", 0) == 0)
			return FakeResponse::Status(503, ErrorXml("SlowDown", "Please reduce your request rate."));
		return std::nullopt;
	};
	s3.part_delay_ms = 5000; // the failure stops the other parts early
	server.SetHandler(std::ref(s3));
	const auto start = std::chrono::steady_clock::now();
	Error e = Capture([&] { client.Put(Request(body), kNever); });
	EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(3000));
	EXPECT_EQ(e.kind(), ErrorKind::kTransient);
	EXPECT_EQ(e.sqlstate(), "58030");
	EXPECT_NE(e.detail().find("UploadPart 2 of 3"), std::string::npos) << e.detail();
	EXPECT_NE(e.detail().find("SlowDown"), std::string::npos) << e.detail();
	EXPECT_NE(std::string(e.what()).find(kReportKey), std::string::npos);
	EXPECT_TRUE(AbortSent()) << ::testing::PrintToString(Methods());
	for (const auto &r : server.Requests())
		EXPECT_FALSE(r.method == "POST" && r.Query().rfind("uploadId=", 0) == 0) << "completed anyway";
}

TEST_F(S3MultipartTest, WrongPartEtagIsIntegrityErrorAndAborts) {
	s3.tweak = [](const FakeRequest &r) -> std::optional<FakeResponse> {
		if (r.method == "PUT" && r.Query().rfind("partNumber=3&", 0) == 0) {
			FakeResponse resp = FakeResponse::Status(200);
			resp.headers = {{"ETag", "\"" + Md5Hex(r.body + "x") + "\""}};
			return resp;
		}
		return std::nullopt;
	};
	server.SetHandler(std::ref(s3));
	Error e = Capture([&] { client.Put(Request(body), kNever); });
	EXPECT_EQ(e.kind(), ErrorKind::kIntegrity);
	EXPECT_EQ(e.sqlstate(), "XX001");
	EXPECT_NE(e.detail().find("UploadPart 3 of 3"), std::string::npos) << e.detail();
	EXPECT_TRUE(AbortSent()) << ::testing::PrintToString(Methods());
}

TEST_F(S3MultipartTest, WrongFinalEtagIsIntegrityErrorAndAborts) {
	s3.tweak = [](const FakeRequest &r) -> std::optional<FakeResponse> {
		if (r.method == "POST" && r.Query().rfind("uploadId=", 0) == 0)
			return FakeResponse::Status(200, "<CompleteMultipartUploadResult><ETag>\"0123456789abcdef0123456789abcdef-3\""
			                                 "</ETag></CompleteMultipartUploadResult>");
		return std::nullopt;
	};
	server.SetHandler(std::ref(s3));
	Error e = Capture([&] { client.Put(Request(body), kNever); });
	EXPECT_EQ(e.kind(), ErrorKind::kIntegrity);
	EXPECT_EQ(e.sqlstate(), "XX001");
	EXPECT_NE(e.detail().find("0123456789abcdef0123456789abcdef-3"), std::string::npos) << e.detail();
	EXPECT_TRUE(AbortSent()) << ::testing::PrintToString(Methods());
	for (const auto &r : server.Requests())
		EXPECT_NE(r.method, "HEAD");
}

TEST_F(S3MultipartTest, WrongStoredSizeOrHashIsIntegrityErrorAndAborts) {
	for (const bool wrong_size : {true, false}) {
		SCOPED_TRACE(wrong_size);
		FakeHttpServer srv;
		FakeMultipartS3 fake;
		fake.part_delay_ms = 0;
		fake.tweak = [&](const FakeRequest &r) -> std::optional<FakeResponse> {
			if (r.method != "HEAD")
				return std::nullopt;
			std::lock_guard<std::mutex> lock(fake.mu);
			FakeResponse resp = FakeResponse::Status(200);
			resp.headers = {{"Content-Length", std::to_string(body.size() - (wrong_size ? 1 : 0))},
			                {"x-amz-meta-sha256", wrong_size ? Hex(body) : Hex("other")},
			                {"ETag", "\"" + fake.Etag() + "\""}};
			return resp;
		};
		srv.SetHandler(std::ref(fake));
		Client c(SmallParts(srv.url()), engine, FixedClock());
		Error e = Capture([&] { c.Put(Request(body), kNever); });
		EXPECT_EQ(e.kind(), ErrorKind::kIntegrity);
		const auto reqs = srv.Requests();
		ASSERT_EQ(reqs.size(), 7u);
		EXPECT_EQ(reqs[5].method, "HEAD");
		EXPECT_EQ(reqs[6].method, "DELETE");
		EXPECT_EQ(reqs[6].Query(), "uploadId=" + uri::UriEncode(kUploadId, true));
	}
}

TEST_F(S3MultipartTest, ErrorDocumentIn200CompleteIsAnErrorAndAborts) {
	s3.tweak = [](const FakeRequest &r) -> std::optional<FakeResponse> {
		if (r.method == "POST" && r.Query().rfind("uploadId=", 0) == 0)
			return FakeResponse::Status(200, "\n \n" + ErrorXml("InternalError", "We encountered an internal error."));
		return std::nullopt;
	};
	server.SetHandler(std::ref(s3));
	Error e = Capture([&] { client.Put(Request(body), kNever); });
	EXPECT_EQ(e.kind(), ErrorKind::kTransient);
	EXPECT_EQ(e.sqlstate(), "58030");
	EXPECT_NE(e.detail().find("CompleteMultipartUpload: HTTP 200 with S3 error InternalError"), std::string::npos)
	    << e.detail();
	EXPECT_NE(e.detail().find("REQ123"), std::string::npos) << e.detail();
	EXPECT_TRUE(AbortSent()) << ::testing::PrintToString(Methods());
}

TEST_F(S3MultipartTest, MalformedCompleteResponseAborts) {
	s3.tweak = [](const FakeRequest &r) -> std::optional<FakeResponse> {
		if (r.method == "POST" && r.Query().rfind("uploadId=", 0) == 0)
			return FakeResponse::Status(200, "<CompleteMultipartUploadResult><ETag>");
		return std::nullopt;
	};
	server.SetHandler(std::ref(s3));
	Error e = Capture([&] { client.Put(Request(body), kNever); });
	EXPECT_EQ(e.kind(), ErrorKind::kProtocol);
	EXPECT_EQ(e.sqlstate(), "08P01");
	EXPECT_EQ(e.hint().find("Retry later"), std::string::npos) << e.hint();
	EXPECT_TRUE(AbortSent()) << ::testing::PrintToString(Methods());
}

// Ceph RGW 16: CompleteMultipartUpload answers <ETag></ETag> and no ETag
// header; the stored object's ETag (HEAD) is checked against the parts.
TEST_F(S3MultipartTest, EmptyCompleteEtagIsTakenFromTheStoredObject) {
	s3.tweak = [](const FakeRequest &r) -> std::optional<FakeResponse> {
		if (r.method == "POST" && r.Query().rfind("uploadId=", 0) == 0)
			return FakeResponse::Status(200, "<CompleteMultipartUploadResult><Bucket>reports</Bucket><Key>k</Key>"
			                                 "<ETag></ETag></CompleteMultipartUploadResult>");
		return std::nullopt;
	};
	server.SetHandler(std::ref(s3));
	PutResult res = client.Put(Request(body), kNever);
	std::vector<std::string_view> parts = {std::string_view(body).substr(0, 5u << 20),
	                                       std::string_view(body).substr(5u << 20, 5u << 20),
	                                       std::string_view(body).substr(10u << 20)};
	EXPECT_EQ(res.etag, ExpectedMultipartEtag(parts));
	EXPECT_EQ(server.Requests().back().method, "HEAD");
}

TEST_F(S3MultipartTest, EmptyCompleteEtagAndWrongStoredEtagIsIntegrityError) {
	s3.tweak = [&](const FakeRequest &r) -> std::optional<FakeResponse> {
		if (r.method == "POST" && r.Query().rfind("uploadId=", 0) == 0)
			return FakeResponse::Status(200, "<CompleteMultipartUploadResult><ETag></ETag>"
			                                 "</CompleteMultipartUploadResult>");
		if (r.method == "HEAD") {
			FakeResponse resp = FakeResponse::Status(200);
			resp.headers = {{"Content-Length", std::to_string(body.size())},
			                {"x-amz-meta-sha256", Hex(body)},
			                {"ETag", "\"0123456789abcdef0123456789abcdef-3\""}};
			return resp;
		}
		return std::nullopt;
	};
	server.SetHandler(std::ref(s3));
	Error e = Capture([&] { client.Put(Request(body), kNever); });
	EXPECT_EQ(e.kind(), ErrorKind::kIntegrity);
	EXPECT_NE(e.detail().find("0123456789abcdef0123456789abcdef-3"), std::string::npos) << e.detail();
	EXPECT_TRUE(AbortSent()) << ::testing::PrintToString(Methods());
}

TEST_F(S3MultipartTest, NoEtagAnywhereIsAProtocolError) {
	s3.tweak = [&](const FakeRequest &r) -> std::optional<FakeResponse> {
		if (r.method == "POST" && r.Query().rfind("uploadId=", 0) == 0)
			return FakeResponse::Status(200, "<CompleteMultipartUploadResult></CompleteMultipartUploadResult>");
		if (r.method == "HEAD") {
			FakeResponse resp = FakeResponse::Status(200);
			resp.headers = {{"Content-Length", std::to_string(body.size())}, {"x-amz-meta-sha256", Hex(body)}};
			return resp;
		}
		return std::nullopt;
	};
	server.SetHandler(std::ref(s3));
	Error e = Capture([&] { client.Put(Request(body), kNever); });
	EXPECT_EQ(e.kind(), ErrorKind::kProtocol);
	EXPECT_EQ(e.hint().find("Retry later"), std::string::npos) << e.hint();
	EXPECT_TRUE(AbortSent()) << ::testing::PrintToString(Methods());
}

TEST_F(S3MultipartTest, InterruptionAborts) {
	s3.part_delay_ms = 10000;
	server.SetHandler(std::ref(s3));
	const auto start = std::chrono::steady_clock::now();
	auto probe = [&] { return std::chrono::steady_clock::now() - start > std::chrono::milliseconds(300); };
	Error e = Capture([&] { client.Put(Request(body), probe); });
	EXPECT_EQ(e.kind(), ErrorKind::kInterrupted);
	EXPECT_EQ(e.sqlstate(), "57014");
	EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
	EXPECT_TRUE(AbortSent()) << ::testing::PrintToString(Methods());
}

TEST_F(S3MultipartTest, FailedAbortIsMentioned) {
	s3.tweak = [](const FakeRequest &r) -> std::optional<FakeResponse> {
		if (r.method == "PUT")
			return FakeResponse::Status(500, ErrorXml("InternalError", "part failed"));
		if (r.method == "DELETE")
			return FakeResponse::Status(403, ErrorXml("AccessDenied", "no s3:AbortMultipartUpload"));
		return std::nullopt;
	};
	server.SetHandler(std::ref(s3));
	Error e = Capture([&] { client.Put(Request(body), kNever); });
	EXPECT_EQ(e.kind(), ErrorKind::kTransient);
	EXPECT_NE(e.detail().find("could not be aborted"), std::string::npos) << e.detail();
	EXPECT_NE(e.detail().find("AccessDenied"), std::string::npos) << e.detail();
	EXPECT_EQ(server.Requests().back().method, "DELETE");
}

TEST_F(S3MultipartTest, FailedCreateNeedsNoAbort) {
	s3.tweak = [](const FakeRequest &r) -> std::optional<FakeResponse> {
		if (r.method == "POST")
			return FakeResponse::Status(403, ErrorXml("AccessDenied", "Access Denied"));
		return std::nullopt;
	};
	server.SetHandler(std::ref(s3));
	Error e = Capture([&] { client.Put(Request(body), kNever); });
	EXPECT_EQ(e.kind(), ErrorKind::kSystemic);
	EXPECT_EQ(e.sqlstate(), "42501");
	EXPECT_NE(e.detail().find("CreateMultipartUpload"), std::string::npos) << e.detail();
	EXPECT_EQ(server.RequestCount(), 1u);
}

TEST_F(S3MultipartTest, KmsPartsAreCheckedWithHead) {
	// With SSE-KMS no ETag is an MD5: the parts' ETags are passed through to
	// CompleteMultipartUpload and the HEAD decides.
	s3.tweak = [&](const FakeRequest &r) -> std::optional<FakeResponse> {
		if (r.method == "PUT") {
			std::lock_guard<std::mutex> lock(s3.mu);
			s3.parts[std::stoi(QueryMap(r).at("partNumber"))] = r.body;
			FakeResponse resp = FakeResponse::Status(200);
			resp.headers = {{"ETag", "\"kms-" + QueryMap(r).at("partNumber") + "\""},
			                {"x-amz-server-side-encryption", "aws:kms"}};
			return resp;
		}
		if (r.method == "POST" && r.Query().rfind("uploadId=", 0) == 0)
			return FakeResponse::Status(200, "<CompleteMultipartUploadResult><ETag>\"kms-final-3\"</ETag>"
			                                 "</CompleteMultipartUploadResult>");
		return std::nullopt;
	};
	server.SetHandler(std::ref(s3));
	PutRequest req = Request(body);
	req.sse = "aws:kms";
	PutResult res = client.Put(req, kNever);
	EXPECT_EQ(res.etag, "kms-final-3");
	const auto reqs = server.Requests();
	ASSERT_EQ(reqs.size(), 6u);
	EXPECT_NE(reqs[4].body.find("<Part><PartNumber>2</PartNumber><ETag>\"kms-2\"</ETag></Part>"), std::string::npos)
	    << reqs[4].body;
	EXPECT_EQ(reqs[5].method, "HEAD");
}

TEST_F(S3MultipartTest, PutManyMixesBatchAndMultipart) {
	s3.part_delay_ms = 0;
	s3.tweak = [](const FakeRequest &r) -> std::optional<FakeResponse> {
		const bool bad = r.Path().find("/bad/") != std::string::npos;
		if (r.method == "PUT" && r.Query().empty())
			return S3PutOk(r); // small objects
		if (bad && r.method == "PUT")
			return FakeResponse::Status(500, ErrorXml("InternalError", "We encountered an internal error."));
		return std::nullopt;
	};
	server.SetHandler(std::ref(s3));
	const std::string small1 = "small one", small2 = "small two";
	std::vector<PutRequest> reqs = {Request(small1, "reports/s1.json"), Request(body, "reports/bad/big.json"),
	                                Request(small2, "reports/s2.json"), Request(body, "reports/good/big.json")};
	std::vector<PutOutcome> out = client.PutMany(reqs, 4, kNever);
	ASSERT_EQ(out.size(), 4u);
	ASSERT_TRUE(out[0].result.has_value());
	EXPECT_EQ(out[0].result->etag, Md5Hex(small1));
	ASSERT_TRUE(out[2].result.has_value());
	EXPECT_EQ(out[2].result->etag, Md5Hex(small2));
	ASSERT_TRUE(out[1].error.has_value());
	EXPECT_FALSE(out[1].result.has_value());
	EXPECT_EQ(out[1].error->kind(), ErrorKind::kTransient);
	ASSERT_TRUE(out[3].result.has_value()) << out[3].error->what() << ": " << out[3].error->detail();
	EXPECT_EQ(out[3].result->size, body.size());
	EXPECT_EQ(out[3].result->etag.substr(out[3].result->etag.size() - 2), "-3");

	int aborts = 0, completes = 0;
	for (const auto &r : server.Requests()) {
		EXPECT_TRUE(SignatureMatches(r));
		if (r.method == "DELETE") {
			++aborts;
			EXPECT_EQ(r.Path(), "/reports/reports/bad/big.json");
		}
		if (r.method == "POST" && r.Query().rfind("uploadId=", 0) == 0) {
			++completes;
			EXPECT_EQ(r.Path(), "/reports/reports/good/big.json");
		}
	}
	EXPECT_EQ(aborts, 1);
	EXPECT_EQ(completes, 1);
}

// ---------------------------------------------------------------------------
// Live round trip against a real S3 server.

const char *Env(const char *name) {
	const char *v = std::getenv(name);
	return v && *v ? v : nullptr;
}

TEST(S3Live, RoundTrip) {
	const char *endpoint = Env("REPORTSTORE_TEST_S3_ENDPOINT");
	if (!endpoint)
		GTEST_SKIP() << "REPORTSTORE_TEST_S3_ENDPOINT is not set: set it (with REPORTSTORE_TEST_S3_ACCESS_KEY, "
		                "REPORTSTORE_TEST_S3_SECRET_KEY, REPORTSTORE_TEST_S3_BUCKET, REPORTSTORE_TEST_S3_REGION) "
		                "to run the live S3 round trip";
	Config cfg;
	cfg.endpoint = uri::ParseEndpoint(endpoint);
	cfg.region = Env("REPORTSTORE_TEST_S3_REGION") ? Env("REPORTSTORE_TEST_S3_REGION") : "us-east-1";
	cfg.credentials.access_key_id = Env("REPORTSTORE_TEST_S3_ACCESS_KEY") ? Env("REPORTSTORE_TEST_S3_ACCESS_KEY") : "";
	cfg.credentials.secret_access_key =
	    Env("REPORTSTORE_TEST_S3_SECRET_KEY") ? Env("REPORTSTORE_TEST_S3_SECRET_KEY") : "";
	if (const char *style = Env("REPORTSTORE_TEST_S3_URL_STYLE"); style && std::string(style) == "virtual")
		cfg.url_style = UrlStyle::kVirtual;
	const std::string bucket = Env("REPORTSTORE_TEST_S3_BUCKET") ? Env("REPORTSTORE_TEST_S3_BUCKET") : "reports";
	http::Engine engine;
	Client client(cfg, engine);

	std::string big(5u << 20, '\0');
	for (std::size_t i = 0; i < big.size(); ++i)
		big[i] = static_cast<char>((i * 2654435761u) >> 13);
	const std::string small = "{\"live\": true, \"text\": \"h\\u00e9llo\"}";
	const std::string stamp = std::to_string(std::time(nullptr));
	const std::vector<std::pair<std::string, const std::string *>> objects = {
	    {"reportstore-test/" + stamp + "/with space/ünïcödé +=~%.json", &small},
	    {"reportstore-test/" + stamp + "/big (5 MiB).bin", &big},
	};
	for (const auto &[key, body] : objects) {
		SCOPED_TRACE(key);
		PutRequest put;
		put.bucket = bucket;
		put.key = key;
		put.body = *body;
		put.metadata = {{"report-id", "live-test"}};
		PutResult pr;
		try {
			pr = client.Put(put, kNever);
		} catch (const Error &e) {
			FAIL() << e.what() << ": " << e.detail();
		}
		EXPECT_EQ(pr.sha256_hex, Hex(*body));

		ObjectInfo hi = client.Head({bucket, key, ""}, kNever);
		EXPECT_EQ(hi.size, body->size());
		ASSERT_NE(hi.Meta(kSha256MetaKey), nullptr);
		EXPECT_EQ(*hi.Meta(kSha256MetaKey), Hex(*body));
		ASSERT_NE(hi.Meta("report-id"), nullptr);
		EXPECT_EQ(*hi.Meta("report-id"), "live-test");

		std::string got;
		client.Get({bucket, key, ""}, &got, kNever, Hex(*body), static_cast<std::int64_t>(body->size()));
		EXPECT_TRUE(got == *body);

		const std::string url = client.PresignGet({bucket, key, ""}, std::chrono::seconds(300));
		http::Request req;
		req.method = "GET";
		req.url = url;
		req.max_response_bytes = 64u << 20;
		http::Response r = engine.PerformOne(req, kNever);
		ASSERT_EQ(r.transport, http::TransportStatus::kOk) << r.transport_error;
		EXPECT_EQ(r.status, 200) << r.body.substr(0, 500);
		EXPECT_TRUE(r.body == *body);

		client.Delete({bucket, key, ""}, kNever);
		Error e = Capture([&] { client.Head({bucket, key, ""}, kNever); });
		EXPECT_EQ(e.kind(), ErrorKind::kNotFound);
		client.Delete({bucket, key, ""}, kNever); // deleting again is fine
	}

	// A batch on pooled connections.
	std::vector<std::string> bodies;
	std::vector<PutRequest> batch;
	for (int i = 0; i < 6; ++i)
		bodies.push_back("batch object " + std::to_string(i));
	for (int i = 0; i < 6; ++i) {
		PutRequest p;
		p.bucket = bucket;
		p.key = "reportstore-test/" + stamp + "/batch/" + std::to_string(i) + ".json";
		p.body = bodies[static_cast<std::size_t>(i)];
		batch.push_back(p);
	}
	auto outcomes = client.PutMany(batch, 3, kNever);
	for (std::size_t i = 0; i < outcomes.size(); ++i) {
		EXPECT_TRUE(outcomes[i].result.has_value()) << (outcomes[i].error ? outcomes[i].error->detail() : "");
		client.Delete({bucket, batch[i].key, ""}, kNever);
	}

	// A 12 MiB multipart upload (threshold lowered: 3 parts of 5, 5 and 2 MiB)
	// and its GET.
	{
		Config mp_cfg = cfg;
		mp_cfg.multipart_threshold = 6u << 20;
		mp_cfg.part_size = 5u << 20;
		mp_cfg.part_concurrency = 3;
		Client mp(mp_cfg, engine);
		const std::string large = PseudoRandom(12u << 20, 7);
		PutRequest p;
		p.bucket = bucket;
		p.key = "reportstore-test/" + stamp + "/multipart (12 MiB).bin";
		p.body = large;
		p.content_type = "application/octet-stream";
		p.metadata = {{"report-id", "live-multipart"}};
		PutResult pr;
		try {
			pr = mp.Put(p, kNever);
		} catch (const Error &e) {
			FAIL() << e.what() << ": " << e.detail();
		}
		EXPECT_EQ(pr.size, large.size());
		EXPECT_EQ(pr.sha256_hex, Hex(large));
		const std::string_view lv = large;
		EXPECT_EQ(pr.etag, ExpectedMultipartEtag({lv.substr(0, 5u << 20), lv.substr(5u << 20, 5u << 20),
		                                          lv.substr(10u << 20)}));
		ObjectInfo hi = client.Head({bucket, p.key, ""}, kNever);
		EXPECT_EQ(hi.size, large.size());
		ASSERT_NE(hi.Meta(kSha256MetaKey), nullptr);
		EXPECT_EQ(*hi.Meta(kSha256MetaKey), Hex(large));
		ASSERT_NE(hi.Meta("report-id"), nullptr);
		EXPECT_EQ(*hi.Meta("report-id"), "live-multipart");
		EXPECT_EQ(hi.content_type, "application/octet-stream");
		std::string got;
		try {
			mp.Get({bucket, p.key, ""}, &got, kNever, {}, static_cast<std::int64_t>(large.size()));
		} catch (const Error &e) {
			FAIL() << e.what() << ": " << e.detail();
		}
		EXPECT_TRUE(got == large);
		client.Delete({bucket, p.key, ""}, kNever);
	}

	// Listing over several pages: 5 objects, 2 per page.
	{
		const std::string prefix = "reportstore-test/" + stamp + "/list/";
		std::vector<std::string> keys;
		for (int i = 0; i < 5; ++i) {
			PutRequest p;
			p.bucket = bucket;
			p.key = prefix + "obj " + std::to_string(i) + ".json";
			p.body = small;
			ASSERT_NO_THROW(client.Put(p, kNever));
			keys.push_back(p.key);
		}
		std::vector<std::string> listed;
		std::string token;
		int pages = 0;
		do {
			ListPage page;
			try {
				page = client.List(bucket, prefix, token, 2, kNever);
			} catch (const Error &e) {
				FAIL() << e.what() << ": " << e.detail();
			}
			EXPECT_LE(page.objects.size(), 2u);
			for (const auto &o : page.objects) {
				listed.push_back(o.key);
				EXPECT_EQ(o.size, small.size());
			}
			token = page.next_continuation_token;
			EXPECT_EQ(page.is_truncated, !token.empty());
			++pages;
			ASSERT_LT(pages, 10);
		} while (!token.empty());
		EXPECT_EQ(pages, 3);
		EXPECT_EQ(listed, keys); // S3 lists in key order
		for (const std::string &k : keys)
			client.Delete({bucket, k, ""}, kNever);
		EXPECT_TRUE(client.List(bucket, prefix, "", 10, kNever).objects.empty());
	}

	// Wrong secret: a signature error that never leaks the secret. The key id
	// is the test S3 front's decoy (test/harness), whose secret nobody knows,
	// so the front records the failure as deliberate.
	Config wrong = cfg;
	wrong.credentials.access_key_id = "rstest-decoy-key";
	wrong.credentials.secret_access_key = "definitely-not-the-secret-" + stamp;
	Client bad(wrong, engine);
	std::string ignored;
	try {
		bad.Get({bucket, "reportstore-test/missing.json", ""}, &ignored, kNever);
	} catch (const Error &e) {
		for (const std::string &text : {std::string(e.what()), e.detail(), e.hint()})
			EXPECT_EQ(text.find(wrong.credentials.secret_access_key), std::string::npos);
		if (e.detail().find("SignatureDoesNotMatch") != std::string::npos) {
			EXPECT_EQ(e.sqlstate(), "28000");
			EXPECT_EQ(e.hint(), "Check reportstore.access_key_id and reportstore.secret_access_key.");
		}
	}
}

} // namespace
} // namespace reportstore::s3
