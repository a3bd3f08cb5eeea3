// Where the signer's credentials come from, and how temporary ones are kept
// fresh.
//
// The signer asks a CredentialsProvider for the credentials to sign each
// request with, at signing time: a request signed before a refresh keeps the
// old credentials (an upload in flight finishes with them), the next one gets
// the new ones. FixedCredentials are long-lived keys. RefreshingProvider
// keeps temporary credentials (STS, instance roles) in a CredentialStore
// shared by every process of the server (shared memory in PostgreSQL),
// refreshes them `margin` before they expire, one process at a time, and
// keeps using valid credentials while a refresh fails.
#pragma once

#include <cstdint>
#include <ctime>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "core/aws/sigv4.hpp"
#include "core/error.hpp"
#include "core/http/engine.hpp"

namespace reportstore::aws {

// Credentials and when they stop working.
struct TimedCredentials {
	Credentials credentials;
	std::time_t expiration = 0; // seconds since the epoch, UTC; 0 = never (long-lived keys)
};

class CredentialsProvider {
  public:
	virtual ~CredentialsProvider() = default;
	// The credentials to sign a request with now; never expired ones. Throws
	// reportstore::Error (kSystemic, or kInterrupted) when there are none.
	virtual Credentials Current() = 0;
};
using CredentialsProviderPtr = std::shared_ptr<CredentialsProvider>;

// Long-lived keys (settings, environment): always the same credentials.
CredentialsProviderPtr FixedCredentials(Credentials credentials);

// "2024-05-01T12:34:56Z", with optional fractional seconds and a "Z" or
// "+00:00" zone (what STS and IMDS send). False when malformed.
bool ParseIso8601Utc(std::string_view text, std::time_t *out);
// The reverse, for messages: "2024-05-01 12:34:56 UTC".
std::string FormatUtc(std::time_t t);

// The shared state of one set of temporary credentials.
struct CacheEntry {
	std::uint64_t generation = 0; // changes whenever credentials or a failure are published
	bool valid = false;           // credentials were obtained
	TimedCredentials credentials;
	std::time_t obtained_at = 0;
	std::string source; // how they were obtained, e.g. "web_identity", "instance + assume_role"
	// The last refresh failed (cleared by a success).
	bool failed = false;
	std::time_t failed_at = 0;
	ErrorKind error_kind = ErrorKind::kSystemic;
	std::string error_sqlstate;
	std::string error_message;
	std::string error_detail;
	std::string error_hint;
	// A process is refreshing them.
	bool refreshing = false;
	std::time_t claimed_at = 0;
	// The S3 server refused them: refresh before they fall due.
	bool stale = false;

	Error StoredError() const;
};

// Where the entry lives. Implementations copy in and out under their own
// lock; they must not throw except std::bad_alloc, and must be usable from
// the core zone (no PostgreSQL error may escape them).
class CredentialStore {
  public:
	virtual ~CredentialStore() = default;
	virtual CacheEntry Load() = 0;
	// Makes this process the refresher, unless another one is (and claimed
	// after stale_before). True when claimed.
	virtual bool TryClaim(std::time_t now, std::time_t stale_before) = 0;
	// New credentials; ends this process's claim and clears the failure.
	virtual void Publish(const TimedCredentials &credentials, const std::string &source, std::time_t now) = 0;
	// A failed refresh; the credentials stay. Ends this process's claim.
	virtual void PublishFailure(const Error &error, std::time_t now) = 0;
	// Ends this process's claim (an interrupted refresh), if it holds it.
	virtual void Release() = 0;
	// The next Current() refreshes, even before the credentials fall due
	// (the S3 server refused them).
	virtual void MarkStale(std::uint64_t generation) = 0;
};

// A store in process memory: unit tests, and a server without shared memory
// (reportstore not in shared_preload_libraries).
class MemoryCredentialStore : public CredentialStore {
  public:
	CacheEntry Load() override;
	bool TryClaim(std::time_t now, std::time_t stale_before) override;
	void Publish(const TimedCredentials &credentials, const std::string &source, std::time_t now) override;
	void PublishFailure(const Error &error, std::time_t now) override;
	void Release() override;
	void MarkStale(std::uint64_t generation) override;

  private:
	std::mutex mutex_;
	CacheEntry entry_;
};

// Result of one fetch: the credentials and how they were obtained.
struct FetchedCredentials {
	TimedCredentials credentials;
	std::string source;
};
// Obtains new credentials (network, files); throws reportstore::Error.
using CredentialsFetcher = std::function<FetchedCredentials(const http::InterruptProbe &)>;

struct RefreshPolicy {
	std::time_t margin_s = 300;       // refresh this long before the credentials expire (at half their
	                                  // usable life when they live shorter than that)
	std::time_t min_interval_s = 5;   // but no sooner than this after they were obtained
	std::time_t retry_s = 10;         // after a failed refresh, the next try waits this long
	std::time_t claim_timeout_s = 90; // a refresh older than this is presumed dead (its process was killed)
	std::time_t expiry_skew_s = 10;   // credentials this close to their expiry are not used for new requests
	int poll_ms = 50;                 // how often a waiting process looks again
};

using Sleeper = std::function<void(int ms)>;

class RefreshingProvider : public CredentialsProvider {
  public:
	RefreshingProvider(std::shared_ptr<CredentialStore> store, CredentialsFetcher fetch, RefreshPolicy policy,
	                   http::InterruptProbe probe, Clock clock = SystemClock(), Sleeper sleep = {});

	// Valid credentials from the store. When they fall due (or there are
	// none) and no other process refreshes them, this process fetches new
	// ones. When another process is refreshing and there are no valid
	// credentials, waits for it. A failed refresh keeps the valid
	// credentials; without any, it throws the failure (kSystemic) and, for
	// policy.retry_s, throws it again without a new attempt.
	Credentials Current() override;

	// When the entry's credentials fall due for a refresh; 0 for none.
	std::time_t DueAt(const CacheEntry &entry) const;
	// When a refresh will next be tried: DueAt, and not before retry_s after
	// a failed one. For a process that refreshes ahead of need (a worker).
	std::time_t NextRefreshAt(const CacheEntry &entry) const;
	// Whether the entry's credentials may sign a request at `now`.
	bool Usable(const CacheEntry &entry, std::time_t now) const;

	CredentialStore &store() const {
		return *store_;
	}
	const RefreshPolicy &policy() const {
		return policy_;
	}

  private:
	// Fetches and publishes as the claimed refresher; returns the new
	// credentials, or the still valid ones when the fetch failed.
	Credentials Refresh(const CacheEntry &seen);

	std::shared_ptr<CredentialStore> store_;
	CredentialsFetcher fetch_;
	RefreshPolicy policy_;
	http::InterruptProbe probe_;
	Clock clock_;
	Sleeper sleep_;
};

} // namespace reportstore::aws
