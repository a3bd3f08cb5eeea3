// Operations on the bucket itself: ListObjectsV2 and the lifecycle
// configuration.
#include "core/s3/client.hpp"

#include <gtest/gtest.h>

#include "core/crypto.hpp"
#include "s3_test_support.hpp"

namespace reportstore::s3 {
namespace {

// --- ListObjectsV2 ------------------------------------------------------------

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
	EXPECT_EQ(r.target, "/reports?list-type=2&prefix=reports%2Fa%20b%2F&max-keys=2&continuation-token=tok%2F1%2B%3D");
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

// --- Bucket lifecycle ----------------------------------------------------------

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
	server.Enqueue(
	    FakeResponse::Status(404, ErrorXml("NoSuchLifecycleConfiguration", "The lifecycle configuration does not exist",
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
	    "<AbortIncompleteMultipartUpload><DaysAfterInitiation>1</DaysAfterInitiation>"
	    "</AbortIncompleteMultipartUpload></Rule></LifecycleConfiguration>";
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

} // namespace
} // namespace reportstore::s3

namespace reportstore::s3 {
namespace {

TEST_F(S3ClientTest, IncompleteUploadsAreListedPageByPageAndAborted) {
	server.Enqueue(FakeResponse::Status(
	    200, "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListMultipartUploadsResult "
	         "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Bucket>reports</Bucket>"
	         "<NextKeyMarker>reports/b/report.json</NextKeyMarker><NextUploadIdMarker>u2</NextUploadIdMarker>"
	         "<IsTruncated>true</IsTruncated>"
	         "<Upload><Key>reports/a/report.json</Key><UploadId>u1</UploadId>"
	         "<Initiated>2026-11-30T10:00:00.000Z</Initiated></Upload>"
	         "<Upload><Key>reports/b/report.json</Key><UploadId>u2</UploadId>"
	         "<Initiated>2026-11-30T11:00:00.000Z</Initiated></Upload></ListMultipartUploadsResult>"));
	const UploadsPage page = client.ListIncompleteUploads("reports", "reports/", "", "", 2, kNever);
	ASSERT_EQ(page.uploads.size(), 2u);
	EXPECT_EQ(page.uploads[1].key, "reports/b/report.json");
	EXPECT_EQ(page.uploads[1].upload_id, "u2");
	EXPECT_EQ(page.uploads[0].initiated, "2026-11-30T10:00:00.000Z");
	EXPECT_TRUE(page.is_truncated);
	EXPECT_EQ(page.next_key_marker, "reports/b/report.json");
	EXPECT_EQ(page.next_upload_id_marker, "u2");
	const FakeRequest first = server.Requests().at(0);
	EXPECT_EQ(first.method, "GET");
	EXPECT_EQ(first.Query(), "uploads&max-uploads=2&prefix=reports%2F");
	EXPECT_TRUE(SignatureMatches(first));

	server.Enqueue(FakeResponse::Status(
	    200, "<ListMultipartUploadsResult><IsTruncated>false</IsTruncated></ListMultipartUploadsResult>"));
	client.ListIncompleteUploads("reports", "reports/", page.next_key_marker, page.next_upload_id_marker, 2, kNever);
	const std::string query = server.Requests().at(1).Query();
	EXPECT_NE(query.find("key-marker=reports%2Fb%2Freport.json"), std::string::npos) << query;
	EXPECT_NE(query.find("upload-id-marker=u2"), std::string::npos) << query;

	server.Enqueue(FakeResponse::Status(204));
	client.AbortUpload("reports", "reports/a/report.json", "u1", kNever);
	const FakeRequest abort = server.Requests().at(2);
	EXPECT_EQ(abort.method, "DELETE");
	EXPECT_EQ(abort.Query(), "uploadId=u1");
	// Already gone: not an error. Refused: an error.
	server.Enqueue(FakeResponse::Status(404, ErrorXml("NoSuchUpload", "gone")));
	EXPECT_NO_THROW(client.AbortUpload("reports", "reports/a/report.json", "u1", kNever));
	server.Enqueue(FakeResponse::Status(403, ErrorXml("AccessDenied", "no")));
	Error e = Capture([&] { client.AbortUpload("reports", "reports/a/report.json", "u1", kNever); });
	EXPECT_EQ(e.kind(), ErrorKind::kSystemic);
}

TEST(S3XmlTest, ListMultipartUploadsRejectsBadDocuments) {
	for (const char *xml :
	     {"", "<ListBucketResult/>",
	      "<ListMultipartUploadsResult><Upload><Key>k</Key></Upload></ListMultipartUploadsResult>",
	      "<ListMultipartUploadsResult><IsTruncated>true</IsTruncated></ListMultipartUploadsResult>",
	      "<ListMultipartUploadsResult><IsTruncated>maybe</IsTruncated></ListMultipartUploadsResult>"}) {
		SCOPED_TRACE(xml);
		try {
			ParseListMultipartUploads(xml);
			ADD_FAILURE() << "accepted";
		} catch (const Error &e) {
			EXPECT_EQ(e.kind(), ErrorKind::kProtocol);
		}
	}
}

TEST_F(S3ClientTest, AnswersTellsAnAnsweringServerFromASilentOne) {
	server.Enqueue(FakeResponse::Status(403, ""));
	EXPECT_TRUE(client.Answers("reports", kNever)); // an error is an answer
	Config closed = MakeConfig("http://127.0.0.1:1");
	Client nobody(closed, engine, FixedClock());
	EXPECT_FALSE(nobody.Answers("reports", kNever));
}

} // namespace
} // namespace reportstore::s3
