// Multipart uploads of the S3 client against a fake S3 that speaks the
// multipart protocol. The parsing of the multipart responses is in
// s3_xml_test.cpp.
#include "core/s3/client.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <map>
#include <optional>
#include <set>

#include "core/crypto.hpp"
#include "core/uri.hpp"
#include "s3_test_support.hpp"

namespace reportstore::s3 {
namespace {

constexpr const char *kUploadId = "upl/1+x=y~ 2"; // must be encoded (and signed) in the query

// A fake S3 that speaks multipart: parts' ETags are their MD5s, the completed
// object's ETag is computed like S3's, HEAD reports what was uploaded. `tweak`
// may replace any answer. Safe to call from the server's threads; it must
// outlive the server (declare it first), whose threads call it until joined.
struct FakeMultipartS3 {
	using Clock = std::chrono::steady_clock;

	std::mutex mu;
	std::condition_variable arrived;  // a part or the abort arrived
	std::map<int, std::string> parts; // number -> bytes, as stored
	std::set<int> arrived_parts;      // numbers of the UploadParts received, tweaked or not
	std::optional<Clock::time_point> abort_arrived_at;
	std::map<std::string, Clock::time_point> marks; // set by tweaks (Mark)
	std::string meta_sha256;
	int part_delay_ms = 150;
	bool echo_sse = true; // false: like Ceph RGW 16, which does not confirm SSE-S3
	// No stored part is answered before this many parts have arrived (10 s at
	// most), so they are in flight together however slow the machine is.
	std::size_t hold_parts_until = 0;
	std::function<std::optional<FakeResponse>(const FakeRequest &)> tweak;

	FakeResponse operator()(const FakeRequest &r) {
		NoteArrival(r);
		if (tweak) {
			if (std::optional<FakeResponse> t = tweak(r))
				return *t;
		}
		std::unique_lock<std::mutex> lock(mu);
		const auto q = QueryMap(r);
		if (r.method == "POST" && q.count("uploads")) {
			meta_sha256 = r.Header("x-amz-meta-sha256") ? *r.Header("x-amz-meta-sha256") : "";
			FakeResponse resp = FakeResponse::Status(
			    200, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<InitiateMultipartUploadResult "
			         "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Bucket>reports</Bucket><Key>k</Key>"
			         "<UploadId>upl/1+x=y~ 2</UploadId></InitiateMultipartUploadResult>");
			if (const std::string *sse = r.Header("x-amz-server-side-encryption"); sse && echo_sse)
				resp.headers.emplace_back("x-amz-server-side-encryption", *sse); // as AWS does
			return resp;
		}
		if (r.method == "PUT" && q.count("partNumber")) {
			parts[std::stoi(q.at("partNumber"))] = r.body;
			arrived.wait_for(lock, std::chrono::seconds(10), [&] { return arrived_parts.size() >= hold_parts_until; });
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

	// Called by tweaks: waits until part `number` has arrived (10 s at most).
	bool WaitForPart(int number) {
		std::unique_lock<std::mutex> lock(mu);
		return arrived.wait_for(lock, std::chrono::seconds(10), [&] { return arrived_parts.count(number) > 0; });
	}

	std::size_t PartsArrived() {
		std::lock_guard<std::mutex> lock(mu);
		return arrived_parts.size();
	}

	void Mark(const std::string &name) {
		std::lock_guard<std::mutex> lock(mu);
		marks[name] = Clock::now();
	}

	void NoteArrival(const FakeRequest &r) {
		const auto q = QueryMap(r);
		std::lock_guard<std::mutex> lock(mu);
		if (r.method == "PUT" && q.count("partNumber"))
			arrived_parts.insert(std::stoi(q.at("partNumber")));
		else if (r.method == "DELETE" && q.count("uploadId"))
			abort_arrived_at = Clock::now();
		arrived.notify_all();
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

	FakeMultipartS3 s3;    // before the server: its threads call s3 until joined
	FakeHttpServer server; // so destroyed (stopped, joined) before s3
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

TEST_F(S3MultipartTest, RefusedStorageClassIsNamedInTheError) {
	s3.tweak = [](const FakeRequest &r) -> std::optional<FakeResponse> {
		if (r.method == "POST" && r.Query() == "uploads")
			return FakeResponse::Status(400, "<Error><Code>InvalidArgument</Code><BucketName>reports</BucketName>"
			                                 "<RequestId>tx2</RequestId></Error>");
		return std::nullopt;
	};
	server.SetHandler(std::ref(s3));
	PutRequest req = Request(body);
	req.storage_class = "DEEP_ARCHIVE";
	Error e = Capture([&] { client.Put(req, kNever); });
	EXPECT_NE(e.detail().find("CreateMultipartUpload"), std::string::npos) << e.detail();
	EXPECT_NE(e.detail().find("DEEP_ARCHIVE"), std::string::npos) << e.detail();
	EXPECT_NE(e.hint().find("reportstore.storage_class"), std::string::npos) << e.hint();
	EXPECT_EQ(server.RequestCount(), 1u);
}

TEST_F(S3MultipartTest, SseS3NotConfirmedAtCreateIsRefusedBeforeAnyPart) {
	s3.echo_sse = false; // Ceph RGW 16
	server.SetHandler(std::ref(s3));
	PutRequest req = Request(body);
	req.sse = "AES256";
	Error e = Capture([&] { client.Put(req, kNever); });
	EXPECT_EQ(e.kind(), ErrorKind::kConfig);
	EXPECT_NE(e.detail().find("CreateMultipartUpload: the S3 server did not confirm"), std::string::npos)
	    << e.detail();
	const auto methods = Methods();
	EXPECT_TRUE(std::none_of(methods.begin(), methods.end(),
	                         [](const std::string &m) { return m.find("partNumber") != std::string::npos; }))
	    << "a part was sent";
	EXPECT_TRUE(AbortSent()) << "the upload was not aborted";
}

TEST_F(S3MultipartTest, PutSendsCreatePartsCompleteAndVerifies) {
	s3.part_delay_ms = 300;
	s3.hold_parts_until = 3; // answered only once all three are in: sent concurrently or not at all
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
	// Concurrent: the 3 parts were in flight together (a client sending them
	// one after the other would have 1 here, after a 10 s hold per part).
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

// A failed part stops new parts, but the parts in flight end before the
// abort: S3 may store a part whose transfer was cut short after the abort.
TEST_F(S3MultipartTest, FailingPartAbortsTheUpload) {
	Config two_at_a_time = SmallParts(server.url());
	two_at_a_time.part_concurrency = 2; // parts 1 and 2 in flight, 3 waits for a free slot
	Client c(two_at_a_time, engine, FixedClock());
	constexpr int kPart1DelayMs = 1000;
	s3.tweak = [this](const FakeRequest &r) -> std::optional<FakeResponse> {
		if (r.method != "PUT")
			return std::nullopt;
		const std::string number = QueryMap(r).at("partNumber");
		if (number == "2")
			return FakeResponse::Status(503, ErrorXml("SlowDown", "Please reduce your request rate."));
		if (number == "1") {
			// Answered a second after part 2 failed: the client has seen the
			// failure before part 1 frees a slot for part 3.
			s3.WaitForPart(2);
			FakeResponse ok = FakeResponse::Status(200);
			ok.headers = {{"ETag", "\"" + Md5Hex(r.body) + "\""}};
			ok.delay_ms = kPart1DelayMs;
			s3.Mark("part 1 answered");
			return ok;
		}
		return std::nullopt;
	};
	server.SetHandler(std::ref(s3));
	Error e = Capture([&] { c.Put(Request(body), kNever); });
	EXPECT_EQ(e.kind(), ErrorKind::kTransient);
	EXPECT_EQ(e.sqlstate(), "58030");
	EXPECT_NE(e.detail().find("UploadPart 2 of 3"), std::string::npos) << e.detail();
	EXPECT_NE(e.detail().find("SlowDown"), std::string::npos) << e.detail();
	EXPECT_NE(std::string(e.what()).find(kReportKey), std::string::npos);
	EXPECT_TRUE(AbortSent()) << ::testing::PrintToString(Methods());
	for (const auto &r : server.Requests()) {
		EXPECT_FALSE(r.method == "POST" && r.Query().rfind("uploadId=", 0) == 0) << "completed anyway";
		EXPECT_NE(r.Query().rfind("partNumber=3&", 0), 0u) << "part 3 started after part 2 failed";
	}
	std::lock_guard<std::mutex> lock(s3.mu);
	ASSERT_TRUE(s3.abort_arrived_at.has_value());
	ASSERT_EQ(s3.marks.count("part 1 answered"), 1u);
	EXPECT_GE(*s3.abort_arrived_at - s3.marks["part 1 answered"], std::chrono::milliseconds(kPart1DelayMs))
	    << "the abort did not wait for part 1, in flight";
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
			return FakeResponse::Status(200,
			                            "<CompleteMultipartUploadResult><ETag>\"0123456789abcdef0123456789abcdef-3\""
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
		FakeMultipartS3 fake; // outlives srv's threads
		FakeHttpServer srv;
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

// Interrupted while the parts are in flight: the transfers are cut short
// (the caller wants to stop now), then the upload is aborted.
TEST_F(S3MultipartTest, InterruptionAborts) {
	s3.part_delay_ms = 10000;
	server.SetHandler(std::ref(s3));
	// Fires once the server has received every part, whatever the time the
	// 12 MiB took: no part can then arrive after the abort.
	std::optional<std::chrono::steady_clock::time_point> fired;
	auto probe = [&] {
		if (!fired && s3.PartsArrived() == 3)
			fired = std::chrono::steady_clock::now();
		return fired.has_value();
	};
	Error e = Capture([&] { client.Put(Request(body), probe); });
	EXPECT_EQ(e.kind(), ErrorKind::kInterrupted);
	EXPECT_EQ(e.sqlstate(), "57014");
	ASSERT_TRUE(fired.has_value());
	EXPECT_LT(std::chrono::steady_clock::now() - *fired, std::chrono::seconds(3)); // not the parts' 10 s
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

} // namespace
} // namespace reportstore::s3
