// STS (AssumeRole, AssumeRoleWithWebIdentity), IMDSv2 and the credential
// sources against the scripted loopback server: what is sent (signed for
// "sts", or unsigned with the token), what is parsed, how every failure is
// reported (the step in the message, no token or secret anywhere), and that
// the web identity token file is read again at every fetch.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include "core/aws/credential_sources.hpp"
#include "core/aws/imds.hpp"
#include "core/aws/sts.hpp"
#include "core/crypto.hpp"
#include "core/error.hpp"
#include "s3_test_support.hpp"

namespace reportstore::aws {
namespace {

using reportstore::s3::PercentDecode;
using reportstore::s3::SignatureMatches;
using reportstore::s3::Split;
using reportstore::testing::FakeHttpServer;
using reportstore::testing::FakeRequest;
using reportstore::testing::FakeResponse;

constexpr std::time_t kNow = reportstore::s3::kNow;
const http::InterruptProbe kNever = [] { return false; };

const Credentials kBase{"AKIDBASEKEY", "base-SECRET-never-shown", ""};
constexpr const char *kRole = "arn:aws:iam::123456789012:role/reportstore";
// A JWT-shaped token; every test checks that it never shows up in an error.
constexpr const char *kJwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.SIGNATURE-web-id-tok";
constexpr const char *kTempSecret = "TEMP-secret-from-sts-0123456789";
constexpr const char *kTempToken = "TEMP-session-token-from-sts-ABCDEFGHIJ";

std::map<std::string, std::string> Form(const std::string &body) {
	std::map<std::string, std::string> m;
	for (const std::string &kv : Split(body, '&')) {
		const std::size_t eq = kv.find('=');
		m[PercentDecode(kv.substr(0, eq))] = eq == std::string::npos ? "" : PercentDecode(kv.substr(eq + 1));
	}
	return m;
}

std::string StsCredentialsXml(const std::string &action, const std::string &key = "ASIATEMPKEY",
                              const std::string &expiration = "2015-08-30T13:36:00Z") {
	return "<" + action + "Response xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><" + action +
	       "Result><Credentials><AccessKeyId>" + key + "</AccessKeyId><SecretAccessKey>" + kTempSecret +
	       "</SecretAccessKey><SessionToken>" + kTempToken + "</SessionToken><Expiration>" + expiration +
	       "</Expiration></Credentials><AssumedRoleUser><Arn>x</Arn></AssumedRoleUser></" + action +
	       "Result><ResponseMetadata><RequestId>r-1</RequestId></ResponseMetadata></" + action + "Response>";
}

std::string StsErrorXml(const std::string &code, const std::string &message) {
	return "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>" +
	       code + "</Code><Message>" + message + "</Message></Error><RequestId>req-42</RequestId></ErrorResponse>";
}

void ExpectNoSecret(const Error &e) {
	for (const std::string &text : {std::string(e.what()), e.detail(), e.hint()}) {
		for (const char *secret : {kJwt, kTempSecret, kTempToken, kBase.secret_access_key.c_str(), "SIGNATURE-web"})
			EXPECT_EQ(text.find(secret), std::string::npos) << text;
	}
}

template <typename Fn> Error Thrown(Fn &&fn) {
	try {
		fn();
	} catch (const Error &e) {
		ExpectNoSecret(e);
		return e;
	}
	ADD_FAILURE() << "no reportstore::Error thrown";
	return Error(ErrorKind::kInternal, "XX000", "none");
}

class StsTest : public ::testing::Test {
  protected:
	StsConfig Config(long timeout_ms = 5000) {
		StsConfig c;
		c.endpoint = uri::ParseEndpoint(server.url());
		c.region = "us-east-1";
		c.timeout_ms = timeout_ms;
		c.connect_timeout_ms = 2000;
		return c;
	}
	FakeHttpServer server;
	http::Engine engine;
};

TEST_F(StsTest, AssumeRoleIsASignedStsQuery) {
	server.Enqueue(FakeResponse::Status(200, StsCredentialsXml("AssumeRole")));
	const TimedCredentials t =
	    AssumeRole(engine, Config(), kBase, kRole, "reportstore", kNever, [] { return kNow; });
	EXPECT_EQ(t.credentials.access_key_id, "ASIATEMPKEY");
	EXPECT_EQ(t.credentials.secret_access_key, kTempSecret);
	EXPECT_EQ(t.credentials.session_token, kTempToken);
	EXPECT_EQ(t.expiration, kNow + 3600);

	ASSERT_EQ(server.RequestCount(), 1u);
	const FakeRequest r = server.Requests()[0];
	EXPECT_EQ(r.method, "POST");
	EXPECT_EQ(r.target, "/");
	EXPECT_EQ(*r.Header("content-type"), "application/x-www-form-urlencoded; charset=utf-8");
	auto form = Form(r.body);
	EXPECT_EQ(form["Action"], "AssumeRole");
	EXPECT_EQ(form["Version"], "2011-06-15");
	EXPECT_EQ(form["RoleArn"], kRole);
	EXPECT_EQ(form["RoleSessionName"], "reportstore");
	EXPECT_EQ(form.count("DurationSeconds"), 0u); // the role's default
	// Signed for STS with the base credentials, the body's hash included.
	EXPECT_EQ(*r.Header("x-amz-content-sha256"), crypto::HexEncode(crypto::Sha256(r.body)));
	EXPECT_NE(r.Header("authorization")->find("/us-east-1/sts/aws4_request"), std::string::npos);
	EXPECT_NE(r.Header("authorization")->find("content-type"), std::string::npos);
	EXPECT_TRUE(SignatureMatches(r, "us-east-1", "sts", &kBase));
	EXPECT_EQ(r.Header("x-amz-security-token"), nullptr);
}

TEST_F(StsTest, AssumeRoleWithTemporaryBaseCredentialsSendsTheirToken) {
	server.Enqueue(FakeResponse::Status(200, StsCredentialsXml("AssumeRole")));
	const Credentials base{"ASIAINSTANCE", "instance-secret", "instance-token"};
	AssumeRole(engine, Config(), base, kRole, "reportstore", kNever, [] { return kNow; });
	const FakeRequest r = server.Requests()[0];
	EXPECT_EQ(*r.Header("x-amz-security-token"), "instance-token");
	EXPECT_TRUE(SignatureMatches(r, "us-east-1", "sts", &base));
}

TEST_F(StsTest, WebIdentityIsUnsignedAndCarriesTheToken) {
	server.Enqueue(FakeResponse::Status(200, StsCredentialsXml("AssumeRoleWithWebIdentity")));
	const TimedCredentials t = AssumeRoleWithWebIdentity(engine, Config(), kJwt, kRole, "rs-session", kNever);
	EXPECT_EQ(t.credentials.session_token, kTempToken);
	const FakeRequest r = server.Requests()[0];
	EXPECT_EQ(r.Header("authorization"), nullptr);
	EXPECT_EQ(r.Header("x-amz-security-token"), nullptr);
	auto form = Form(r.body);
	EXPECT_EQ(form["Action"], "AssumeRoleWithWebIdentity");
	EXPECT_EQ(form["WebIdentityToken"], kJwt);
	EXPECT_EQ(form["RoleSessionName"], "rs-session");
	EXPECT_EQ(r.target, "/"); // the token is in the body, never in the URL
}

TEST_F(StsTest, RefusalsAre28000WithTheStepAndNeverEchoTheToken) {
	// A server that repeats the token it was sent in its message.
	server.Enqueue(FakeResponse::Status(
	    400, StsErrorXml("InvalidIdentityToken", std::string("Incorrect token audience for ") + kJwt)));
	Error e = Thrown([&] { AssumeRoleWithWebIdentity(engine, Config(), kJwt, kRole, "reportstore", kNever); });
	EXPECT_EQ(e.kind(), ErrorKind::kSystemic);
	EXPECT_EQ(e.sqlstate(), "28000");
	EXPECT_STREQ(e.what(), "could not obtain S3 credentials from STS (AssumeRoleWithWebIdentity)");
	EXPECT_NE(e.detail().find("HTTP 400: InvalidIdentityToken: Incorrect token audience for [redacted]"),
	          std::string::npos)
	    << e.detail();
	EXPECT_NE(e.detail().find("req-42"), std::string::npos);

	server.Enqueue(FakeResponse::Status(400, StsErrorXml("ExpiredTokenException", "Token expired")));
	e = Thrown([&] { AssumeRoleWithWebIdentity(engine, Config(), kJwt, kRole, "reportstore", kNever); });
	EXPECT_EQ(e.sqlstate(), "28000");
	EXPECT_NE(e.hint().find("rotates"), std::string::npos);

	// A long echo cut by the length limit leaves no prefix of the token either.
	server.Enqueue(FakeResponse::Status(403, StsErrorXml("AccessDenied", std::string(250, 'x') + kJwt)));
	Thrown([&] { AssumeRoleWithWebIdentity(engine, Config(), kJwt, kRole, "reportstore", kNever); });

	server.Enqueue(FakeResponse::Status(
	    403, "<Error><Code>AccessDenied</Code><Message>base-SECRET-never-shown</Message></Error>")); // RGW's form
	e = Thrown([&] { AssumeRole(engine, Config(), kBase, kRole, "reportstore", kNever); });
	EXPECT_EQ(e.sqlstate(), "28000");
	EXPECT_STREQ(e.what(), "could not obtain S3 credentials from STS (AssumeRole)");
	EXPECT_NE(e.detail().find("AccessDenied"), std::string::npos);
	EXPECT_NE(e.hint().find("reportstore.role_arn"), std::string::npos);
}

TEST_F(StsTest, UnavailableStsIs08001) {
	server.Enqueue(FakeResponse::Status(503, StsErrorXml("ServiceUnavailable", "try later")));
	Error e = Thrown([&] { AssumeRole(engine, Config(), kBase, kRole, "reportstore", kNever); });
	EXPECT_EQ(e.sqlstate(), "08001");
	EXPECT_EQ(e.kind(), ErrorKind::kSystemic);

	server.Enqueue(FakeResponse::Status(400, StsErrorXml("Throttling", "Rate exceeded")));
	EXPECT_EQ(Thrown([&] { AssumeRole(engine, Config(), kBase, kRole, "reportstore", kNever); }).sqlstate(), "08001");

	FakeResponse slow = FakeResponse::Status(200, StsCredentialsXml("AssumeRole"));
	slow.delay_ms = 3000;
	server.Enqueue(slow);
	const auto start = std::chrono::steady_clock::now();
	e = Thrown([&] { AssumeRole(engine, Config(300), kBase, kRole, "reportstore", kNever); });
	EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
	EXPECT_EQ(e.sqlstate(), "08001");
	EXPECT_NE(e.detail().find("did not answer in time"), std::string::npos) << e.detail();

	StsConfig nowhere = Config();
	nowhere.endpoint = uri::ParseEndpoint("http://127.0.0.1:" + std::to_string(testing::UnusedLoopbackPort()));
	e = Thrown([&] { AssumeRole(engine, nowhere, kBase, kRole, "reportstore", kNever); });
	EXPECT_EQ(e.sqlstate(), "08001");
	EXPECT_NE(e.detail().find("Could not reach STS at http://127.0.0.1:"), std::string::npos) << e.detail();
}

TEST_F(StsTest, AnswersThatAreNotStsAre08P01) {
	for (const std::string &body :
	     {std::string("<html>hello</html>"), std::string("not xml"), StsCredentialsXml("AssumeRole", ""),
	      StsCredentialsXml("AssumeRole", "AK", "tomorrow"), StsCredentialsXml("AssumeRoleWithWebIdentity"),
	      std::string("<AssumeRoleResponse><AssumeRoleResult/></AssumeRoleResponse>"),
	      std::string("<!DOCTYPE x [<!ENTITY e \"e\">]><AssumeRoleResponse/>")}) {
		server.Enqueue(FakeResponse::Status(200, body));
		const Error e = Thrown([&] { AssumeRole(engine, Config(), kBase, kRole, "reportstore", kNever); });
		EXPECT_EQ(e.sqlstate(), "08P01") << body;
		EXPECT_EQ(e.kind(), ErrorKind::kSystemic);
	}
	server.Enqueue(FakeResponse::Status(200, std::string(100 << 10, 'x')));
	EXPECT_EQ(Thrown([&] { AssumeRole(engine, Config(), kBase, kRole, "reportstore", kNever); }).sqlstate(), "08P01");
	// A token longer than the shared cache holds.
	std::string huge = StsCredentialsXml("AssumeRole");
	huge.replace(huge.find(kTempToken), std::strlen(kTempToken), std::string(kMaxSessionTokenBytes + 1, 't'));
	server.Enqueue(FakeResponse::Status(200, huge));
	EXPECT_EQ(Thrown([&] { AssumeRole(engine, Config(), kBase, kRole, "reportstore", kNever); }).sqlstate(), "08P01");
}

TEST_F(StsTest, AnInterruptedRequestIsAnInterruption) {
	FakeResponse slow = FakeResponse::Status(200, StsCredentialsXml("AssumeRole"));
	slow.delay_ms = 5000;
	server.Enqueue(slow);
	const Error e = Thrown([&] { AssumeRole(engine, Config(), kBase, kRole, "reportstore", [] { return true; }); });
	EXPECT_EQ(e.kind(), ErrorKind::kInterrupted);
}

TEST(StsSettingsTest, EndpointsRolesAndSessionNames) {
	EXPECT_EQ(RegionalStsEndpoint("eu-west-1"), "https://sts.eu-west-1.amazonaws.com");
	EXPECT_EQ(RegionalStsEndpoint("cn-north-1"), "https://sts.cn-north-1.amazonaws.com.cn");
	EXPECT_EQ(StsSigningRegion(uri::ParseEndpoint("https://sts.amazonaws.com"), "eu-west-1"), "us-east-1");
	EXPECT_EQ(StsSigningRegion(uri::ParseEndpoint("https://sts.eu-west-1.amazonaws.com"), "eu-west-1"), "eu-west-1");
	EXPECT_NO_THROW(CheckRoleArn("arn:aws:iam:::role/reportstore"));
	EXPECT_THROW(CheckRoleArn("reportstore"), Error);
	EXPECT_THROW(CheckRoleArn("arn:aws:iam::1:role/a\nb-------"), Error);
	EXPECT_NO_THROW(CheckRoleSessionName("reportstore@db-1"));
	EXPECT_THROW(CheckRoleSessionName("x"), Error);
	EXPECT_THROW(CheckRoleSessionName("has space"), Error);
	EXPECT_THROW(CheckRoleSessionName(std::string(65, 'a')), Error);
	EXPECT_EQ(FormBody({{"A", "b c"}, {"T", "x/y+z="}}), "A=b%20c&T=x%2Fy%2Bz%3D");
}

TEST(StsParseTest, ErrorDocuments) {
	StsError e;
	ASSERT_TRUE(ParseStsError(StsErrorXml("AccessDenied", "no"), &e));
	EXPECT_EQ(e.code, "AccessDenied");
	EXPECT_EQ(e.message, "no");
	EXPECT_EQ(e.request_id, "req-42");
	ASSERT_TRUE(ParseStsError("<Error><Code>InvalidArgument</Code><RequestId>r</RequestId></Error>", &e));
	EXPECT_EQ(e.code, "InvalidArgument");
	EXPECT_EQ(e.request_id, "r");
	EXPECT_FALSE(ParseStsError("<AssumeRoleResponse/>", &e));
	EXPECT_FALSE(ParseStsError("", &e));
}

// --- IMDS ------------------------------------------------------------------------

constexpr const char *kImdsToken = "IMDS-session-token-AQAEAE";

std::string ImdsJson(const std::string &code = "Success") {
	return std::string("{\n  \"Code\" : \"") + code +
	       "\",\n  \"LastUpdated\" : \"2015-08-30T12:00:00Z\",\n  \"Type\" : \"AWS-HMAC\",\n"
	       "  \"AccessKeyId\" : \"ASIAINSTANCE\",\n  \"SecretAccessKey\" : \"" +
	       kTempSecret + "\",\n  \"Token\" : \"" + kTempToken + "\",\n  \"Expiration\" : \"2015-08-30T18:36:00Z\"\n}";
}

// IMDSv2 as EC2 has it; `fault` changes one step.
FakeResponse Imds(const FakeRequest &r, const std::string &fault = "") {
	if (r.method == "PUT" && r.target == "/latest/api/token") {
		if (fault == "no-v2")
			return FakeResponse::Status(403);
		if (!r.Header("x-aws-ec2-metadata-token-ttl-seconds"))
			return FakeResponse::Status(400);
		return FakeResponse::Status(200, kImdsToken);
	}
	const std::string *token = r.Header("x-aws-ec2-metadata-token");
	if (!token || *token != kImdsToken)
		return FakeResponse::Status(401);
	if (r.method == "GET" && r.target == "/latest/meta-data/iam/security-credentials/")
		return fault == "no-role" ? FakeResponse::Status(404, "<html>Not Found</html>")
		                          : FakeResponse::Status(200, "reportstore-role\n");
	if (r.method == "GET" && r.target == "/latest/meta-data/iam/security-credentials/reportstore-role")
		return FakeResponse::Status(200, fault == "failed" ? ImdsJson("Failed") : ImdsJson());
	return FakeResponse::Status(404);
}

class ImdsTest : public ::testing::Test {
  protected:
	ImdsConfig Config(long timeout_ms = 2000) {
		ImdsConfig c;
		c.endpoint = uri::ParseEndpoint(server.url());
		c.timeout_ms = timeout_ms;
		return c;
	}
	FakeHttpServer server;
	http::Engine engine;
};

TEST_F(ImdsTest, TokenThenRoleThenCredentials) {
	server.SetHandler([](const FakeRequest &r) { return Imds(r); });
	const TimedCredentials t = FetchInstanceCredentials(engine, Config(), kNever);
	EXPECT_EQ(t.credentials.access_key_id, "ASIAINSTANCE");
	EXPECT_EQ(t.credentials.secret_access_key, kTempSecret);
	EXPECT_EQ(t.credentials.session_token, kTempToken);
	EXPECT_EQ(t.expiration, kNow + 6 * 3600);
	const auto requests = server.Requests();
	ASSERT_EQ(requests.size(), 3u);
	EXPECT_EQ(requests[0].method, "PUT");
	EXPECT_EQ(*requests[0].Header("x-aws-ec2-metadata-token-ttl-seconds"), "21600");
}

TEST_F(ImdsTest, NeverThroughAProxy) {
	// A proxy in the environment (where nothing listens) is not used.
	const std::string proxy = "http://127.0.0.1:" + std::to_string(testing::UnusedLoopbackPort());
	const char *saved = std::getenv("http_proxy");
	const std::string saved_value = saved ? saved : "";
	setenv("http_proxy", proxy.c_str(), 1);
	server.SetHandler([](const FakeRequest &r) { return Imds(r); });
	EXPECT_NO_THROW(FetchInstanceCredentials(engine, Config(), kNever));
	if (saved)
		setenv("http_proxy", saved_value.c_str(), 1);
	else
		unsetenv("http_proxy");
}

TEST_F(ImdsTest, EachFailingStepIsNamed) {
	server.SetHandler([](const FakeRequest &r) { return Imds(r, "no-v2"); });
	Error e = Thrown([&] { FetchInstanceCredentials(engine, Config(), kNever); });
	EXPECT_STREQ(e.what(), "could not obtain S3 credentials from the instance metadata service (IMDS)");
	EXPECT_NE(e.detail().find("IMDSv2 session token request (PUT /latest/api/token)"), std::string::npos);
	EXPECT_EQ(e.sqlstate(), "28000");

	server.SetHandler([](const FakeRequest &r) { return Imds(r, "no-role"); });
	e = Thrown([&] { FetchInstanceCredentials(engine, Config(), kNever); });
	EXPECT_NE(e.detail().find("role lookup"), std::string::npos);
	EXPECT_NE(e.detail().find("no IAM role"), std::string::npos);
	EXPECT_EQ(e.detail().find(kImdsToken), std::string::npos);

	server.SetHandler([](const FakeRequest &r) { return Imds(r, "failed"); });
	e = Thrown([&] { FetchInstanceCredentials(engine, Config(), kNever); });
	EXPECT_NE(e.detail().find("Code Failed"), std::string::npos);
}

TEST_F(ImdsTest, AHangingServiceIsBoundedByTheTimeout) {
	server.SetHandler([](const FakeRequest &r) {
		FakeResponse hang = Imds(r);
		hang.delay_ms = 30000;
		return hang;
	});
	const auto start = std::chrono::steady_clock::now();
	const Error e = Thrown([&] { FetchInstanceCredentials(engine, Config(300), kNever); });
	EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
	EXPECT_EQ(e.sqlstate(), "08001");
	EXPECT_NE(e.detail().find("no answer within 300 ms"), std::string::npos) << e.detail();
	server.Stop();
}

TEST_F(ImdsTest, NothingListening) {
	ImdsConfig c = Config();
	c.endpoint = uri::ParseEndpoint("http://127.0.0.1:" + std::to_string(testing::UnusedLoopbackPort()));
	EXPECT_EQ(Thrown([&] { FetchInstanceCredentials(engine, c, kNever); }).sqlstate(), "08001");
}

TEST(ImdsParseTest, Json) {
	TimedCredentials t = ParseImdsCredentials(ImdsJson());
	EXPECT_EQ(t.credentials.access_key_id, "ASIAINSTANCE");
	t = ParseImdsCredentials("{\"AccessKeyId\":\"A\\u0042\",\"SecretAccessKey\":\"s\\/k\",\"Token\":\"t\","
	                         "\"Expiration\":\"2015-08-30T18:36:00Z\",\"N\":12.5e1,\"B\":true,\"Z\":null}");
	EXPECT_EQ(t.credentials.access_key_id, "AB");
	EXPECT_EQ(t.credentials.secret_access_key, "s/k");
	for (const char *bad : {"", "[]", "{", "{\"AccessKeyId\":{}}", "{\"a\":\"b\"} x", "{\"a\" \"b\"}",
	                        "{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"S\",\"Token\":\"T\"}",
	                        "{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"S\",\"Token\":\"T\",\"Expiration\":\"soon\"}",
	                        "{\"a\":\"\\ud800\"}", "{\"a\":\"\x01\"}", "{\"AccessKeyId\":\"\\n\"}"}) {
		try {
			ParseImdsCredentials(bad);
			ADD_FAILURE() << "accepted " << bad;
		} catch (const Error &e) {
			EXPECT_EQ(e.kind(), ErrorKind::kSystemic) << bad;
		}
	}
}

// --- Sources ---------------------------------------------------------------------

class TokenFile {
  public:
	TokenFile() {
		char tmpl[] = "/tmp/rs-token-XXXXXX";
		const int fd = mkstemp(tmpl);
		if (fd >= 0)
			close(fd);
		path = tmpl;
	}
	~TokenFile() {
		std::remove(path.c_str());
	}
	void Write(const std::string &content) {
		std::ofstream(path, std::ios::trunc) << content;
	}
	std::string path;
};

TEST(WebIdentityTokenFileTest, ReadsTrimmedAndRefusesWhatIsNotAToken) {
	TokenFile f;
	f.Write(std::string("  ") + kJwt + "\n");
	EXPECT_EQ(ReadWebIdentityToken(f.path), kJwt);

	f.Write("\n\n");
	Error e = Thrown([&] { ReadWebIdentityToken(f.path); });
	EXPECT_EQ(e.sqlstate(), "28000");
	EXPECT_EQ(std::string(e.what()), "could not read the web identity token file \"" + f.path + "\"");
	EXPECT_EQ(e.detail(), "It is empty.");

	f.Write(std::string(kJwt) + "\x01");
	e = Thrown([&] { ReadWebIdentityToken(f.path); });
	EXPECT_NE(e.detail().find("non-printable"), std::string::npos);

	f.Write(std::string(kMaxWebIdentityTokenBytes + 1, 'a'));
	e = Thrown([&] { ReadWebIdentityToken(f.path); });
	EXPECT_NE(e.detail().find("larger than"), std::string::npos);

	e = Thrown([&] { ReadWebIdentityToken(f.path + ".missing"); });
	EXPECT_NE(e.detail().find("No such file or directory"), std::string::npos);
	EXPECT_NE(e.hint().find("AWS_WEB_IDENTITY_TOKEN_FILE"), std::string::npos);

	e = Thrown([&] { ReadWebIdentityToken("/tmp"); });
	EXPECT_NE(e.detail().find("not a regular file"), std::string::npos) << e.detail();

	// A FIFO must not block the server.
	const std::string fifo = f.path + ".fifo";
	ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
	e = Thrown([&] { ReadWebIdentityToken(fifo); });
	EXPECT_NE(e.detail().find("not a regular file"), std::string::npos);
	std::remove(fifo.c_str());
}

class SourcesTest : public ::testing::Test {
  protected:
	SourceSettings Settings(CredentialSource source) {
		SourceSettings s;
		s.source = source;
		s.sts.endpoint = uri::ParseEndpoint(sts.url());
		s.sts.region = "us-east-1";
		s.imds.endpoint = uri::ParseEndpoint(imds.url());
		return s;
	}
	FakeHttpServer sts;
	FakeHttpServer imds;
	http::Engine engine;
};

TEST_F(SourcesTest, WebIdentityReadsTheTokenFileAtEveryFetch) {
	TokenFile f;
	SourceSettings s = Settings(CredentialSource::kWebIdentity);
	s.web_identity_token_file = f.path;
	s.environment_role_arn = kRole; // AWS_ROLE_ARN
	sts.SetHandler([](const FakeRequest &) {
		return FakeResponse::Status(200, StsCredentialsXml("AssumeRoleWithWebIdentity"));
	});
	f.Write("token-one");
	FetchedCredentials got = FetchCredentials(engine, s, kNever);
	EXPECT_EQ(got.source, "web_identity");
	EXPECT_EQ(got.credentials.credentials.session_token, kTempToken);
	f.Write("token-two"); // Kubernetes rotated it
	FetchCredentials(engine, s, kNever);
	const auto requests = sts.Requests();
	ASSERT_EQ(requests.size(), 2u);
	EXPECT_EQ(Form(requests[0].body)["WebIdentityToken"], "token-one");
	EXPECT_EQ(Form(requests[1].body)["WebIdentityToken"], "token-two");
	EXPECT_EQ(Form(requests[1].body)["RoleArn"], kRole);
	// reportstore.role_arn wins over AWS_ROLE_ARN.
	s.role_arn = "arn:aws:iam:::role/other-role";
	FetchCredentials(engine, s, kNever);
	EXPECT_EQ(Form(sts.Requests()[2].body)["RoleArn"], "arn:aws:iam:::role/other-role");
	EXPECT_EQ(SourceLabel(s), "web_identity"); // no AssumeRole on top of a web identity

	// A missing file: the step is in the message, STS is not asked.
	std::remove(f.path.c_str());
	const Error e = Thrown([&] { FetchCredentials(engine, s, kNever); });
	EXPECT_NE(std::string(e.what()).find("could not read the web identity token file"), std::string::npos);
	EXPECT_EQ(sts.RequestCount(), 3u);
}

TEST_F(SourcesTest, InstanceWithAssumeRoleSignsWithTheInstanceCredentials) {
	imds.SetHandler([](const FakeRequest &r) { return Imds(r); });
	sts.SetHandler([](const FakeRequest &) {
		return FakeResponse::Status(200, StsCredentialsXml("AssumeRole", "ASIAASSUMED"));
	});
	SourceSettings s = Settings(CredentialSource::kInstance);
	FetchedCredentials got = FetchCredentials(engine, s, kNever);
	EXPECT_EQ(got.source, "instance");
	EXPECT_EQ(got.credentials.credentials.access_key_id, "ASIAINSTANCE");
	EXPECT_EQ(sts.RequestCount(), 0u);

	s.role_arn = kRole;
	got = FetchCredentials(engine, s, kNever, [] { return kNow; });
	EXPECT_EQ(got.source, "instance + assume_role");
	EXPECT_EQ(got.credentials.credentials.access_key_id, "ASIAASSUMED");
	const FakeRequest r = sts.Requests()[0];
	const Credentials instance{"ASIAINSTANCE", kTempSecret, kTempToken};
	EXPECT_TRUE(SignatureMatches(r, "us-east-1", "sts", &instance));
}

TEST_F(SourcesTest, StaticKeysWithAssumeRole) {
	sts.SetHandler([](const FakeRequest &) { return FakeResponse::Status(200, StsCredentialsXml("AssumeRole")); });
	SourceSettings s = Settings(CredentialSource::kStatic);
	s.static_credentials = kBase;
	EXPECT_FALSE(IsTemporary(s));
	s.role_arn = kRole;
	EXPECT_TRUE(IsTemporary(s));
	const FetchedCredentials got = FetchCredentials(engine, s, kNever, [] { return kNow; });
	EXPECT_EQ(got.source, "static + assume_role");
	EXPECT_TRUE(SignatureMatches(sts.Requests()[0], "us-east-1", "sts", &kBase));
}

TEST_F(SourcesTest, AutoFollowsTheSdkOrder) {
	SourceSettings s = Settings(CredentialSource::kAuto);
	EXPECT_EQ(EffectiveSource(s), CredentialSource::kInstance);
	EXPECT_EQ(SourceLabel(s), "auto: instance");
	s.web_identity_token_file = "/var/run/secrets/eks.amazonaws.com/serviceaccount/token";
	EXPECT_EQ(EffectiveSource(s), CredentialSource::kWebIdentity);
	EXPECT_EQ(SourceLabel(s), "auto: web_identity");
	s.static_credentials = kBase;
	s.static_from_environment = true;
	EXPECT_EQ(EffectiveSource(s), CredentialSource::kStatic);
	EXPECT_EQ(SourceLabel(s), "auto: environment");
	EXPECT_FALSE(IsTemporary(s));
	s.role_arn = kRole;
	EXPECT_EQ(SourceLabel(s), "auto: environment + assume_role");
}

TEST_F(SourcesTest, SettingsThatCannotGiveCredentials) {
	SourceSettings s = Settings(CredentialSource::kStatic);
	Error e = Thrown([&] { CheckSourceSettings(s); });
	EXPECT_STREQ(e.what(), "no S3 credentials are configured");
	EXPECT_EQ(e.kind(), ErrorKind::kConfig);
	EXPECT_EQ(e.sqlstate(), "28000");

	s.source = CredentialSource::kWebIdentity;
	e = Thrown([&] { CheckSourceSettings(s); });
	EXPECT_STREQ(e.what(), "no web identity token file is configured");
	s.web_identity_token_file = "/tmp/token";
	e = Thrown([&] { CheckSourceSettings(s); });
	EXPECT_STREQ(e.what(), "web identity credentials need the ARN of the role to assume");
	s.role_arn = "not-an-arn";
	EXPECT_EQ(Thrown([&] { CheckSourceSettings(s); }).sqlstate(), "22023");
	s.role_arn = kRole;
	s.role_session_name = "a b";
	EXPECT_EQ(Thrown([&] { CheckSourceSettings(s); }).sqlstate(), "22023");
}

TEST_F(SourcesTest, TheFingerprintFollowsEverySettingButNeverHoldsASecret) {
	SourceSettings s = Settings(CredentialSource::kStatic);
	s.static_credentials = kBase;
	s.role_arn = kRole;
	const std::string base = Fingerprint(s);
	EXPECT_EQ(base.size(), 64u);
	EXPECT_EQ(Fingerprint(s), base);
	auto differs = [&](auto change) {
		SourceSettings t = s;
		change(t);
		return Fingerprint(t) != base;
	};
	EXPECT_TRUE(differs([](SourceSettings &t) { t.static_credentials.secret_access_key = "other"; }));
	EXPECT_TRUE(differs([](SourceSettings &t) { t.role_arn = "arn:aws:iam:::role/another"; }));
	EXPECT_TRUE(differs([](SourceSettings &t) { t.role_session_name = "other"; }));
	EXPECT_TRUE(differs([](SourceSettings &t) { t.source = CredentialSource::kAuto; }));
	EXPECT_TRUE(differs([](SourceSettings &t) { t.sts.endpoint = uri::ParseEndpoint("https://sts.example.com"); }));
	EXPECT_TRUE(differs([](SourceSettings &t) { t.imds.endpoint = uri::ParseEndpoint("http://127.0.0.2"); }));
	EXPECT_TRUE(differs([](SourceSettings &t) { t.web_identity_token_file = "/x"; }));
}

} // namespace
} // namespace reportstore::aws
