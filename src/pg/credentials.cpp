// Temporary S3 credentials in PostgreSQL. See credentials.hpp.
#include "pg/credentials.hpp"

#include <cstring>
#include <ctime>
#include <limits>
#include <memory>
#include <string>

#include "core/aws/credential_sources.hpp"
#include "core/http/engine.hpp"
#include "pg/guard.hpp"
#include "pg/shared_state.hpp"

extern "C" {
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
}

namespace reportstore::pg {

namespace {

constexpr int kSlots = 4; // sets of credential settings at once (a superuser's SET in a session makes another)
constexpr std::size_t kFingerprintBytes = 64;

// One set of temporary credentials and the state of its refresh. Plain data.
struct CredentialSlot {
	bool used;
	char fingerprint[kFingerprintBytes + 1];
	int64 last_used; // seconds; the least recently used slot is reused
	uint64 generation;
	bool valid;
	char access_key_id[257];
	char secret_access_key[257];
	char session_token[aws::kMaxSessionTokenBytes + 1];
	int64 expiration;
	int64 obtained_at;
	char source[64];
	pid_t published_by;
	bool failed;
	int64 failed_at;
	int error_kind;
	char error_sqlstate[6];
	char error_message[256];
	char error_detail[1024];
	char error_hint[512];
	bool refreshing;
	int64 claimed_at;
	pid_t refresher;
	bool stale;
};

struct CredentialCache {
	slock_t mutex; // held only to copy in or out: no call, no allocation
	uint64 next_generation;
	CredentialSlot slots[kSlots];
};

CredentialCache *g_shared_cache = nullptr; // shared memory (preloaded)
CredentialCache *g_local_cache = nullptr;  // process memory (not preloaded)
shmem_request_hook_type g_prev_shmem_request = nullptr;
shmem_startup_hook_type g_prev_shmem_startup = nullptr;

void ShmemRequest(void) {
	if (g_prev_shmem_request)
		g_prev_shmem_request();
	RequestAddinShmemSpace(MAXALIGN(sizeof(CredentialCache)));
}

void InitCache(CredentialCache *cache) {
	std::memset(cache, 0, sizeof(*cache));
	SpinLockInit(&cache->mutex);
	cache->next_generation = 1;
}

void ShmemStartup(void) {
	if (g_prev_shmem_startup)
		g_prev_shmem_startup();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	bool found;
	g_shared_cache =
	    static_cast<CredentialCache *>(ShmemInitStruct("reportstore credentials", sizeof(CredentialCache), &found));
	if (!found)
		InitCache(g_shared_cache);
	LWLockRelease(AddinShmemInitLock);
}

// Core zone: the cache of this process (shared when preloaded).
CredentialCache *Cache() {
	if (g_shared_cache != nullptr)
		return g_shared_cache;
	if (g_local_cache == nullptr) {
		auto *cache = static_cast<CredentialCache *>(std::malloc(sizeof(CredentialCache)));
		if (cache == nullptr)
			throw std::bad_alloc();
		InitCache(cache);
		g_local_cache = cache;
	}
	return g_local_cache;
}

void Copy(char *dst, std::size_t size, const std::string &src) {
	strlcpy(dst, src.c_str(), size);
}

// The slot of a fingerprint, with the cache's spinlock held; create: take a
// free slot, else the least recently used one nobody refreshes. nullptr
// when there is none.
CredentialSlot *FindSlotLocked(CredentialCache *cache, const char *fingerprint, bool create, int64 now) {
	CredentialSlot *victim = nullptr;
	for (CredentialSlot &slot : cache->slots) {
		if (slot.used && std::strcmp(slot.fingerprint, fingerprint) == 0) {
			slot.last_used = now;
			return &slot;
		}
		if (!create)
			continue;
		if (!slot.used) {
			if (victim == nullptr || victim->used)
				victim = &slot;
		} else if (!slot.refreshing && (victim == nullptr || (victim->used && slot.last_used < victim->last_used))) {
			victim = &slot;
		}
	}
	if (victim == nullptr)
		return nullptr;
	std::memset(victim, 0, sizeof(*victim));
	victim->used = true;
	strlcpy(victim->fingerprint, fingerprint, sizeof(victim->fingerprint));
	victim->last_used = now;
	victim->generation = cache->next_generation++;
	return victim;
}

aws::CacheEntry ToEntry(const CredentialSlot &slot) {
	aws::CacheEntry e;
	e.generation = slot.generation;
	e.valid = slot.valid;
	e.credentials.credentials.access_key_id = slot.access_key_id;
	e.credentials.credentials.secret_access_key = slot.secret_access_key;
	e.credentials.credentials.session_token = slot.session_token;
	e.credentials.expiration = static_cast<std::time_t>(slot.expiration);
	e.obtained_at = static_cast<std::time_t>(slot.obtained_at);
	e.source = slot.source;
	e.failed = slot.failed;
	e.failed_at = static_cast<std::time_t>(slot.failed_at);
	e.error_kind = static_cast<ErrorKind>(slot.error_kind);
	e.error_sqlstate = slot.error_sqlstate;
	e.error_message = slot.error_message;
	e.error_detail = slot.error_detail;
	e.error_hint = slot.error_hint;
	e.refreshing = slot.refreshing;
	e.claimed_at = static_cast<std::time_t>(slot.claimed_at);
	e.stale = slot.stale;
	return e;
}

// The cache as aws::CredentialStore for one fingerprint. Every method copies
// under the spinlock into plain memory and converts outside it.
class SharedStore : public aws::CredentialStore {
  public:
	SharedStore(CredentialCache *cache, std::string fingerprint)
	    : cache_(cache), fingerprint_(std::move(fingerprint)) {}

	aws::CacheEntry Load() override {
		aws::CacheEntry entry;
		CopySlot(true, &entry);
		return entry;
	}

	// The entry without creating a slot; false when there is none.
	bool Peek(aws::CacheEntry *out) {
		return CopySlot(false, out);
	}

	// The slot of these credentials (created when `create`), copied out under
	// the lock; false when there is none.
	bool CopySlot(bool create, aws::CacheEntry *out) {
		auto copy = std::make_unique<CredentialSlot>(); // 10 KiB: not on the stack
		bool found = false;
		SpinLockAcquire(&cache_->mutex);
		if (CredentialSlot *slot = FindSlotLocked(cache_, fingerprint_.c_str(), create, std::time(nullptr))) {
			std::memcpy(copy.get(), slot, sizeof(CredentialSlot));
			found = true;
		}
		SpinLockRelease(&cache_->mutex);
		if (found)
			*out = ToEntry(*copy);
		return found;
	}

	bool TryClaim(std::time_t now, std::time_t stale_before) override {
		bool claimed = false;
		SpinLockAcquire(&cache_->mutex);
		CredentialSlot *slot = FindSlotLocked(cache_, fingerprint_.c_str(), true, now);
		if (slot != nullptr && (!slot->refreshing || slot->claimed_at < stale_before)) {
			slot->refreshing = true;
			slot->claimed_at = now;
			slot->refresher = MyProcPid;
			claimed = true;
		}
		SpinLockRelease(&cache_->mutex);
		return claimed;
	}

	void Publish(const aws::TimedCredentials &credentials, const std::string &source, std::time_t now) override {
		const aws::Credentials &c = credentials.credentials;
		uint64 generation = 0;
		SpinLockAcquire(&cache_->mutex);
		if (CredentialSlot *slot = FindSlotLocked(cache_, fingerprint_.c_str(), true, now)) {
			slot->generation = generation = cache_->next_generation++;
			slot->valid = true;
			Copy(slot->access_key_id, sizeof(slot->access_key_id), c.access_key_id);
			Copy(slot->secret_access_key, sizeof(slot->secret_access_key), c.secret_access_key);
			Copy(slot->session_token, sizeof(slot->session_token), c.session_token);
			slot->expiration = credentials.expiration;
			slot->obtained_at = now;
			Copy(slot->source, sizeof(slot->source), source);
			slot->published_by = MyProcPid;
			slot->failed = false;
			slot->stale = false;
			if (slot->refresher == MyProcPid)
				slot->refreshing = false;
		}
		SpinLockRelease(&cache_->mutex);
		published_here_ = generation;
	}

	void PublishFailure(const Error &error, std::time_t now) override {
		// Compared outside the lock: the same failure as the last one?
		char message[sizeof(CredentialSlot::error_message)];
		char detail[sizeof(CredentialSlot::error_detail)];
		strlcpy(message, error.what(), sizeof(message));
		Copy(detail, sizeof(detail), error.detail());
		SpinLockAcquire(&cache_->mutex);
		if (CredentialSlot *slot = FindSlotLocked(cache_, fingerprint_.c_str(), true, now)) {
			repeated_here_ = slot->failed && std::strcmp(slot->error_message, message) == 0 &&
			                 std::strcmp(slot->error_detail, detail) == 0;
			slot->generation = cache_->next_generation++;
			slot->failed = true;
			slot->failed_at = now;
			slot->error_kind = static_cast<int>(error.kind());
			strlcpy(slot->error_sqlstate, error.sqlstate().size() == 5 ? error.sqlstate().c_str() : "28000",
			        sizeof(slot->error_sqlstate));
			std::memcpy(slot->error_message, message, sizeof(message));
			std::memcpy(slot->error_detail, detail, sizeof(detail));
			Copy(slot->error_hint, sizeof(slot->error_hint), error.hint());
			if (slot->refresher == MyProcPid)
				slot->refreshing = false;
			failed_here_ = slot->generation;
		}
		SpinLockRelease(&cache_->mutex);
	}

	void Release() override {
		SpinLockAcquire(&cache_->mutex);
		if (CredentialSlot *slot = FindSlotLocked(cache_, fingerprint_.c_str(), false, std::time(nullptr)))
			if (slot->refresher == MyProcPid)
				slot->refreshing = false;
		SpinLockRelease(&cache_->mutex);
	}

	void MarkStale(std::uint64_t generation) override {
		SpinLockAcquire(&cache_->mutex);
		if (CredentialSlot *slot = FindSlotLocked(cache_, fingerprint_.c_str(), false, std::time(nullptr)))
			if (slot->generation == generation && slot->valid)
				slot->stale = true;
		SpinLockRelease(&cache_->mutex);
	}

	// The generation this process published last, and of its last failure (0: none).
	std::uint64_t published_here() const {
		return published_here_;
	}
	std::uint64_t failed_here() const {
		return failed_here_;
	}
	// Whether this process's last failure repeated the one before it.
	bool repeated_here() const {
		return repeated_here_;
	}

  private:
	CredentialCache *cache_;
	std::string fingerprint_;
	std::uint64_t published_here_ = 0;
	std::uint64_t failed_here_ = 0;
	bool repeated_here_ = false;
};

// What this process signs with, while the settings stay the same.
struct ProcessState {
	std::string key; // the settings' fingerprint and what else makes the provider
	std::shared_ptr<SharedStore> store;
	std::shared_ptr<aws::RefreshingProvider> provider;
};

// Plain pointers, not global objects: no destructor may run from exit().
ProcessState *g_state = nullptr;
http::Engine *g_engine = nullptr; // STS and IMDS requests
bool g_exit_callback_registered = false;
uint64 g_logged_generation = 0; // credentials this process obtained and logged
char g_logged_failure[256] = "";

void AtExit(int code, Datum arg) {
	// A claim this process holds (a FATAL during a refresh) goes now, not
	// after the claim timeout.
	if (CredentialCache *cache = g_shared_cache) {
		SpinLockAcquire(&cache->mutex);
		for (CredentialSlot &slot : cache->slots)
			if (slot.used && slot.refreshing && slot.refresher == MyProcPid)
				slot.refreshing = false;
		SpinLockRelease(&cache->mutex);
	}
	delete g_state;
	g_state = nullptr;
	delete g_engine;
	g_engine = nullptr;
}

http::Engine &CredentialsEngine(const http::TlsOptions &tls) {
	if (g_engine == nullptr) {
		http::GlobalInit();
		g_engine = new http::Engine(tls);
	} else {
		g_engine->SetTls(tls);
	}
	return *g_engine;
}

// The longest a refresh may take: two STS requests (IMDS or a token file,
// then AssumeRole) plus the three IMDS requests, with room.
std::time_t ClaimTimeout(const aws::SourceSettings &source) {
	const long sts_ms = source.sts.connect_timeout_ms + source.sts.timeout_ms;
	const long imds_ms = 3 * (source.imds.connect_timeout_ms + source.imds.timeout_ms);
	return static_cast<std::time_t>((2 * sts_ms + imds_ms) / 1000 + 10);
}

// Core zone: the state for the current settings (null for static keys).
ProcessState *StateFor(const Settings &settings) {
	const aws::SourceSettings source = BuildSourceSettings(settings);
	aws::CheckSourceSettings(source);
	if (!aws::IsTemporary(source))
		return nullptr;
	const std::string fingerprint = aws::Fingerprint(source);
	const http::TlsOptions tls = BuildTlsOptions(settings);
	aws::RefreshPolicy policy;
	policy.margin_s = settings.credentials_refresh_margin_s;
	policy.claim_timeout_s = ClaimTimeout(source);
	const std::string key = fingerprint + "|" + (tls.verify ? "1" : "0") + tls.ca_file + "|" +
	                        std::to_string(policy.margin_s) + "|" + std::to_string(policy.claim_timeout_s);
	if (g_state != nullptr && g_state->key == key)
		return g_state;

	auto state = std::make_unique<ProcessState>();
	state->key = key;
	state->store = std::make_shared<SharedStore>(Cache(), fingerprint);
	auto fetch = [source, tls](const http::InterruptProbe &probe) {
		aws::FetchedCredentials f = aws::FetchCredentials(CredentialsEngine(tls), source, probe);
		const aws::Credentials &c = f.credentials.credentials;
		if (c.access_key_id.size() >= sizeof(CredentialSlot::access_key_id) ||
		    c.secret_access_key.size() >= sizeof(CredentialSlot::secret_access_key) ||
		    c.session_token.size() >= sizeof(CredentialSlot::session_token) ||
		    f.source.size() >= sizeof(CredentialSlot::source))
			throw Error(ErrorKind::kSystemic, sqlstate::kProtocolViolation, "obtained S3 credentials too long to keep",
			            "Source: " + f.source + ".");
		return f;
	};
	state->provider = std::make_shared<aws::RefreshingProvider>(state->store, std::move(fetch), policy,
	                                                            [] { return InterruptRequested(); });
	delete g_state;
	g_state = state.release();
	return g_state;
}

TimestampTz ToTimestamp(std::time_t t) {
	return t == 0 ? 0 : time_t_to_timestamptz(static_cast<pg_time_t>(t));
}

} // namespace

void RequestCredentialCache() {
	g_prev_shmem_request = shmem_request_hook;
	shmem_request_hook = ShmemRequest;
}

void InstallCredentialCacheHooks() {
	g_prev_shmem_startup = shmem_startup_hook;
	shmem_startup_hook = ShmemStartup;
}

void PrepareCredentials() {
	if (!g_exit_callback_registered) {
		on_shmem_exit(AtExit, (Datum)0);
		g_exit_callback_registered = true;
	}
}

aws::CredentialsProviderPtr ProcessCredentials(const Settings &settings) {
	ProcessState *state = StateFor(settings);
	return state ? state->provider : nullptr;
}

TimestampTz MaintainCredentials() {
	if (g_settings.endpoint == nullptr || g_settings.endpoint[0] == '\0')
		return 0;
	PrepareCredentials();
	bool temporary = false;
	std::time_t due = 0;
	std::time_t expiration = 0;
	bool obtained_here = false;
	bool failed_here = false;
	uint64 generation = 0;
	char source[64] = "";
	CapturedError failure; // the refresh failed (the credentials may still be valid)
	failure.failed = false;
	CapturedError error;
	TryCore(
	    [&] {
		    ProcessState *state = StateFor(g_settings);
		    if (state == nullptr)
			    return;
		    temporary = true;
		    try {
			    state->provider->Current();
		    } catch (const Error &e) {
			    if (e.kind() == ErrorKind::kInterrupted)
				    throw;
			    CaptureError(e, &failure);
		    }
		    const aws::CacheEntry entry = state->store->Load();
		    due = state->provider->NextRefreshAt(entry);
		    expiration = entry.credentials.expiration;
		    generation = entry.generation;
		    obtained_here = state->store->published_here() != 0 && state->store->published_here() == generation;
		    // A failure is logged by the process that met it, the first time
		    // it happens: not again by every worker, not at every retry.
		    failed_here = state->store->failed_here() != 0 && state->store->failed_here() == generation &&
		                  !state->store->repeated_here();
		    strlcpy(source, entry.source.c_str(), sizeof(source));
		    if (entry.failed && !failure.failed)
			    CaptureError(entry.StoredError(), &failure);
	    },
	    &error);
	if (error.failed) {
		if (error.kind == ErrorKind::kInterrupted)
			CHECK_FOR_INTERRUPTS();
		if (error.kind == ErrorKind::kConfig)
			return 0; // incomplete settings: the batch reports them, as for static keys
		failure = error;
		failed_here = true;
	}
	if (failure.failed) {
		char *text = psprintf("%s%s%s", failure.message, failure.detail[0] ? ": " : "", failure.detail);
		SetLastError(text);
		// One WARNING per new failure, by the process that met it.
		if (failed_here && std::strncmp(g_logged_failure, text, sizeof(g_logged_failure) - 1) != 0) {
			strlcpy(g_logged_failure, text, sizeof(g_logged_failure));
			const char *s = failure.sqlstate;
			ereport(WARNING,
			        (errcode(MAKE_SQLSTATE(s[0], s[1], s[2], s[3], s[4])), errmsg("reportstore: %s", failure.message),
			         failure.detail[0] ? errdetail_internal("%s", failure.detail) : 0,
			         failure.hint[0] ? errhint("%s", failure.hint) : 0));
		}
		return error.failed ? 0 : ToTimestamp(due);
	}
	g_logged_failure[0] = '\0';
	if (temporary && obtained_here && generation != g_logged_generation) {
		g_logged_generation = generation;
		ereport(LOG, (errmsg("reportstore: obtained S3 credentials (%s), valid until %s", source,
		                     expiration ? timestamptz_to_str(ToTimestamp(expiration)) : "their revocation")));
	}
	if (!temporary || due == std::numeric_limits<std::time_t>::max())
		return 0;
	return ToTimestamp(due);
}

void MarkCredentialsRefused() {
	CapturedError error;
	TryCore(
	    [&] {
		    ProcessState *state = StateFor(g_settings);
		    if (state == nullptr)
			    return;
		    aws::CacheEntry entry;
		    if (state->store->Peek(&entry))
			    state->store->MarkStale(entry.generation);
	    },
	    &error);
}

void GetCredentialsInfo(CredentialsInfo *out) {
	std::memset(out, 0, sizeof(*out));
	CapturedError error;
	TryCore(
	    [&] {
		    strlcpy(out->source,
		            aws::CredentialSourceName(static_cast<aws::CredentialSource>(g_settings.credential_source)),
		            sizeof(out->source));
		    const aws::SourceSettings source = BuildSourceSettings(g_settings);
		    strlcpy(out->source, aws::SourceLabel(source).c_str(), sizeof(out->source));
		    if (!aws::IsTemporary(source))
			    return;
		    SharedStore store(Cache(), aws::Fingerprint(source));
		    aws::CacheEntry entry;
		    if (!store.Peek(&entry))
			    return;
		    if (entry.valid) {
			    out->expires_at = ToTimestamp(entry.credentials.expiration);
			    out->obtained_at = ToTimestamp(entry.obtained_at);
		    }
		    out->refreshing = entry.refreshing;
		    if (entry.failed) {
			    const std::string text =
			        entry.error_message + (entry.error_detail.empty() ? "" : ": " + entry.error_detail);
			    strlcpy(out->last_error, text.c_str(), sizeof(out->last_error));
			    out->last_error_at = ToTimestamp(entry.failed_at);
		    }
	    },
	    &error);
	if (error.failed && out->last_error[0] == '\0') { // incomplete settings: say why
		strlcpy(out->last_error, error.message, sizeof(out->last_error));
		if (error.detail[0] != '\0') {
			strlcat(out->last_error, ": ", sizeof(out->last_error));
			strlcat(out->last_error, error.detail, sizeof(out->last_error));
		}
	}
}

} // namespace reportstore::pg
