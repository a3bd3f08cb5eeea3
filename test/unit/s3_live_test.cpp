// INTEGRATION TEST, not a unit test: a round trip against a real S3 server
// (MinIO, Ceph RGW, AWS), run by the integration suite with the
// REPORTSTORE_TEST_S3_* variables set (see test/run_all.sh). Without them it
// is reported as skipped. It lives in the unit binary to reuse the client
// and its helpers.
#include "core/s3/client.hpp"

#include <gtest/gtest.h>

#include <cstdlib>

#include "core/crypto.hpp"
#include "core/uri.hpp"
#include "s3_test_support.hpp"

namespace reportstore::s3 {
namespace {

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
		EXPECT_EQ(pr.etag,
		          ExpectedMultipartEtag({lv.substr(0, 5u << 20), lv.substr(5u << 20, 5u << 20), lv.substr(10u << 20)}));
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
