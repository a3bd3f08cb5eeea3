#include <string>

#include <gtest/gtest.h>

#include "core/error.hpp"
#include "core/uri.hpp"

namespace reportstore::uri {
namespace {

TEST(UriEncodeTest, Table) {
	struct Case {
		std::string in;
		bool encode_slash;
		std::string out;
	} cases[] = {
	    {"", true, ""},
	    {"AZaz09-._~", true, "AZaz09-._~"},
	    {"a b", true, "a%20b"},
	    {"a/b", true, "a%2Fb"},
	    {"a/b", false, "a/b"},
	    {"+", true, "%2B"},
	    {"=", true, "%3D"},
	    {"%", true, "%25"},
	    {"%20", false, "%2520"},
	    {"!*'();:@&=+$,?#[]", true, "%21%2A%27%28%29%3B%3A%40%26%3D%2B%24%2C%3F%23%5B%5D"},
	    {"été", true, "%C3%A9t%C3%A9"},
	    {"日本", false, "%E6%97%A5%E6%9C%AC"},
	    {std::string("\x00\x7f\xff", 3), true, "%00%7F%FF"},
	    {"/reports/x y/", false, "/reports/x%20y/"},
	};
	for (const auto &c : cases)
		EXPECT_EQ(UriEncode(c.in, c.encode_slash), c.out) << c.in;
}

TEST(ParseEndpointTest, GoodEndpoints) {
	Endpoint e = ParseEndpoint("https://s3.eu-west-1.amazonaws.com");
	EXPECT_EQ(e.scheme, "https");
	EXPECT_EQ(e.host, "s3.eu-west-1.amazonaws.com");
	EXPECT_EQ(e.port, 443);
	EXPECT_FALSE(e.explicit_port);
	EXPECT_FALSE(e.ipv6);
	EXPECT_EQ(e.HostHeader(), "s3.eu-west-1.amazonaws.com");
	EXPECT_EQ(e.Origin(), "https://s3.eu-west-1.amazonaws.com");

	e = ParseEndpoint("http://127.0.0.1:9000/");
	EXPECT_EQ(e.scheme, "http");
	EXPECT_EQ(e.host, "127.0.0.1");
	EXPECT_EQ(e.port, 9000);
	EXPECT_TRUE(e.explicit_port);
	EXPECT_EQ(e.HostHeader(), "127.0.0.1:9000");
	EXPECT_EQ(e.Origin(), "http://127.0.0.1:9000");

	e = ParseEndpoint("HTTPS://MinIO.Example.com:443");
	EXPECT_EQ(e.scheme, "https");
	EXPECT_EQ(e.host, "minio.example.com");
	EXPECT_EQ(e.port, 443);
	EXPECT_EQ(e.HostHeader(), "minio.example.com"); // default port omitted

	e = ParseEndpoint("http://minio");
	EXPECT_EQ(e.port, 80);
	EXPECT_EQ(e.HostHeader(), "minio");

	e = ParseEndpoint("http://[::1]:9000");
	EXPECT_TRUE(e.ipv6);
	EXPECT_EQ(e.host, "::1");
	EXPECT_EQ(e.port, 9000);
	EXPECT_EQ(e.HostHeader(), "[::1]:9000");
	EXPECT_EQ(e.Origin(), "http://[::1]:9000");

	e = ParseEndpoint("https://[2001:DB8::1]");
	EXPECT_EQ(e.host, "2001:db8::1");
	EXPECT_EQ(e.port, 443);
	EXPECT_EQ(e.HostHeader(), "[2001:db8::1]");

	e = ParseEndpoint("http://h:1");
	EXPECT_EQ(e.port, 1);
	e = ParseEndpoint("http://h:65535");
	EXPECT_EQ(e.port, 65535);
}

void ExpectBadEndpoint(const std::string &url) {
	try {
		ParseEndpoint(url);
		ADD_FAILURE() << "accepted " << url;
	} catch (const Error &e) {
		EXPECT_EQ(e.kind(), ErrorKind::kConfig) << url;
		EXPECT_EQ(e.sqlstate(), "22023") << url;
		EXPECT_FALSE(std::string(e.what()).empty());
		EXPECT_NE(std::string(e.what()).back(), '.') << "PostgreSQL messages have no trailing period";
		EXPECT_FALSE(e.hint().empty()) << url;
	}
}

TEST(ParseEndpointTest, BadEndpoints) {
	for (const char *url : {
	         "",
	         "s3.amazonaws.com",
	         "ftp://host",
	         "file:///etc/passwd",
	         "https://",
	         "https:///path",
	         "http://:9000",
	         "http://host:",
	         "http://host:0",
	         "http://host:65536",
	         "http://host:99999999",
	         "http://host:-1",
	         "http://host:80a",
	         "http://host/bucket",
	         "http://host/bucket/",
	         "http://host//",
	         "http://host?x=1",
	         "http://host/?x=1",
	         "http://host#frag",
	         "http://ho st",
	         " http://host",
	         "http://host\n",
	         "http://-host",
	         "http://host-.com",
	         "http://a..b",
	         "http://host.",
	         "http://h_st",
	         "http://[::1",
	         "http://[::1]x",
	         "http://[zz::1]",
	         "http://[]",
	         "http://h\xc3\xa9st",
	     })
		ExpectBadEndpoint(url);
}

TEST(ParseEndpointTest, CredentialsAreRejectedWithoutEchoingThem) {
	for (const char *url : {"http://alice:secret@host", "https://alice:secret@host:9000/", "http://secret@host",
	                        "http://host/x?p=alice:secret@"}) {
		try {
			ParseEndpoint(url);
			ADD_FAILURE() << "accepted a URL with credentials";
		} catch (const Error &e) {
			EXPECT_EQ(e.sqlstate(), "22023");
			EXPECT_EQ(e.kind(), ErrorKind::kConfig);
			for (const std::string &text : {std::string(e.what()), e.detail(), e.hint()}) {
				EXPECT_EQ(text.find("secret"), std::string::npos) << text;
				EXPECT_EQ(text.find("alice"), std::string::npos) << text;
			}
		}
	}
}

TEST(BucketNameTest, Valid) {
	for (const char *b : {"abc", "my-bucket", "my.bucket.name", "reports-2024", "0bucket9", "a1-b2.c3",
	                      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" /* 63 */})
		EXPECT_TRUE(IsValidBucketName(b)) << b;
}

TEST(BucketNameTest, Invalid) {
	for (const char *b : {"",
	                      "ab",
	                      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" /* 64 */,
	                      "MyBucket",
	                      "my_bucket",
	                      "my bucket",
	                      "-bucket",
	                      "bucket-",
	                      ".bucket",
	                      "bucket.",
	                      "my..bucket",
	                      "my.-bucket",
	                      "my-.bucket",
	                      "192.168.5.4",
	                      "xn--bucket",
	                      "sthree-bucket",
	                      "bucket-s3alias",
	                      "bucket--ol-s3",
	                      "bu/cket",
	                      "bucket\xc3\xa9"})
		EXPECT_FALSE(IsValidBucketName(b)) << b;
	EXPECT_TRUE(IsValidBucketName("192.168.5.4a"));
}

TEST(S3UriTest, Parse) {
	S3Location loc;
	ASSERT_TRUE(ParseS3Uri("s3://my-bucket/reports/a/report.csv", &loc));
	EXPECT_EQ(loc.bucket, "my-bucket");
	EXPECT_EQ(loc.key, "reports/a/report.csv");
	EXPECT_EQ(loc.ToUri(), "s3://my-bucket/reports/a/report.csv");

	ASSERT_TRUE(ParseS3Uri("s3://bkt/a b/été.json", &loc));
	EXPECT_EQ(loc.key, "a b/été.json");

	ASSERT_TRUE(ParseS3Uri("s3://bkt/dir/", &loc));
	EXPECT_EQ(loc.key, "dir/");

	for (const char *bad : {"", "s3://", "s3://bucket", "s3://bucket/", "S3://bucket/key", "s3:/bucket/key",
	                        "https://bucket/key", "s3://Bad_Bucket/key", "s3:///key", "s3://ab/key"})
		EXPECT_FALSE(ParseS3Uri(bad, &loc)) << bad;
}

TEST(ReportObjectKeyTest, Valid) {
	EXPECT_EQ(ReportObjectKey("0f8fad5b-d9cb-469f-a165-70867728950e", "csv"),
	          "reports/0f8fad5b-d9cb-469f-a165-70867728950e/report.csv");
	EXPECT_EQ(ReportObjectKey("00000000-0000-0000-0000-000000000000", "json_lines2"),
	          "reports/00000000-0000-0000-0000-000000000000/report.json_lines2");
	EXPECT_EQ(ReportObjectKey("ffffffff-ffff-ffff-ffff-ffffffffffff", std::string(32, 'x')),
	          "reports/ffffffff-ffff-ffff-ffff-ffffffffffff/report." + std::string(32, 'x'));
}

void ExpectBadKey(const std::string &id, const std::string &format) {
	try {
		ReportObjectKey(id, format);
		ADD_FAILURE() << "accepted " << id << " / " << format;
	} catch (const Error &e) {
		EXPECT_EQ(e.sqlstate(), "22023");
		EXPECT_FALSE(e.hint().empty());
	}
}

TEST(ReportObjectKeyTest, RejectsBadIds) {
	const std::string fmt = "csv";
	for (const char *id : {
	         "",
	         "../../etc/passwd",
	         "0f8fad5b-d9cb-469f-a165-70867728950",    // 35
	         "0f8fad5b-d9cb-469f-a165-70867728950e0",  // 37
	         "0F8FAD5B-D9CB-469F-A165-70867728950E",   // uppercase
	         "0f8fad5bd9cb469fa16570867728950e",       // no dashes
	         "{0f8fad5b-d9cb-469f-a165-70867728950e}", // braces
	         "0f8fad5b-d9cb-469f-a165_70867728950e",   // wrong separator
	         "0f8fad5b-d9cb-469f-a165-7086772895/e",   // slash
	         "0f8fad5b-d9cb-469f-a165-70867728950g",   // not hex
	         "0f8fad5-bd9cb-469f-a165-70867728950e",   // dash misplaced
	         "../fad5b-d9cb-469f-a165-70867728950e",
	     })
		ExpectBadKey(id, fmt);
}

TEST(ReportObjectKeyTest, RejectsBadFormats) {
	const std::string id = "0f8fad5b-d9cb-469f-a165-70867728950e";
	for (const std::string &fmt : {std::string(""), std::string("CSV"), std::string("c.sv"), std::string("../x"),
	                               std::string("a/b"), std::string("json-lines"), std::string(33, 'x'),
	                               std::string("csv "), std::string("\xc3\xa9t\xc3\xa9"), std::string("csv\0x", 5)})
		ExpectBadKey(id, fmt);
}

} // namespace
} // namespace reportstore::uri

namespace reportstore::uri {
namespace {

TEST(ParseBucketListTest, NamesAreCheckedLikeBuckets) {
	std::vector<std::string> names;
	EXPECT_TRUE(ParseBucketList("", &names));
	EXPECT_TRUE(names.empty());
	EXPECT_TRUE(ParseBucketList("old-reports, archive.2024 ,reports2", &names));
	EXPECT_EQ(names, (std::vector<std::string>{"old-reports", "archive.2024", "reports2"}));
	for (const char *bad : {"a..b", "127.0.0.1", "UPPER", "ok,,ok2", "ab", "ok, x/y", "bucket-", "xn--bucket"})
		EXPECT_FALSE(ParseBucketList(bad, nullptr)) << bad;
}

} // namespace
} // namespace reportstore::uri

namespace reportstore::uri {
namespace {

constexpr const char *kId = "0f8fad5b-d9cb-469f-a165-70867728950e";

TEST(ReportGenerationKeyTest, NamesTheGenerationBetweenIdAndLeaf) {
	EXPECT_EQ(ReportGenerationKey(kId, "json", "65a1b2c3d4e5f60718293a4b"),
	          "reports/0f8fad5b-d9cb-469f-a165-70867728950e/65a1b2c3d4e5f60718293a4b/report.json");
	for (const char *bad : {"", "65a1b2c3", "65A1B2C3D4E5F60718293A4B", "65a1b2c3d4e5f60718293a4g",
	                        "../../../../../../../../..", "65a1b2c3d4e5f60718293a4b/"}) {
		SCOPED_TRACE(bad);
		EXPECT_THROW(ReportGenerationKey(kId, "json", bad), Error);
	}
	EXPECT_THROW(ReportGenerationKey("not-a-uuid", "json", "65a1b2c3d4e5f60718293a4b"), Error);
}

TEST(ReportGenerationKeyTest, NewGenerationsAreValidOrderedByTimeAndDistinct) {
	const std::string a = NewGeneration(0x65a1b2c3LL);
	const std::string b = NewGeneration(0x65a1b2c3LL);
	EXPECT_EQ(a.size(), 24u);
	EXPECT_EQ(a.substr(0, 8), "65a1b2c3");
	EXPECT_NE(a, b); // 64 random bits each
	EXPECT_LT(NewGeneration(0x10), NewGeneration(0x11));
	EXPECT_NO_THROW(ReportGenerationKey(kId, "csv", a));
}

TEST(IsReportKeyTest, AcceptsTheSeedKeyAndGenerationsOfThisReportOnly) {
	const std::string generation = NewGeneration(1700000000);
	EXPECT_TRUE(IsReportKey(ReportObjectKey(kId, "json"), kId, "json"));
	EXPECT_TRUE(IsReportKey(ReportGenerationKey(kId, "json", generation), kId, "json"));
	// another report, another format, another shape
	EXPECT_FALSE(IsReportKey(ReportGenerationKey(kId, "json", generation), "1f8fad5b-d9cb-469f-a165-70867728950e",
	                         "json"));
	EXPECT_FALSE(IsReportKey(ReportGenerationKey(kId, "json", generation), kId, "csv"));
	EXPECT_FALSE(IsReportKey(std::string("reports/") + kId + "/x/report.json", kId, "json"));
	EXPECT_FALSE(IsReportKey(std::string("reports/") + kId + "/" + generation + "/" + generation + "/report.json",
	                         kId, "json"));
	EXPECT_FALSE(IsReportKey(std::string("reports/") + kId + "/../../other/report.json", kId, "json"));
	EXPECT_FALSE(IsReportKey(std::string("reports/") + kId + "/ABCDEF0123456789ABCDEF01/report.json", kId, "json"));
	EXPECT_FALSE(IsReportKey("", kId, "json"));
	EXPECT_FALSE(IsReportKey(ReportObjectKey(kId, "json"), "bad", "json"));
}

} // namespace
} // namespace reportstore::uri
