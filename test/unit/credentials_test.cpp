// Credentials providers and the refresh of temporary credentials
// (core/aws/credentials.hpp): when a refresh happens, that one process
// refreshes at a time, that valid credentials survive a failed refresh, that
// expired ones are never used, and that the signer signs each request with
// the credentials current when it signs.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "core/aws/credentials.hpp"
#include "core/aws/sigv4.hpp"
#include "core/error.hpp"

namespace reportstore::aws {
namespace {

constexpr std::time_t kStart = 1700000000; // 2023-11-14T22:13:20Z

Credentials Keys(int n) {
	return Credentials{"AKIDTEMP" + std::to_string(n), "temp-secret-" + std::to_string(n),
	                   "temp-token-" + std::to_string(n)};
}

// A clock the test moves.
struct TestClock {
	std::atomic<std::time_t> now{kStart};
	Clock clock() {
		return [this] { return now.load(); };
	}
};

// A fetcher that hands out Keys(1), Keys(2)... valid `lifetime` seconds, or
// fails when told to.
struct TestSource {
	TestClock *clock = nullptr;
	std::time_t lifetime = 3600;
	std::atomic<int> calls{0};
	std::atomic<bool> fail{false};
	std::atomic<int> fetch_ms{0};
	CredentialsFetcher fetcher() {
		return [this](const http::InterruptProbe &) {
			const int n = ++calls;
			if (fetch_ms > 0)
				std::this_thread::sleep_for(std::chrono::milliseconds(fetch_ms.load()));
			if (fail)
				throw Error(ErrorKind::kSystemic, sqlstate::kUnableToConnect,
				            "could not obtain S3 credentials from STS (AssumeRole)", "STS did not answer.");
			FetchedCredentials f;
			f.credentials.credentials = Keys(n);
			f.credentials.expiration = clock->now + lifetime;
			f.source = "test";
			return f;
		};
	}
};

class RefreshTest : public ::testing::Test {
  protected:
	RefreshTest() {
		source.clock = &clock;
		policy.margin_s = 300;
		policy.min_interval_s = 5;
		policy.retry_s = 5;
		policy.claim_timeout_s = 30;
		policy.poll_ms = 5;
	}
	std::unique_ptr<RefreshingProvider> Provider() {
		return std::make_unique<RefreshingProvider>(store, source.fetcher(), policy, [] { return false; },
		                                            clock.clock(), [](int ms) {
			                                            std::this_thread::sleep_for(std::chrono::milliseconds(ms));
		                                            });
	}
	TestClock clock;
	TestSource source;
	RefreshPolicy policy;
	std::shared_ptr<MemoryCredentialStore> store = std::make_shared<MemoryCredentialStore>();
};

TEST(Iso8601Test, ParsesWhatStsAndImdsSend) {
	std::time_t t = 0;
	ASSERT_TRUE(ParseIso8601Utc("2023-11-14T22:13:20Z", &t));
	EXPECT_EQ(t, kStart);
	ASSERT_TRUE(ParseIso8601Utc("2023-11-14T22:13:20.123Z", &t));
	EXPECT_EQ(t, kStart);
	ASSERT_TRUE(ParseIso8601Utc("2023-11-15T00:13:20+02:00", &t));
	EXPECT_EQ(t, kStart);
	ASSERT_TRUE(ParseIso8601Utc("2023-11-14T22:13:20+00:00", &t));
	EXPECT_EQ(t, kStart);
	for (const char *bad : {"", "2023-11-14", "2023-11-14T22:13:20", "2023-11-14 22:13:20Z", "2023-13-14T22:13:20Z",
	                        "2023-11-14T22:13:20Zjunk", "2023-11-14T22:13:20.Z", "x023-11-14T22:13:20Z",
	                        "2023-11-14T25:13:20Z", "2023-11-14T22:13:20+0200", "0000-01-01T00:00:00Z"})
		EXPECT_FALSE(ParseIso8601Utc(bad, &t)) << bad;
	EXPECT_EQ(FormatUtc(kStart), "2023-11-14 22:13:20 UTC");
}

TEST_F(RefreshTest, FetchesOnceThenServesFromTheCache) {
	auto provider = Provider();
	EXPECT_EQ(provider->Current().access_key_id, "AKIDTEMP1");
	clock.now += 1000;
	EXPECT_EQ(provider->Current().access_key_id, "AKIDTEMP1");
	EXPECT_EQ(source.calls, 1);
	// Another provider on the same store (another process) uses the same credentials.
	auto other = Provider();
	EXPECT_EQ(other->Current().access_key_id, "AKIDTEMP1");
	EXPECT_EQ(source.calls, 1);
	const CacheEntry entry = store->Load();
	EXPECT_TRUE(entry.valid);
	EXPECT_EQ(entry.source, "test");
	EXPECT_EQ(entry.credentials.expiration, kStart + 3600);
}

TEST_F(RefreshTest, RefreshesMarginBeforeExpiry) {
	auto provider = Provider();
	provider->Current();
	clock.now = kStart + 3600 - 301;
	EXPECT_EQ(provider->Current().access_key_id, "AKIDTEMP1");
	clock.now = kStart + 3600 - 300;
	EXPECT_EQ(provider->Current().access_key_id, "AKIDTEMP2");
	EXPECT_EQ(source.calls, 2);
	EXPECT_EQ(provider->DueAt(store->Load()), clock.now + 3600 - 300);
}

TEST_F(RefreshTest, CredentialsLivingShorterThanTheMarginAreRefreshedAtHalfTheirUsableLife) {
	policy.margin_s = 3600;
	source.lifetime = 60; // usable for 50 s (the expiry skew is 10 s)
	auto provider = Provider();
	provider->Current();
	clock.now += 24;
	EXPECT_EQ(provider->Current().access_key_id, "AKIDTEMP1");
	clock.now += 1;
	EXPECT_EQ(provider->Current().access_key_id, "AKIDTEMP2");
	// Never sooner than the minimum interval, though.
	source.lifetime = 16;
	clock.now += 25;
	EXPECT_EQ(provider->Current().access_key_id, "AKIDTEMP3");
	clock.now += 4;
	EXPECT_EQ(provider->Current().access_key_id, "AKIDTEMP3");
	clock.now += 1;
	EXPECT_EQ(provider->Current().access_key_id, "AKIDTEMP4");
}

TEST_F(RefreshTest, FailedRefreshKeepsValidCredentialsUntilTheyExpire) {
	auto provider = Provider();
	provider->Current();
	source.fail = true;
	clock.now = kStart + 3600 - 200; // due
	EXPECT_EQ(provider->Current().access_key_id, "AKIDTEMP1");
	EXPECT_EQ(source.calls, 2);
	CacheEntry entry = store->Load();
	EXPECT_TRUE(entry.failed);
	EXPECT_EQ(entry.error_message, "could not obtain S3 credentials from STS (AssumeRole)");
	// A worker refreshing ahead of need tries again after retry_s, not at once.
	EXPECT_EQ(provider->NextRefreshAt(entry), clock.now + 5);
	// No new attempt within retry_s: a batch of requests makes one attempt.
	for (int i = 0; i < 10; i++)
		EXPECT_EQ(provider->Current().access_key_id, "AKIDTEMP1");
	EXPECT_EQ(source.calls, 2);
	clock.now += 5;
	EXPECT_EQ(provider->Current().access_key_id, "AKIDTEMP1");
	EXPECT_EQ(source.calls, 3);
	// Expired (within the skew): the failure is the answer, with the expiry.
	clock.now = kStart + 3600 - 5;
	try {
		provider->Current();
		FAIL() << "expired credentials were used";
	} catch (const Error &e) {
		EXPECT_EQ(e.kind(), ErrorKind::kSystemic);
		EXPECT_EQ(e.sqlstate(), "08001");
		EXPECT_STREQ(e.what(), "could not obtain S3 credentials from STS (AssumeRole)");
		EXPECT_NE(e.detail().find("expired at 2023-11-14 23:13:20 UTC"), std::string::npos) << e.detail();
	}
	const int calls = source.calls;
	EXPECT_THROW(provider->Current(), Error); // the stored failure, no new attempt
	EXPECT_EQ(source.calls, calls);
	// The source works again: the next attempt after retry_s succeeds.
	source.fail = false;
	clock.now += 5;
	EXPECT_EQ(provider->Current().access_key_id, "AKIDTEMP" + std::to_string(calls + 1));
	EXPECT_FALSE(store->Load().failed);
}

TEST_F(RefreshTest, NoCredentialsAndAFailingSourceThrowsTheStep) {
	source.fail = true;
	auto provider = Provider();
	try {
		provider->Current();
		FAIL();
	} catch (const Error &e) {
		EXPECT_STREQ(e.what(), "could not obtain S3 credentials from STS (AssumeRole)");
		EXPECT_EQ(e.detail(), "STS did not answer."); // nothing expired: no expiry in the detail
	}
}

TEST_F(RefreshTest, CredentialsAlreadyExpiredWhenObtainedAreRefused) {
	source.lifetime = 5; // within the expiry skew
	auto provider = Provider();
	try {
		provider->Current();
		FAIL();
	} catch (const Error &e) {
		EXPECT_EQ(e.sqlstate(), "28000");
		EXPECT_NE(std::string(e.what()).find("obtained S3 credentials that expire at"), std::string::npos);
		EXPECT_NE(e.hint().find("clock"), std::string::npos);
	}
}

TEST_F(RefreshTest, OneProcessRefreshesAtATime) {
	source.fetch_ms = 200;
	std::vector<std::thread> threads;
	std::atomic<int> ok{0};
	for (int i = 0; i < 8; i++)
		threads.emplace_back([&] {
			auto provider = Provider();
			if (provider->Current().access_key_id == "AKIDTEMP1")
				ok++;
		});
	for (auto &t : threads)
		t.join();
	EXPECT_EQ(source.calls, 1);
	EXPECT_EQ(ok, 8);
}

TEST_F(RefreshTest, OthersKeepSigningWithValidCredentialsDuringARefresh) {
	auto provider = Provider();
	provider->Current();
	clock.now = kStart + 3600 - 100; // due
	source.fetch_ms = 300;
	std::thread refresher([&] { EXPECT_EQ(Provider()->Current().access_key_id, "AKIDTEMP2"); });
	while (!store->Load().refreshing)
		std::this_thread::sleep_for(std::chrono::milliseconds(1));
	const auto start = std::chrono::steady_clock::now();
	EXPECT_EQ(provider->Current().access_key_id, "AKIDTEMP1"); // no wait for the refresh
	EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(250));
	refresher.join();
	EXPECT_EQ(provider->Current().access_key_id, "AKIDTEMP2");
	EXPECT_EQ(source.calls, 2);
}

TEST_F(RefreshTest, AClaimOfADeadProcessIsTakenOverAfterTheTimeout) {
	ASSERT_TRUE(store->TryClaim(kStart, kStart - 30)); // a process that died while refreshing
	auto provider = Provider();
	std::atomic<bool> done{false};
	std::thread waiter([&] {
		EXPECT_EQ(provider->Current().access_key_id, "AKIDTEMP1");
		done = true;
	});
	std::this_thread::sleep_for(std::chrono::milliseconds(50));
	EXPECT_FALSE(done); // waits: there are no credentials to use meanwhile
	clock.now += 31;
	waiter.join();
	EXPECT_EQ(source.calls, 1);
}

TEST_F(RefreshTest, WaitingGivesUpAfterTheClaimTimeout) {
	ASSERT_TRUE(store->TryClaim(kStart, kStart - 30));
	// Another process keeps refreshing (its claims are always fresh).
	auto provider = std::make_unique<RefreshingProvider>(
	    store, source.fetcher(), policy, [] { return false; }, clock.clock(), [this](int) {
		    clock.now += 10;
		    store->Release();
		    store->TryClaim(clock.now, 0);
	    });
	try {
		provider->Current();
		FAIL();
	} catch (const Error &e) {
		EXPECT_EQ(e.kind(), ErrorKind::kSystemic);
		EXPECT_NE(std::string(e.what()).find("timed out waiting"), std::string::npos);
	}
	EXPECT_EQ(source.calls, 0);
}

TEST_F(RefreshTest, AnInterruptedWaitStops) {
	ASSERT_TRUE(store->TryClaim(kStart, kStart - 30));
	std::atomic<bool> interrupted{false};
	auto provider = std::make_unique<RefreshingProvider>(
	    store, source.fetcher(), policy, [&] { return interrupted.load(); }, clock.clock(),
	    [&](int) { interrupted = true; });
	try {
		provider->Current();
		FAIL();
	} catch (const Error &e) {
		EXPECT_EQ(e.kind(), ErrorKind::kInterrupted);
	}
}

TEST_F(RefreshTest, AnInterruptedFetchReleasesTheClaimAndRecordsNoFailure) {
	auto provider = std::make_unique<RefreshingProvider>(
	    store,
	    [](const http::InterruptProbe &) -> FetchedCredentials {
		    throw Error(ErrorKind::kInterrupted, sqlstate::kQueryCanceled, "interrupted");
	    },
	    policy, [] { return true; }, clock.clock());
	EXPECT_THROW(provider->Current(), Error);
	const CacheEntry entry = store->Load();
	EXPECT_FALSE(entry.refreshing);
	EXPECT_FALSE(entry.failed);
	EXPECT_EQ(Provider()->Current().access_key_id, "AKIDTEMP1");
}

TEST_F(RefreshTest, AnyOtherExceptionReleasesTheClaim) {
	auto provider = std::make_unique<RefreshingProvider>(
	    store, [](const http::InterruptProbe &) -> FetchedCredentials { throw std::bad_alloc(); }, policy,
	    [] { return false; }, clock.clock());
	EXPECT_THROW(provider->Current(), std::bad_alloc);
	EXPECT_FALSE(store->Load().refreshing);
}

TEST_F(RefreshTest, StaleCredentialsAreRefreshedBeforeTheyFallDue) {
	auto provider = Provider();
	provider->Current();
	store->MarkStale(store->Load().generation);
	EXPECT_EQ(provider->Current().access_key_id, "AKIDTEMP1"); // the minimum interval first
	clock.now += 5;
	EXPECT_EQ(provider->Current().access_key_id, "AKIDTEMP2");
	// A stale mark for credentials already replaced does nothing.
	store->MarkStale(store->Load().generation - 1);
	clock.now += 100;
	EXPECT_EQ(provider->Current().access_key_id, "AKIDTEMP2");
}

TEST(FixedCredentialsTest, NeverChange) {
	auto p = FixedCredentials(Credentials{"AK", "SK", ""});
	EXPECT_EQ(p->Current().access_key_id, "AK");
	EXPECT_EQ(p->Current().secret_access_key, "SK");
}

// A provider whose credentials the test changes.
class Switchable : public CredentialsProvider {
  public:
	Credentials Current() override {
		return current;
	}
	Credentials current;
};

TEST(SignerWithProviderTest, EachRequestIsSignedWithTheCredentialsCurrentWhenItIsSigned) {
	auto provider = std::make_shared<Switchable>();
	provider->current = Keys(1);
	const std::time_t now = kStart;
	Signer signer(provider, "us-east-1", "s3", [now] { return now; });
	RequestToSign rs{"GET", "example.com", "/bucket/key", {}, {}, "UNSIGNED-PAYLOAD"};

	auto header = [](const Headers &hs, const std::string &name) {
		for (const auto &h : hs)
			if (h.first == name)
				return h.second;
		return std::string();
	};
	const Headers first = signer.Sign(rs);
	EXPECT_NE(header(first, "Authorization").find("Credential=AKIDTEMP1/"), std::string::npos);
	EXPECT_EQ(header(first, "x-amz-security-token"), "temp-token-1");
	provider->current = Keys(2);
	const Headers second = signer.Sign(rs);
	EXPECT_NE(header(second, "Authorization").find("Credential=AKIDTEMP2/"), std::string::npos);
	EXPECT_EQ(header(second, "x-amz-security-token"), "temp-token-2");
	EXPECT_EQ(signer.key_derivations(), 2u); // a new secret, a new signing key

	// The same as a signer made for those credentials.
	Signer fixed(Keys(2), "us-east-1", "s3", [now] { return now; });
	EXPECT_EQ(header(fixed.Sign(rs), "Authorization"), header(second, "Authorization"));

	// Presigned URLs too; the token is in the signed query.
	const std::string url = signer.Presign(rs, std::chrono::seconds(60));
	EXPECT_NE(url.find("X-Amz-Credential=AKIDTEMP2%2F"), std::string::npos);
	EXPECT_NE(url.find("X-Amz-Security-Token=temp-token-2"), std::string::npos);
	provider->current = Credentials{"AKIDLONG", "long-secret", ""};
	EXPECT_EQ(signer.Presign(rs, std::chrono::seconds(60)).find("X-Amz-Security-Token"), std::string::npos);
}

TEST(SignerWithProviderTest, NoCredentialsMeansNoSignature) {
	class Failing : public CredentialsProvider {
	  public:
		Credentials Current() override {
			throw Error(ErrorKind::kSystemic, "28000", "could not read the web identity token file \"/x\"");
		}
	};
	Signer signer(std::make_shared<Failing>(), "us-east-1");
	RequestToSign rs{"GET", "example.com", "/b/k", {}, {}, "UNSIGNED-PAYLOAD"};
	EXPECT_THROW(signer.Sign(rs), Error);
	EXPECT_THROW(signer.Presign(rs, std::chrono::seconds(60)), Error);
}

} // namespace
} // namespace reportstore::aws
