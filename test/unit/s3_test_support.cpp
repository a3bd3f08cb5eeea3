// See s3_test_support.hpp.
#include "s3_test_support.hpp"

#include <sstream>

#include "core/aws/sigv4.hpp"
#include "core/crypto.hpp"
#include "core/uri.hpp"

namespace reportstore::s3 {

namespace {

int HexVal(char c) {
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

} // namespace

std::string Hex(std::string_view s) {
	return crypto::HexEncode(crypto::Sha256(s));
}
std::string Md5Hex(std::string_view s) {
	return crypto::HexEncode(crypto::Md5(s));
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

::testing::AssertionResult SignatureMatches(const FakeRequest &req, const std::string &region,
                                            const std::string &service, const aws::Credentials *credentials) {
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
		if (name == "host" || name == "x-amz-date" || name == "x-amz-content-sha256" || name == "x-amz-security-token")
			continue;
		const std::string *v = req.Header(name);
		if (!v)
			return ::testing::AssertionFailure() << "signed header " << name << " was not sent";
		rs.headers.emplace_back(name, *v);
	}
	rs.payload_hash = *payload;
	aws::Credentials creds{kAccessKey, kSecret, req.Header("x-amz-security-token") ? kSessionToken : ""};
	if (credentials != nullptr)
		creds = *credentials;
	aws::Signer signer(creds, region, service, [] { return kNow; });
	for (const auto &h : signer.Sign(rs)) {
		if (h.first == "Authorization") {
			if (h.second == *auth)
				return ::testing::AssertionSuccess();
			return ::testing::AssertionFailure()
			       << "signature mismatch:\n  sent     " << *auth << "\n  expected " << h.second;
		}
	}
	return ::testing::AssertionFailure() << "signer returned no Authorization";
}

Config MakeConfig(const std::string &endpoint, UrlStyle style) {
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

FakeResponse S3PutOk(const FakeRequest &req) {
	FakeResponse r = FakeResponse::Status(200);
	r.headers = {{"ETag", "\"" + Md5Hex(req.body) + "\""},
	             {"x-amz-version-id", "v-" + std::to_string(req.body.size())}};
	return r;
}

std::string ErrorXml(const std::string &code, const std::string &message, const std::string &extra) {
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

std::string Md5Bytes(std::string_view s) {
	const auto d = crypto::Md5(s);
	return std::string(reinterpret_cast<const char *>(d.data()), d.size());
}

std::map<std::string, std::string> QueryMap(const FakeRequest &r) {
	std::map<std::string, std::string> m;
	for (const std::string &kv : Split(r.Query(), '&')) {
		const std::size_t eq = kv.find('=');
		m[PercentDecode(kv.substr(0, eq))] = eq == std::string::npos ? "" : PercentDecode(kv.substr(eq + 1));
	}
	return m;
}

std::string ExpectedMultipartEtag(const std::vector<std::string_view> &parts) {
	std::string cat;
	for (std::string_view p : parts)
		cat += Md5Bytes(p);
	return Md5Hex(cat) + "-" + std::to_string(parts.size());
}

std::string PseudoRandom(std::size_t n, unsigned seed) {
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

} // namespace reportstore::s3
