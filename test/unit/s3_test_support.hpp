// Shared by the S3 client tests (s3_*_test.cpp): fixed credentials and
// clock, a SigV4 check of what the fake server received, answers like S3's,
// and the capture of a thrown reportstore::Error.
#pragma once

#include <gtest/gtest.h>

#include <ctime>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"
#include "core/s3/client.hpp"
#include "fake_http_server.hpp"

namespace reportstore::s3 {

using reportstore::testing::FakeHttpServer;
using reportstore::testing::FakeRequest;
using reportstore::testing::FakeResponse;

inline constexpr const char *kAccessKey = "AKIDTESTACCESSKEY";
inline constexpr const char *kSecret = "s3cr3t/K7MDENG+bPxRfiCYSECRETKEY";
inline constexpr const char *kSessionToken = "SESSIONTOKENVALUE1234";
inline constexpr std::time_t kNow = 1440938160; // 2015-08-30T12:36:00Z
inline constexpr const char *kReportKey = "reports/8f2c8d9e-4b7a-4c4e-9d0e-1a2b3c4d5e6f/report.json";

inline const http::InterruptProbe kNever = [] { return false; };

std::string Hex(std::string_view s);      // hex SHA-256
std::string Md5Hex(std::string_view s);   // hex MD5
std::string Md5Bytes(std::string_view s); // binary MD5
std::string PercentDecode(std::string_view s);
std::vector<std::string> Split(const std::string &s, char sep);
// S3's multipart ETag, computed independently of the client.
std::string ExpectedMultipartEtag(const std::vector<std::string_view> &parts);
// n bytes that do not compress (xorshift), the same for the same seed.
std::string PseudoRandom(std::size_t n, unsigned seed = 1);
// Query parameters of a received request, decoded.
std::map<std::string, std::string> QueryMap(const FakeRequest &r);

// Recomputes the SigV4 Authorization of a received request from what was
// actually sent (Host header, encoded path, query, signed headers): a request
// whose signed view differs from the wire view fails here, as on real S3.
// service and credentials: those of another signed API (STS), when given.
::testing::AssertionResult SignatureMatches(const FakeRequest &req, const std::string &region = "us-east-1",
                                            const std::string &service = "s3",
                                            const aws::Credentials *credentials = nullptr);

Config MakeConfig(const std::string &endpoint, UrlStyle style = UrlStyle::kPath);
aws::Clock FixedClock(); // always kNow

// Answers PUTs like S3: ETag = MD5 of the received body.
FakeResponse S3PutOk(const FakeRequest &req);

std::string ErrorXml(const std::string &code, const std::string &message, const std::string &extra = "");

// Fails the test if the error's message, detail or hint shows a secret.
void ExpectNoSecrets(const Error &e);

// The reportstore::Error fn throws (checked for secrets); a test failure if
// it throws none.
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

// A client of the scripted loopback server.
class S3ClientTest : public ::testing::Test {
  protected:
	FakeHttpServer server;
	http::Engine engine;
	Client client{MakeConfig(server.url()), engine, FixedClock()};
};

} // namespace reportstore::s3
