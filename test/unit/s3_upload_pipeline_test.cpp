// UploadPipeline: uploads on a thread of their own, a window of bytes, and
// no new upload after one got no answer.
#include "core/s3/upload_pipeline.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "core/compression.hpp"
#include "s3_test_support.hpp"

namespace reportstore::s3 {
namespace {

using Clock = std::chrono::steady_clock;

PutRequest Upload(const std::string &body, int i) {
	PutRequest req;
	req.bucket = "reports";
	req.key = "reports/00000000-0000-4000-8000-" + std::string(12 - std::to_string(i).size(), '0') + std::to_string(i) +
	          "/report.json";
	req.body = body;
	return req;
}

std::map<std::size_t, PutOutcome> ByTag(UploadPipeline::Finished finished) {
	std::map<std::size_t, PutOutcome> out;
	for (auto &f : finished)
		out.emplace(f.first, std::move(f.second));
	return out;
}

TEST_F(S3ClientTest, PipelineUploadsEverythingAndReportsByTag) {
	server.SetHandler(S3PutOk);
	std::vector<std::string> bodies;
	for (int i = 0; i < 40; i++)
		bodies.push_back("{\"report\": " + std::to_string(i) + ", \"pad\": \"" + std::string(i * 10, 'x') + "\"}");
	UploadPipeline pipeline(client, {4, 1u << 20, compression::Codec::kNone});
	UploadPipeline::Finished early;
	for (int i = 0; i < 40; i++) {
		ASSERT_TRUE(pipeline.Submit(static_cast<std::size_t>(i), Upload(bodies[i], i), kNever));
		for (auto &f : pipeline.Take())
			early.push_back(std::move(f));
	}
	UploadPipeline::Finished rest = pipeline.Finish(kNever);
	for (auto &f : rest)
		early.push_back(std::move(f));
	std::map<std::size_t, PutOutcome> outcomes = ByTag(std::move(early));
	ASSERT_EQ(outcomes.size(), 40u);
	for (int i = 0; i < 40; i++) {
		const PutOutcome &o = outcomes.at(static_cast<std::size_t>(i));
		ASSERT_TRUE(o.result) << (o.error ? o.error->detail() : "");
		EXPECT_EQ(o.result->etag, Md5Hex(bodies[i]));
		EXPECT_EQ(o.result->sha256_hex, Hex(bodies[i]));
	}
	EXPECT_EQ(server.RequestCount(), 40u);
	EXPECT_LE(server.max_in_flight(), 4u);
	for (const auto &r : server.Requests())
		EXPECT_TRUE(SignatureMatches(r));
}

TEST_F(S3ClientTest, PipelineFinishReturnsOnceTheLastUploadEnds) {
	// With an idle wait of a minute, Finish() returning at all within the
	// bound shows that it did not wait for the poll after the last answer
	// (a 100 ms stall per batch before).
	server.SetHandler(S3PutOk);
	engine.SetIdleWait(60000);
	const std::string body(1000, 'a');
	const auto start = Clock::now();
	for (int round = 0; round < 3; round++) {
		UploadPipeline pipeline(client, {4, 1u << 20, compression::Codec::kNone});
		for (int i = 0; i < 10; i++)
			ASSERT_TRUE(pipeline.Submit(static_cast<std::size_t>(i), Upload(body, i), kNever));
		UploadPipeline::Finished finished = pipeline.Finish(kNever);
		for (auto &f : pipeline.Take())
			finished.push_back(std::move(f));
		EXPECT_EQ(finished.size(), 10u);
	}
	EXPECT_LT(Clock::now() - start, std::chrono::seconds(30));
}

TEST_F(S3ClientTest, PipelineWindowBoundsWhatIsQueued) {
	// Each answer waits until the test lets it go: Submit must block once
	// the window holds two bodies.
	std::atomic<bool> release{false};
	server.SetHandler([&](const FakeRequest &r) {
		while (!release.load())
			std::this_thread::sleep_for(std::chrono::milliseconds(5));
		return S3PutOk(r);
	});
	const std::string body(1000, 'a');
	UploadPipeline pipeline(client, {8, 2000, compression::Codec::kNone});
	ASSERT_TRUE(pipeline.Submit(0, Upload(body, 0), kNever));
	ASSERT_TRUE(pipeline.Submit(1, Upload(body, 1), kNever));
	// The third does not fit: Submit waits, and gives up when interrupted.
	const auto start = Clock::now();
	auto after_200ms = [&] { return Clock::now() - start > std::chrono::milliseconds(200); };
	EXPECT_FALSE(pipeline.Submit(2, Upload(body, 2), after_200ms));
	release.store(true);
	EXPECT_TRUE(pipeline.Submit(2, Upload(body, 2), kNever));
	std::map<std::size_t, PutOutcome> outcomes = ByTag(pipeline.Finish(kNever));
	ASSERT_EQ(outcomes.size(), 3u);
	for (const auto &o : outcomes)
		EXPECT_TRUE(o.second.result);
}

TEST_F(S3ClientTest, PipelineStartsNothingAfterAnUnansweredUpload) {
	// The server never answers in time: the first transfers time out, and the
	// reports queued behind them are not sent at all.
	FakeHttpServer silent;
	silent.SetHandler([](const FakeRequest &r) {
		FakeResponse resp = S3PutOk(r);
		resp.delay_ms = 3000;
		return resp;
	});
	Config config = MakeConfig(silent.url());
	config.timeouts.request_ms = 300;
	config.timeouts.per_mib_ms = 0;
	Client slow(config, engine, FixedClock());
	const std::string body = "{\"x\": 1}";
	UploadPipeline pipeline(slow, {2, 1u << 20, compression::Codec::kNone});
	const auto start = Clock::now();
	for (int i = 0; i < 20; i++)
		ASSERT_TRUE(pipeline.Submit(static_cast<std::size_t>(i), Upload(body, i), kNever));
	std::map<std::size_t, PutOutcome> outcomes = ByTag(pipeline.Finish(kNever));
	const auto elapsed = Clock::now() - start;
	ASSERT_EQ(outcomes.size(), 20u);
	for (const auto &o : outcomes) {
		ASSERT_TRUE(o.second.error);
		EXPECT_TRUE(o.second.error->no_answer()) << o.second.error->detail();
	}
	EXPECT_LE(silent.RequestCount(), 4u) << "uploads kept starting after the first timeout";
	// Generous: one or two timeouts, not twenty.
	EXPECT_LT(elapsed, std::chrono::seconds(10));
}

TEST_F(S3ClientTest, PipelineStopEndsEverythingAsInterrupted) {
	server.SetHandler([](const FakeRequest &r) {
		FakeResponse resp = S3PutOk(r);
		resp.delay_ms = 5000;
		return resp;
	});
	UploadPipeline pipeline(client, {2, 1u << 20, compression::Codec::kNone});
	const std::string body = "{}";
	for (int i = 0; i < 6; i++)
		ASSERT_TRUE(pipeline.Submit(static_cast<std::size_t>(i), Upload(body, i), kNever));
	const auto start = Clock::now();
	auto after_200ms = [&] { return Clock::now() - start > std::chrono::milliseconds(200); };
	std::map<std::size_t, PutOutcome> outcomes = ByTag(pipeline.Finish(after_200ms));
	EXPECT_LT(Clock::now() - start, std::chrono::seconds(3)) << "the stop did not cut the transfers short";
	ASSERT_EQ(outcomes.size(), 6u);
	for (const auto &o : outcomes) {
		ASSERT_TRUE(o.second.error);
		EXPECT_EQ(o.second.error->kind(), ErrorKind::kInterrupted);
	}
}

TEST_F(S3ClientTest, PipelineCompressesOnItsThread) {
	std::map<std::string, std::string> stored; // key -> body, single PUTs only
	std::mutex mu;
	server.SetHandler([&](const FakeRequest &r) {
		if (r.method == "PUT" && r.Query().empty()) {
			std::lock_guard<std::mutex> lock(mu);
			stored[r.Path()] = r.body;
		}
		return S3PutOk(r);
	});
	const std::string body = "{\"text\": \"" + std::string(5000, 'z') + "\"}";
	UploadPipeline pipeline(client, {4, 1u << 20, compression::Codec::kGzip});
	ASSERT_TRUE(pipeline.Submit(7, Upload(body, 7), kNever));
	std::map<std::size_t, PutOutcome> outcomes = ByTag(pipeline.Finish(kNever));
	ASSERT_TRUE(outcomes.at(7).result);
	ASSERT_EQ(stored.size(), 1u);
	const std::string &sent = stored.begin()->second;
	EXPECT_LT(sent.size(), body.size() / 10);
	EXPECT_EQ(compression::Decompress(compression::Codec::kGzip, sent, 1u << 20), body);
	EXPECT_EQ(server.Requests().front().Header("content-encoding") != nullptr, true);
}

} // namespace
} // namespace reportstore::s3
