// Tests of the libcurl engine against the scripted loopback server.
#include "core/http/engine.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "fake_http_server.hpp"

namespace reportstore::http {
namespace {

using reportstore::testing::FakeHttpServer;
using reportstore::testing::FakeRequest;
using reportstore::testing::FakeResponse;
using Clock = std::chrono::steady_clock;

const InterruptProbe kNever = [] { return false; };

Request Make(const std::string &method, const std::string &url, long timeout_ms = 5000) {
	Request r;
	r.method = method;
	r.url = url;
	r.timeout_ms = timeout_ms;
	return r;
}

double SecondsSince(Clock::time_point t) {
	return std::chrono::duration<double>(Clock::now() - t).count();
}

TEST(HttpTimeouts, Scaled) {
	Timeouts t;
	t.request_ms = 1000;
	t.per_mib_ms = 500;
	EXPECT_EQ(t.Scaled(0), 1000);
	EXPECT_EQ(t.Scaled(1), 1500);
	EXPECT_EQ(t.Scaled(1u << 20), 1500);
	EXPECT_EQ(t.Scaled((1u << 20) + 1), 2000);
	EXPECT_EQ(t.Scaled(10u << 20), 6000);
	EXPECT_GT(t.Scaled(~std::uint64_t{0}), 0); // saturates, no overflow
}

TEST(HttpEngine, GetReturnsStatusHeadersAndBody) {
	FakeHttpServer server;
	FakeResponse resp = FakeResponse::Status(200, "hello world");
	resp.headers = {{"X-Custom-Header", "  padded value  "}, {"ETag", "\"abc\""}};
	server.Enqueue(resp);
	Engine engine;
	Request req = Make("GET", server.url() + "/path/to%20x?a=b");
	req.headers = {{"X-Test", "1"}, {"Empty-Header", ""}};
	Response r = engine.PerformOne(req, kNever);
	ASSERT_EQ(r.transport, TransportStatus::kOk) << r.transport_error;
	EXPECT_EQ(r.status, 200);
	EXPECT_EQ(r.body, "hello world");
	ASSERT_NE(r.Header("x-custom-header"), nullptr);
	EXPECT_EQ(*r.Header("x-custom-header"), "padded value");
	ASSERT_NE(r.Header("etag"), nullptr);
	EXPECT_EQ(*r.Header("etag"), "\"abc\"");
	ASSERT_NE(r.Header("content-length"), nullptr);
	EXPECT_EQ(*r.Header("content-length"), "11");
	EXPECT_EQ(r.Header("X-Custom-Header"), nullptr); // lookups are by lowercase name
	EXPECT_GT(r.seconds, 0.0);

	auto reqs = server.Requests();
	ASSERT_EQ(reqs.size(), 1u);
	EXPECT_EQ(reqs[0].method, "GET");
	EXPECT_EQ(reqs[0].target, "/path/to%20x?a=b");
	ASSERT_NE(reqs[0].Header("x-test"), nullptr);
	EXPECT_EQ(*reqs[0].Header("x-test"), "1");
	ASSERT_NE(reqs[0].Header("empty-header"), nullptr);
	EXPECT_EQ(*reqs[0].Header("empty-header"), "");
	EXPECT_EQ(reqs[0].Header("expect"), nullptr);
}

TEST(HttpEngine, PutStreamsTheBodyExactly) {
	FakeHttpServer server;
	std::string body;
	for (int i = 0; i < 3 * 1024 * 1024 + 17; ++i)
		body.push_back(static_cast<char>(i * 31 + (i >> 8)));
	Engine engine;
	Request req = Make("PUT", server.url() + "/obj");
	req.body = body;
	req.headers = {{"Content-Type", "application/octet-stream"}};
	Response r = engine.PerformOne(req, kNever);
	ASSERT_EQ(r.transport, TransportStatus::kOk) << r.transport_error;
	EXPECT_EQ(r.status, 200);
	auto reqs = server.Requests();
	ASSERT_EQ(reqs.size(), 1u);
	EXPECT_EQ(reqs[0].method, "PUT");
	ASSERT_NE(reqs[0].Header("content-length"), nullptr);
	EXPECT_EQ(*reqs[0].Header("content-length"), std::to_string(body.size()));
	EXPECT_EQ(reqs[0].Header("expect"), nullptr); // no 100-continue round trip
	EXPECT_EQ(reqs[0].Header("transfer-encoding"), nullptr);
	EXPECT_TRUE(reqs[0].body == body);
}

TEST(HttpEngine, EmptyPutAndPostAndDelete) {
	FakeHttpServer server;
	server.Enqueue(FakeResponse::Status(200));
	server.Enqueue(FakeResponse::Status(200, "posted"));
	server.Enqueue(FakeResponse::Status(204));
	Engine engine;
	Request put = Make("PUT", server.url() + "/empty");
	Request post = Make("POST", server.url() + "/post");
	post.body = "a=b";
	Request del = Make("DELETE", server.url() + "/gone");
	EXPECT_EQ(engine.PerformOne(put, kNever).status, 200);
	Response pr = engine.PerformOne(post, kNever);
	EXPECT_EQ(pr.status, 200);
	EXPECT_EQ(pr.body, "posted");
	Response dr = engine.PerformOne(del, kNever);
	EXPECT_EQ(dr.transport, TransportStatus::kOk);
	EXPECT_EQ(dr.status, 204);
	auto reqs = server.Requests();
	ASSERT_EQ(reqs.size(), 3u);
	EXPECT_EQ(reqs[0].method, "PUT");
	EXPECT_EQ(*reqs[0].Header("content-length"), "0");
	EXPECT_EQ(reqs[1].method, "POST");
	EXPECT_EQ(reqs[1].body, "a=b");
	EXPECT_EQ(reqs[1].Header("content-type"), nullptr); // no form content type invented
	EXPECT_EQ(reqs[2].method, "DELETE");
}

TEST(HttpEngine, HeadHasHeadersButNoBody) {
	FakeHttpServer server;
	FakeResponse resp = FakeResponse::Status(200, std::string(100000, 'x'));
	resp.headers = {{"X-Amz-Meta-Sha256", "abc"}};
	server.Enqueue(resp);
	Engine engine;
	Request req = Make("HEAD", server.url() + "/obj");
	req.max_response_bytes = 10; // Content-Length of a HEAD is not a body
	Response r = engine.PerformOne(req, kNever);
	ASSERT_EQ(r.transport, TransportStatus::kOk) << r.transport_error;
	EXPECT_EQ(r.status, 200);
	EXPECT_TRUE(r.body.empty());
	EXPECT_EQ(*r.Header("content-length"), "100000");
	EXPECT_EQ(*r.Header("x-amz-meta-sha256"), "abc");
	EXPECT_EQ(server.Requests().at(0).method, "HEAD");
}

TEST(HttpEngine, ErrorStatusIsATransportSuccess) {
	FakeHttpServer server;
	server.Enqueue(FakeResponse::Status(503, "<Error/>"));
	Engine engine;
	Response r = engine.PerformOne(Make("GET", server.url() + "/x"), kNever);
	EXPECT_EQ(r.transport, TransportStatus::kOk);
	EXPECT_EQ(r.status, 503);
	EXPECT_EQ(r.body, "<Error/>");
}

TEST(HttpEngine, RedirectsAreNotFollowed) {
	FakeHttpServer server;
	FakeResponse resp = FakeResponse::Status(301);
	resp.headers = {{"Location", server.url() + "/elsewhere"}};
	server.Enqueue(resp);
	Engine engine;
	Response r = engine.PerformOne(Make("GET", server.url() + "/x"), kNever);
	EXPECT_EQ(r.transport, TransportStatus::kOk);
	EXPECT_EQ(r.status, 301);
	EXPECT_EQ(server.RequestCount(), 1u);
}

TEST(HttpEngine, OtherProtocolsAreRefused) {
	Engine engine;
	Response r = engine.PerformOne(Make("GET", "file:///etc/passwd"), kNever);
	EXPECT_NE(r.transport, TransportStatus::kOk);
	EXPECT_TRUE(r.body.empty());
}

TEST(HttpEngine, HeaderInjectionIsRejected) {
	FakeHttpServer server;
	Engine engine;
	Request req = Make("GET", server.url() + "/x");
	req.headers = {{"X-A", "v\r\nX-Injected: 1"}};
	Response r = engine.PerformOne(req, kNever);
	EXPECT_EQ(r.transport, TransportStatus::kOther);
	EXPECT_EQ(r.transport_error.find("X-Injected"), std::string::npos);
	EXPECT_EQ(server.RequestCount(), 0u);
}

TEST(HttpEngine, SequentialRequestsReuseOneConnection) {
	FakeHttpServer server;
	server.SetHandler([](const FakeRequest &r) { return FakeResponse::Status(200, "echo " + r.target); });
	Engine engine;
	for (int i = 0; i < 8; ++i) {
		Request req = Make(i % 2 ? "PUT" : "GET", server.url() + "/r" + std::to_string(i));
		std::string body(1000 + i, 'b');
		if (i % 2)
			req.body = body;
		Response r = engine.PerformOne(req, kNever);
		ASSERT_EQ(r.transport, TransportStatus::kOk) << r.transport_error;
		EXPECT_EQ(r.body, "echo /r" + std::to_string(i));
	}
	EXPECT_EQ(server.accepted_connections(), 1);
	for (const auto &r : server.Requests())
		EXPECT_EQ(r.connection, 1);
}

TEST(HttpEngine, ReconnectsWhenTheServerClosedTheConnection) {
	FakeHttpServer server;
	FakeResponse first = FakeResponse::Status(200, "one");
	first.close = true;
	server.Enqueue(first);
	server.Enqueue(FakeResponse::Status(200, "two"));
	Engine engine;
	std::string body = "payload";
	Request req = Make("PUT", server.url() + "/x");
	req.body = body;
	EXPECT_EQ(engine.PerformOne(req, kNever).body, "one");
	Response r = engine.PerformOne(req, kNever);
	ASSERT_EQ(r.transport, TransportStatus::kOk) << r.transport_error;
	EXPECT_EQ(r.body, "two");
	EXPECT_EQ(server.accepted_connections(), 2);
	EXPECT_EQ(server.Requests().at(1).body, "payload");
}

TEST(HttpEngine, MaxConcurrencyIsHonoured) {
	FakeHttpServer server;
	server.SetHandler([](const FakeRequest &r) {
		FakeResponse resp = FakeResponse::Status(200, r.target);
		resp.delay_ms = 150;
		return resp;
	});
	Engine engine;
	std::vector<Request> reqs;
	for (int i = 0; i < 9; ++i)
		reqs.push_back(Make("GET", server.url() + "/c" + std::to_string(i)));
	std::vector<std::size_t> completed;
	auto start = Clock::now();
	auto responses = engine.Perform(reqs, 3, kNever, [&](std::size_t i, Response &r) {
		completed.push_back(i);
		EXPECT_EQ(r.body, "/c" + std::to_string(i));
	});
	const double elapsed = SecondsSince(start);
	ASSERT_EQ(responses.size(), 9u);
	for (std::size_t i = 0; i < responses.size(); ++i) {
		EXPECT_EQ(responses[i].transport, TransportStatus::kOk);
		EXPECT_EQ(responses[i].body, "/c" + std::to_string(i)); // in request order
	}
	EXPECT_EQ(completed.size(), 9u);
	EXPECT_LE(server.max_in_flight(), 3);
	EXPECT_GE(server.max_in_flight(), 2);
	EXPECT_LE(server.accepted_connections(), 3);
	EXPECT_GE(elapsed, 0.4); // three waves of 150 ms
	EXPECT_LT(elapsed, 3.0);
}

TEST(HttpEngine, OnCompleteIsCalledOncePerRequest) {
	FakeHttpServer server;
	server.SetHandler([](const FakeRequest &r) {
		FakeResponse resp = FakeResponse::Status(200, r.target);
		resp.delay_ms = r.target == "/slow" ? 200 : 0;
		return resp;
	});
	Engine engine;
	std::vector<Request> reqs = {Make("GET", server.url() + "/slow"), Make("GET", server.url() + "/fast"),
	                             Make("BREW", server.url() + "/bad")};
	std::vector<int> calls(reqs.size(), 0);
	std::vector<std::size_t> order;
	engine.Perform(reqs, 4, kNever, [&](std::size_t i, Response &) {
		++calls.at(i);
		order.push_back(i);
	});
	EXPECT_EQ(calls, (std::vector<int>{1, 1, 1}));
	ASSERT_EQ(order.size(), 3u);
	EXPECT_EQ(order.back(), 0u); // the slow one finishes last
}

// Once stop_starting says so no request starts, and the ones in flight run
// to their end (the multipart upload relies on it before aborting).
TEST(HttpEngine, StopStartingLetsTransfersInFlightFinish) {
	std::mutex mu; // declared before the server, whose threads use them until joined
	std::condition_variable cv;
	bool fail_arrived = false;
	FakeHttpServer server;
	server.SetHandler([&](const FakeRequest &r) {
		std::unique_lock<std::mutex> lock(mu);
		if (r.target == "/fail") {
			fail_arrived = true;
			cv.notify_all();
			return FakeResponse::Status(500, "failed");
		}
		FakeResponse resp = FakeResponse::Status(200, r.target);
		if (r.target == "/slow") {
			// Still in flight well after /fail was answered.
			cv.wait_for(lock, std::chrono::seconds(10), [&] { return fail_arrived; });
			resp.delay_ms = 300;
		}
		return resp;
	});
	Engine engine;
	std::vector<Request> reqs;
	for (const char *path : {"/slow", "/fail", "/c2", "/c3", "/c4"})
		reqs.push_back(Make("GET", server.url() + path));
	bool stop = false;
	std::vector<int> calls(reqs.size(), 0);
	auto responses = engine.Perform(
	    reqs, 2, kNever,
	    [&](std::size_t i, Response &r) {
		    ++calls.at(i);
		    if (r.status == 500)
			    stop = true;
	    },
	    [&] { return stop; });
	EXPECT_EQ(calls, (std::vector<int>{1, 1, 1, 1, 1}));
	EXPECT_EQ(responses[0].transport, TransportStatus::kOk) << responses[0].transport_error;
	EXPECT_EQ(responses[0].body, "/slow"); // finished, not cut short
	EXPECT_EQ(responses[1].status, 500);
	for (std::size_t i = 2; i < reqs.size(); ++i) {
		EXPECT_EQ(responses[i].transport, TransportStatus::kNotSent) << i;
		EXPECT_EQ(responses[i].status, 0);
	}
	EXPECT_EQ(server.RequestCount(), 2u);
}

TEST(HttpEngine, RequestTimeout) {
	FakeHttpServer server;
	FakeResponse slow = FakeResponse::Status(200, "late");
	slow.delay_ms = 5000;
	server.Enqueue(slow);
	Engine engine;
	auto start = Clock::now();
	Response r = engine.PerformOne(Make("GET", server.url() + "/slow", 300), kNever);
	EXPECT_EQ(r.transport, TransportStatus::kTimeout);
	EXPECT_FALSE(r.transport_error.empty());
	EXPECT_LT(SecondsSince(start), 3.0);
}

TEST(HttpEngine, ConnectionRefused) {
	Engine engine;
	const int port = reportstore::testing::UnusedLoopbackPort();
	Response r = engine.PerformOne(Make("GET", "http://127.0.0.1:" + std::to_string(port) + "/x"), kNever);
	EXPECT_EQ(r.transport, TransportStatus::kConnectFailed) << TransportStatusName(r.transport);
	EXPECT_FALSE(r.transport_error.empty());
	EXPECT_STREQ(TransportStatusName(r.transport), "connect failed");
}

TEST(HttpEngine, ResolveFailure) {
	Engine engine;
	Response r = engine.PerformOne(Make("GET", "http://no-such-host.invalid/x", 3000), kNever);
	if (r.transport == TransportStatus::kTimeout)
		GTEST_SKIP() << "the DNS resolver does not answer here: " << r.transport_error;
	EXPECT_EQ(r.transport, TransportStatus::kResolveFailed) << r.transport_error;
}

TEST(HttpEngine, TruncatedBodyIsConnectionLost) {
	FakeHttpServer server;
	FakeResponse resp = FakeResponse::Status(200, std::string(10000, 'z'));
	resp.send_body_bytes = 4000;
	server.Enqueue(resp);
	Engine engine;
	Response r = engine.PerformOne(Make("GET", server.url() + "/x"), kNever);
	EXPECT_EQ(r.transport, TransportStatus::kConnectionLost) << r.transport_error;
}

TEST(HttpEngine, ResetMidBodyIsConnectionLost) {
	FakeHttpServer server;
	FakeResponse resp = FakeResponse::Status(200, std::string(200000, 'z'));
	resp.send_body_bytes = 1000;
	resp.reset = true;
	server.Enqueue(resp);
	Engine engine;
	Response r = engine.PerformOne(Make("GET", server.url() + "/x"), kNever);
	EXPECT_EQ(r.transport, TransportStatus::kConnectionLost) << r.transport_error;
}

TEST(HttpEngine, ClosedWithoutResponseIsConnectionLost) {
	FakeHttpServer server;
	FakeResponse resp;
	resp.no_response = true;
	server.Enqueue(resp);
	server.Enqueue(resp); // libcurl may retry once on a fresh connection
	Engine engine;
	Response r = engine.PerformOne(Make("GET", server.url() + "/x"), kNever);
	EXPECT_EQ(r.transport, TransportStatus::kConnectionLost) << r.transport_error;
}

TEST(HttpEngine, TooLargeWithContentLength) {
	FakeHttpServer server;
	server.Enqueue(FakeResponse::Status(200, std::string(5000, 'a')));
	Engine engine;
	Request req = Make("GET", server.url() + "/big");
	req.max_response_bytes = 1000;
	Response r = engine.PerformOne(req, kNever);
	EXPECT_EQ(r.transport, TransportStatus::kTooLarge);
	EXPECT_LE(r.body.size(), 1000u);
}

TEST(HttpEngine, TooLargeWithoutContentLength) {
	FakeHttpServer server;
	FakeResponse resp = FakeResponse::Status(200, std::string(300000, 'a'));
	resp.content_length = false;
	server.Enqueue(resp);
	Engine engine;
	Request req = Make("GET", server.url() + "/big");
	req.max_response_bytes = 100000;
	Response r = engine.PerformOne(req, kNever);
	EXPECT_EQ(r.transport, TransportStatus::kTooLarge);
	EXPECT_LE(r.body.size(), 100000u);
}

TEST(HttpEngine, ExactlyMaxSizeIsAccepted) {
	FakeHttpServer server;
	server.Enqueue(FakeResponse::Status(200, std::string(1000, 'a')));
	Engine engine;
	Request req = Make("GET", server.url() + "/big");
	req.max_response_bytes = 1000;
	Response r = engine.PerformOne(req, kNever);
	EXPECT_EQ(r.transport, TransportStatus::kOk);
	EXPECT_EQ(r.body.size(), 1000u);
}

TEST(HttpEngine, InterruptProbeStopsAStalledTransfer) {
	FakeHttpServer server;
	server.SetHandler([](const FakeRequest &) {
		FakeResponse resp = FakeResponse::Status(200, "never");
		resp.delay_ms = 20000;
		return resp;
	});
	Engine engine;
	std::vector<Request> reqs;
	for (int i = 0; i < 4; ++i)
		reqs.push_back(Make("GET", server.url() + "/stall" + std::to_string(i), 60000));
	const auto start = Clock::now();
	std::atomic<int> probes{0};
	InterruptProbe probe = [&] {
		++probes;
		return SecondsSince(start) > 0.3;
	};
	std::size_t completions = 0;
	auto responses = engine.Perform(reqs, 2, probe, [&](std::size_t, Response &) { ++completions; });
	const double elapsed = SecondsSince(start);
	EXPECT_LT(elapsed, 3.0);
	EXPECT_GE(elapsed, 0.3);
	EXPECT_GE(probes.load(), 2);
	EXPECT_EQ(completions, reqs.size());
	for (const auto &r : responses)
		EXPECT_EQ(r.transport, TransportStatus::kInterrupted);

	// The engine is still usable afterwards.
	server.SetHandler([](const FakeRequest &) { return FakeResponse::Status(200, "ok"); });
	Response r = engine.PerformOne(Make("GET", server.url() + "/after"), kNever);
	EXPECT_EQ(r.transport, TransportStatus::kOk) << r.transport_error;
	EXPECT_EQ(r.body, "ok");
}

TEST(HttpEngine, InterruptBeforeStartRunsNothing) {
	FakeHttpServer server;
	Engine engine;
	Response r = engine.PerformOne(Make("GET", server.url() + "/x"), [] { return true; });
	EXPECT_EQ(r.transport, TransportStatus::kInterrupted);
	EXPECT_EQ(server.RequestCount(), 0u);
}

TEST(HttpEngine, EmptyBatch) {
	Engine engine;
	EXPECT_TRUE(engine.Perform({}, 4, kNever).empty());
}

TEST(HttpEngine, ExpectContinueResponseHeadersAreDropped) {
	// The caller asks for 100-continue explicitly: only the final response's
	// headers are kept.
	FakeHttpServer server;
	FakeResponse resp = FakeResponse::Status(200, "done");
	resp.headers = {{"X-Final", "yes"}};
	server.Enqueue(resp);
	Engine engine;
	std::string body(2000, 'q');
	Request req = Make("PUT", server.url() + "/x");
	req.body = body;
	req.headers = {{"Expect", "100-continue"}};
	Response r = engine.PerformOne(req, kNever);
	ASSERT_EQ(r.transport, TransportStatus::kOk) << r.transport_error;
	EXPECT_EQ(r.status, 200);
	EXPECT_EQ(r.body, "done");
	ASSERT_NE(r.Header("x-final"), nullptr);
	int status_lines = 0;
	for (const auto &h : r.headers)
		status_lines += h.first.rfind("http/", 0) == 0;
	EXPECT_EQ(status_lines, 0);
	EXPECT_EQ(server.Requests().at(0).body, body);
}

TEST(HttpEngine, TransportErrorHasNoHeaderValues) {
	Engine engine;
	const int port = reportstore::testing::UnusedLoopbackPort();
	Request req = Make("GET", "http://127.0.0.1:" + std::to_string(port) + "/x?X-Amz-Signature=deadbeef");
	req.headers = {{"Authorization", "AWS4-HMAC-SHA256 Credential=AKIDSECRET"}};
	Response r = engine.PerformOne(req, kNever);
	EXPECT_NE(r.transport, TransportStatus::kOk);
	EXPECT_EQ(r.transport_error.find("AKIDSECRET"), std::string::npos);
	EXPECT_EQ(r.transport_error.find("deadbeef"), std::string::npos);
}

TEST(HttpEngine, ManyEnginesAndGlobalInitAreSafe) {
	GlobalInit();
	GlobalInit();
	for (int i = 0; i < 3; ++i) {
		Engine e(TlsOptions{true, ""});
		e.SetTls(TlsOptions{false, ""});
		e.SetConnectTimeout(1000);
	}
	SUCCEED();
}

} // namespace
} // namespace reportstore::http
