// Object operations of the S3 client (PUT, PutMany, GET, HEAD, DELETE,
// presigned GET) against the scripted loopback server. Encryption and
// storage class are in s3_put_options_test.cpp.
#include "core/s3/client.hpp"

#include <gtest/gtest.h>

#include <chrono>

#include "core/compression.hpp"
#include "core/crypto.hpp"
#include "core/uri.hpp"
#include "s3_test_support.hpp"

namespace reportstore::s3 {
namespace {

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
	EXPECT_EQ(*r.Header("content-md5"),
	          crypto::Base64Encode(std::string_view(reinterpret_cast<const char *>(crypto::Md5(body).data()), 16)));
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

// Answers GETs of /reports/k<N> with N bytes 'x', its SHA-256 in the
// metadata, after delay_ms; "k-bad" answers bytes that do not match it.
FakeResponse NumberedObject(const FakeRequest &req, int delay_ms) {
	const std::string name = req.Path().substr(std::string("/reports/").size());
	if (name == "k-bad") {
		FakeResponse bad = FakeResponse::Status(200, "corrupt");
		bad.headers = {{"x-amz-meta-sha256", Hex("intact")}};
		return bad;
	}
	if (name == "k-missing")
		return FakeResponse::Status(404, ErrorXml("NoSuchKey", "The specified key does not exist."));
	const std::string body(std::stoul(name.substr(1)), 'x');
	FakeResponse ok = FakeResponse::Status(200, body);
	ok.headers = {{"x-amz-meta-sha256", Hex(body)}};
	ok.delay_ms = delay_ms;
	return ok;
}

TEST_F(S3ClientTest, GetManyDownloadsConcurrentlyInOrder) {
	server.SetHandler([](const FakeRequest &req) { return NumberedObject(req, 200); });
	std::vector<GetRequest> reqs;
	for (int i = 1; i <= 8; ++i)
		reqs.push_back({{"reports", "k" + std::to_string(i * 1000), ""}, {}, -1});
	reqs[2].expected_sha256_hex = Hex(std::string(3000, 'x'));
	reqs[2].expected_size = 3000;
	std::vector<GetOutcome> out = client.GetMany(reqs, 4, kNever);
	ASSERT_EQ(out.size(), 8u);
	for (int i = 0; i < 8; ++i) {
		ASSERT_TRUE(out[i].info.has_value()) << i;
		EXPECT_FALSE(out[i].error.has_value());
		EXPECT_EQ(out[i].body, std::string((i + 1) * 1000, 'x'));
		EXPECT_EQ(out[i].info->size, static_cast<std::uint64_t>((i + 1) * 1000));
	}
	EXPECT_EQ(server.max_in_flight(), 4); // never more than asked, and as many
	for (const FakeRequest &r : server.Requests())
		EXPECT_TRUE(SignatureMatches(r));
}

TEST_F(S3ClientTest, GetManyStopsStartingAfterAFailure) {
	server.SetHandler([](const FakeRequest &req) { return NumberedObject(req, 0); });
	std::vector<GetRequest> reqs = {{{"reports", "k10", ""}, {}, -1},
	                                {{"reports", "k-bad", ""}, {}, -1},
	                                {{"reports", "k20", ""}, {}, -1},
	                                {{"reports", "k30", ""}, {}, -1}};
	std::vector<GetOutcome> out = client.GetMany(reqs, 1, kNever);
	ASSERT_EQ(out.size(), 4u);
	EXPECT_TRUE(out[0].info.has_value());
	ASSERT_TRUE(out[1].error.has_value());
	EXPECT_EQ(out[1].error->kind(), ErrorKind::kIntegrity);
	EXPECT_TRUE(out[1].body.empty()); // the bad bytes are not handed out
	EXPECT_FALSE(out[2].info.has_value() || out[2].error.has_value());
	EXPECT_FALSE(out[3].info.has_value() || out[3].error.has_value());
	EXPECT_EQ(server.RequestCount(), 2u);

	reqs[1].ref.key = "k-missing";
	out = client.GetMany(reqs, 4, kNever);
	ASSERT_TRUE(out[1].error.has_value());
	EXPECT_EQ(out[1].error->kind(), ErrorKind::kNotFound);
}

TEST_F(S3ClientTest, GetManyInterrupted) {
	server.SetHandler([](const FakeRequest &req) { return NumberedObject(req, 5000); });
	std::vector<GetRequest> reqs = {{{"reports", "k10", ""}, {}, -1}, {{"reports", "k20", ""}, {}, -1}};
	const auto started = std::chrono::steady_clock::now();
	const http::InterruptProbe probe = [&] {
		return std::chrono::steady_clock::now() - started > std::chrono::milliseconds(200);
	};
	std::vector<GetOutcome> out = client.GetMany(reqs, 2, probe);
	for (const GetOutcome &o : out) {
		ASSERT_TRUE(o.error.has_value());
		EXPECT_EQ(o.error->kind(), ErrorKind::kInterrupted);
	}
	EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(4)); // it does not hang
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

TEST_F(S3ClientTest, GetReturnsStoredBytesAndContentEncoding) {
	const std::string plain = "{\"rows\": [1, 2, 3], \"note\": \"compressed at rest\"}";
	const std::string stored = compression::Compress(compression::Codec::kGzip, plain);
	FakeResponse ok = FakeResponse::Status(200, stored);
	ok.headers = {
	    {"Content-Encoding", "gzip"}, {"Content-Type", "application/json"}, {"x-amz-meta-sha256", Hex(stored)}};
	server.Enqueue(ok);
	std::string got;
	ObjectInfo info =
	    client.Get({"reports", kReportKey, ""}, &got, kNever, "", static_cast<std::int64_t>(stored.size()));
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

} // namespace
} // namespace reportstore::s3
