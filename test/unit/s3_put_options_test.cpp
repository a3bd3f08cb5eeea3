// Options of an upload: server-side encryption (SSE-S3, SSE-KMS) and the
// storage class, sent signed and checked before anything is sent.
#include "core/s3/client.hpp"

#include <gtest/gtest.h>

#include "s3_test_support.hpp"

namespace reportstore::s3 {
namespace {

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

TEST_F(S3ClientTest, ConditionalPutSendsSignedIfNoneMatch) {
	server.SetHandler([](const FakeRequest &r) { return S3PutOk(r); });
	const std::string body = "never replaces";
	PutRequest req;
	req.bucket = "reports";
	req.key = kReportKey;
	req.body = body;
	req.if_none_match = true;
	req.metadata.emplace_back(kWriterMetaKey, "0b8e9c1e-6c7d-4f35-9a57-0d3c2b1a0f99");
	(void)client.Put(req, kNever);
	ASSERT_EQ(server.RequestCount(), 1u);
	const FakeRequest r = server.Requests().at(0);
	EXPECT_EQ(*r.Header("if-none-match"), "*");
	EXPECT_EQ(*r.Header("x-amz-meta-reportstore-writer"), "0b8e9c1e-6c7d-4f35-9a57-0d3c2b1a0f99");
	const std::string &auth = *r.Header("authorization");
	EXPECT_NE(auth.find("if-none-match"), std::string::npos) << auth;
	EXPECT_TRUE(SignatureMatches(r));

	// Without the flag, no condition is sent.
	req.if_none_match = false;
	(void)client.Put(req, kNever);
	EXPECT_EQ(server.Requests().at(1).Header("if-none-match"), nullptr);
}

TEST_F(S3ClientTest, ConditionalPutOfAnExistingKeyFailsWithExists) {
	server.Enqueue(FakeResponse::Status(
	    412, "<Error><Code>PreconditionFailed</Code><Message>At least one of the pre-conditions you specified did not "
	         "hold</Message></Error>"));
	const std::string body = "second writer";
	PutRequest req;
	req.bucket = "reports";
	req.key = kReportKey;
	req.body = body;
	req.if_none_match = true;
	Error e = Capture([&] { (void)client.Put(req, kNever); });
	EXPECT_EQ(e.kind(), ErrorKind::kExists) << e.what();
	EXPECT_EQ(e.sqlstate(), "42710");
}

TEST_F(S3ClientTest, ConditionalMultipartPutChecksFirstAndSendsNothingWhenTheKeyExists) {
	Config config = MakeConfig(server.url());
	config.multipart_threshold = 5 << 20;
	config.part_size = 5 << 20;
	Client small_parts(config, engine, FixedClock());
	server.SetHandler([](const FakeRequest &r) {
		FakeResponse resp = FakeResponse::Status(r.method == "HEAD" ? 200 : 500);
		resp.headers = {{"Content-Length", "3"}, {"ETag", "\"abc\""}};
		return resp;
	});
	const std::string body(6 << 20, 'x');
	PutRequest req;
	req.bucket = "reports";
	req.key = kReportKey;
	req.body = body;
	req.if_none_match = true;
	Error e = Capture([&] { (void)small_parts.Put(req, kNever); });
	EXPECT_EQ(e.kind(), ErrorKind::kExists) << e.what();
	ASSERT_EQ(server.RequestCount(), 1u); // the HEAD only: no upload started
	EXPECT_EQ(server.Requests().at(0).method, "HEAD");
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

TEST_F(S3ClientTest, PutRefusedStorageClassIsNamedInTheError) {
	// Ceph RGW 16 refuses a class its placement target lacks with a bare
	// InvalidArgument (no message); AWS says InvalidStorageClass.
	for (const std::string code : {"InvalidArgument", "InvalidStorageClass"}) {
		SCOPED_TRACE(code);
		server.Enqueue(FakeResponse::Status(400, "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>" + code +
		                                             "</Code><BucketName>reports</BucketName>"
		                                             "<RequestId>tx1</RequestId></Error>"));
		PutRequest req;
		req.bucket = "reports";
		req.key = kReportKey;
		req.body = "x";
		req.storage_class = "GLACIER";
		Error e = Capture([&] { client.Put(req, kNever); });
		EXPECT_NE(e.detail().find(code), std::string::npos) << e.detail();
		EXPECT_NE(e.detail().find("GLACIER"), std::string::npos) << e.detail();
		EXPECT_NE(e.hint().find("reportstore.storage_class"), std::string::npos) << e.hint();
		EXPECT_NE(e.hint().find("GLACIER"), std::string::npos) << e.hint();
	}
	// Without a storage class, or for other errors, nothing about classes.
	server.Enqueue(FakeResponse::Status(400, ErrorXml("InvalidArgument", "bad")));
	PutRequest plain;
	plain.bucket = "reports";
	plain.key = kReportKey;
	plain.body = "x";
	Error e = Capture([&] { client.Put(plain, kNever); });
	EXPECT_EQ(e.hint().find("storage_class"), std::string::npos) << e.hint();
	server.Enqueue(FakeResponse::Status(400, ErrorXml("InvalidRequest", "needs TLS")));
	plain.storage_class = "STANDARD_IA";
	Error e2 = Capture([&] { client.Put(plain, kNever); });
	EXPECT_EQ(e2.hint().find("storage_class"), std::string::npos) << e2.hint();
}

TEST_F(S3ClientTest, PutWithSseS3NotConfirmedIsRefused) {
	// Ceph RGW 16: 200 with the body's MD5 as ETag, no x-amz-server-side-encryption,
	// and the object stored unencrypted.
	server.SetHandler(S3PutOk);
	PutRequest req;
	req.bucket = "reports";
	req.key = kReportKey;
	req.body = "should be encrypted";
	req.sse = "AES256";
	Error e = Capture([&] { client.Put(req, kNever); });
	EXPECT_EQ(e.kind(), ErrorKind::kConfig);
	EXPECT_EQ(e.sqlstate(), "0A000");
	EXPECT_NE(std::string(e.what()).find(kReportKey), std::string::npos) << e.what();
	EXPECT_NE(e.detail().find("did not confirm server-side encryption AES256"), std::string::npos) << e.detail();
	EXPECT_NE(e.hint().find("reportstore.sse"), std::string::npos) << e.hint();
	// A server that says something else is not taken at its word either.
	server.SetHandler([](const FakeRequest &r) {
		FakeResponse resp = S3PutOk(r);
		resp.headers.emplace_back("x-amz-server-side-encryption", "aws:kms");
		return resp;
	});
	Error e2 = Capture([&] { client.Put(req, kNever); });
	EXPECT_NE(e2.detail().find("it answered x-amz-server-side-encryption: aws:kms"), std::string::npos)
	    << e2.detail();
	// Without sse nothing is required.
	server.SetHandler(S3PutOk);
	req.sse.clear();
	EXPECT_EQ(client.Put(req, kNever).etag, Md5Hex(req.body));
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

} // namespace
} // namespace reportstore::s3
