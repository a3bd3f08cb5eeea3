// Credentials providers and the refresh of temporary credentials. See
// credentials.hpp.
#include "core/aws/credentials.hpp"

#include <algorithm>
#include <chrono>
#include <limits>
#include <thread>

#include "core/strings.hpp"

namespace reportstore::aws {

namespace {

class Fixed : public CredentialsProvider {
  public:
	explicit Fixed(Credentials credentials) : credentials_(std::move(credentials)) {}
	Credentials Current() override {
		return credentials_;
	}

  private:
	Credentials credentials_;
};

// n ASCII digits at text[*pos], advancing *pos.
bool Digits(std::string_view text, std::size_t *pos, std::size_t n, int *out) {
	if (*pos + n > text.size())
		return false;
	int v = 0;
	for (std::size_t i = 0; i < n; i++) {
		const char c = text[*pos + i];
		if (!strings::IsDigit(c))
			return false;
		v = v * 10 + (c - '0');
	}
	*pos += n;
	*out = v;
	return true;
}

bool Expect(std::string_view text, std::size_t *pos, char c) {
	if (*pos >= text.size() || text[*pos] != c)
		return false;
	++*pos;
	return true;
}

// The failure with how long the previous credentials lasted, when there were some.
Error WithExpiry(const Error &e, const CacheEntry &seen) {
	if (!seen.valid || seen.credentials.expiration == 0)
		return e;
	std::string detail = e.detail();
	if (!detail.empty() && detail.back() != '.')
		detail += ".";
	detail += (detail.empty() ? "" : " ") + std::string("The S3 credentials obtained before expired at ") +
	          FormatUtc(seen.credentials.expiration) + ".";
	Error out(e.kind(), e.sqlstate(), e.what(), detail, e.hint());
	if (e.no_answer())
		out.MarkNoAnswer();
	return out;
}

// Ends a claim that was neither published nor failed (an interruption, an
// exception other than reportstore::Error).
class ClaimGuard {
  public:
	explicit ClaimGuard(CredentialStore &store) : store_(store) {}
	~ClaimGuard() {
		if (held_)
			store_.Release();
	}
	ClaimGuard(const ClaimGuard &) = delete;
	ClaimGuard &operator=(const ClaimGuard &) = delete;
	void Dismiss() {
		held_ = false;
	}

  private:
	CredentialStore &store_;
	bool held_ = true;
};

} // namespace

CredentialsProviderPtr FixedCredentials(Credentials credentials) {
	return std::make_shared<Fixed>(std::move(credentials));
}

bool ParseIso8601Utc(std::string_view text, std::time_t *out) {
	std::size_t pos = 0;
	int year, month, day, hour, minute, second;
	if (!Digits(text, &pos, 4, &year) || !Expect(text, &pos, '-') || !Digits(text, &pos, 2, &month) ||
	    !Expect(text, &pos, '-') || !Digits(text, &pos, 2, &day) || !Expect(text, &pos, 'T') ||
	    !Digits(text, &pos, 2, &hour) || !Expect(text, &pos, ':') || !Digits(text, &pos, 2, &minute) ||
	    !Expect(text, &pos, ':') || !Digits(text, &pos, 2, &second))
		return false;
	if (year < 1970 || month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60)
		return false;
	if (pos < text.size() && text[pos] == '.') {
		++pos;
		const std::size_t start = pos;
		while (pos < text.size() && strings::IsDigit(text[pos]) && pos - start < 12)
			++pos;
		if (pos == start)
			return false;
	}
	long offset = 0;
	if (pos < text.size() && text[pos] == 'Z') {
		++pos;
	} else if (pos < text.size() && (text[pos] == '+' || text[pos] == '-')) {
		const int sign = text[pos] == '-' ? -1 : 1;
		++pos;
		int oh, om;
		if (!Digits(text, &pos, 2, &oh) || !Expect(text, &pos, ':') || !Digits(text, &pos, 2, &om) || oh > 23 ||
		    om > 59)
			return false;
		offset = sign * (oh * 3600L + om * 60L);
	} else {
		return false;
	}
	if (pos != text.size())
		return false;
	std::tm tm{};
	tm.tm_year = year - 1900;
	tm.tm_mon = month - 1;
	tm.tm_mday = day;
	tm.tm_hour = hour;
	tm.tm_min = minute;
	tm.tm_sec = second;
	const std::time_t t = timegm(&tm);
	if (t == static_cast<std::time_t>(-1))
		return false;
	*out = t - offset;
	return true;
}

std::string FormatUtc(std::time_t t) {
	std::tm tm{};
	gmtime_r(&t, &tm);
	char buf[40];
	const std::size_t n = std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S UTC", &tm);
	return std::string(buf, n);
}

Error CacheEntry::StoredError() const {
	return Error(error_kind, error_sqlstate.size() == 5 ? error_sqlstate : sqlstate::kInvalidAuthorization,
	             error_message.empty() ? "could not obtain S3 credentials" : error_message, error_detail, error_hint);
}

// --- MemoryCredentialStore ----------------------------------------------------

CacheEntry MemoryCredentialStore::Load() {
	std::lock_guard<std::mutex> lock(mutex_);
	return entry_;
}

bool MemoryCredentialStore::TryClaim(std::time_t now, std::time_t stale_before) {
	std::lock_guard<std::mutex> lock(mutex_);
	if (entry_.refreshing && entry_.claimed_at >= stale_before)
		return false;
	entry_.refreshing = true;
	entry_.claimed_at = now;
	return true;
}

void MemoryCredentialStore::Publish(const TimedCredentials &credentials, const std::string &source, std::time_t now) {
	std::lock_guard<std::mutex> lock(mutex_);
	entry_.generation++;
	entry_.valid = true;
	entry_.credentials = credentials;
	entry_.obtained_at = now;
	entry_.source = source;
	entry_.failed = false;
	entry_.stale = false;
	entry_.refreshing = false;
}

void MemoryCredentialStore::PublishFailure(const Error &error, std::time_t now) {
	std::lock_guard<std::mutex> lock(mutex_);
	entry_.generation++;
	entry_.failed = true;
	entry_.failed_at = now;
	entry_.error_kind = error.kind();
	entry_.error_sqlstate = error.sqlstate();
	entry_.error_message = error.what();
	entry_.error_detail = error.detail();
	entry_.error_hint = error.hint();
	entry_.refreshing = false;
}

void MemoryCredentialStore::Release() {
	std::lock_guard<std::mutex> lock(mutex_);
	entry_.refreshing = false;
}

void MemoryCredentialStore::MarkStale(std::uint64_t generation) {
	std::lock_guard<std::mutex> lock(mutex_);
	if (entry_.generation == generation && entry_.valid)
		entry_.stale = true;
}

// --- RefreshingProvider --------------------------------------------------------

RefreshingProvider::RefreshingProvider(std::shared_ptr<CredentialStore> store, CredentialsFetcher fetch,
                                       RefreshPolicy policy, http::InterruptProbe probe, Clock clock, Sleeper sleep)
    : store_(std::move(store)), fetch_(std::move(fetch)), policy_(policy), probe_(std::move(probe)),
      clock_(clock ? std::move(clock) : SystemClock()), sleep_(std::move(sleep)) {
	if (!sleep_)
		sleep_ = [](int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); };
}

bool RefreshingProvider::Usable(const CacheEntry &entry, std::time_t now) const {
	if (!entry.valid || entry.credentials.credentials.Empty())
		return false;
	return entry.credentials.expiration == 0 || now + policy_.expiry_skew_s < entry.credentials.expiration;
}

std::time_t RefreshingProvider::DueAt(const CacheEntry &entry) const {
	if (!entry.valid)
		return 0;
	const std::time_t earliest = entry.obtained_at + policy_.min_interval_s;
	if (entry.stale)
		return earliest;
	if (entry.credentials.expiration == 0)
		return std::numeric_limits<std::time_t>::max();
	// Credentials that live shorter than the margin are refreshed at half
	// their usable life, not over and over.
	const std::time_t lifetime = entry.credentials.expiration - entry.obtained_at;
	if (lifetime <= policy_.margin_s)
		return std::max(earliest, entry.obtained_at + (lifetime - policy_.expiry_skew_s) / 2);
	return std::max(earliest, entry.credentials.expiration - policy_.margin_s);
}

std::time_t RefreshingProvider::NextRefreshAt(const CacheEntry &entry) const {
	const std::time_t due = DueAt(entry);
	return entry.failed ? std::max(due, entry.failed_at + policy_.retry_s) : due;
}

Credentials RefreshingProvider::Current() {
	const std::time_t give_up = clock_() + policy_.claim_timeout_s + 5;
	for (;;) {
		const CacheEntry entry = store_->Load();
		const std::time_t now = clock_();
		const bool usable = Usable(entry, now);
		if (usable && now < DueAt(entry))
			return entry.credentials.credentials;
		// Due for a refresh, or nothing usable. After a failure, the next
		// attempt waits a little: a batch of requests makes one attempt.
		if (entry.failed && now < entry.failed_at + policy_.retry_s) {
			if (usable)
				return entry.credentials.credentials;
			throw WithExpiry(entry.StoredError(), entry);
		}
		if (store_->TryClaim(now, now - policy_.claim_timeout_s))
			return Refresh(entry);
		if (usable)
			return entry.credentials.credentials; // another process is refreshing them
		// No credentials until the other process is done.
		if (probe_ && probe_())
			throw Error(ErrorKind::kInterrupted, sqlstate::kQueryCanceled,
			            "interrupted while waiting for S3 credentials");
		if (now >= give_up)
			throw Error(ErrorKind::kSystemic, sqlstate::kUnableToConnect,
			            "timed out waiting for another process to obtain S3 credentials",
			            "A refresh of the credentials has been in progress for more than " +
			                std::to_string(policy_.claim_timeout_s) + " seconds.",
			            "Check that the STS or instance metadata endpoint answers.");
		sleep_(policy_.poll_ms);
	}
}

Credentials RefreshingProvider::Refresh(const CacheEntry &seen) {
	ClaimGuard guard(*store_);
	// Another process may have published between our look and our claim.
	const CacheEntry entry = store_->Load();
	if (entry.generation != seen.generation && Usable(entry, clock_()) && clock_() < DueAt(entry))
		return entry.credentials.credentials; // the guard ends the claim
	FetchedCredentials fetched;
	try {
		fetched = fetch_(probe_);
		const std::time_t now = clock_();
		if (fetched.credentials.credentials.Empty())
			throw Error(ErrorKind::kSystemic, sqlstate::kProtocolViolation,
			            "obtained S3 credentials without an access key id or a secret access key",
			            "Source: " + fetched.source + ".");
		if (fetched.credentials.expiration != 0 && fetched.credentials.expiration <= now + policy_.expiry_skew_s)
			throw Error(ErrorKind::kSystemic, sqlstate::kInvalidAuthorization,
			            "obtained S3 credentials that expire at " + FormatUtc(fetched.credentials.expiration),
			            "Source: " + fetched.source + "; the server's clock says " + FormatUtc(now) + ".",
			            "Check the server's clock (NTP), and that the role's session lasts longer than " +
			                std::to_string(policy_.expiry_skew_s) + " seconds.");
	} catch (const Error &e) {
		if (e.kind() == ErrorKind::kInterrupted)
			throw; // not a failure of the source; the guard ends the claim
		store_->PublishFailure(e, clock_());
		guard.Dismiss();
		if (Usable(entry, clock_()))
			return entry.credentials.credentials; // still valid: keep using them
		throw WithExpiry(e, entry);
	}
	store_->Publish(fetched.credentials, fetched.source, clock_());
	guard.Dismiss();
	return fetched.credentials.credentials;
}

} // namespace reportstore::aws
