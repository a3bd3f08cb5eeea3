// Temporary S3 credentials in PostgreSQL (reportstore.credential_source,
// reportstore.role_arn): the cache that every backend and worker signs
// with, the workers' proactive refresh, and what monitoring shows.
//
// The cache lives in shared memory (a few slots, one per set of credential
// settings, found by the settings' fingerprint) and is protected by a
// spinlock held only to copy a slot in or out: no PostgreSQL call, no
// allocation under it, so it is used from the core zone (the signer asks for
// the credentials at signing time, inside CallCore). The refresh itself runs
// in one process at a time (a claim with the refresher's pid and a timeout,
// released at process exit) with no lock held. Secrets live in shared memory
// (readable only by the server's OS user) and in the process that signs;
// never in a setting, a log line, an error message or pg_stat_activity.
// Without shared_preload_libraries the cache is per process.
#pragma once

#include "pg/pg_prelude.hpp"

#include "core/aws/credentials.hpp"
#include "pg/settings.hpp"

extern "C" {
#include "utils/timestamp.h"
}

namespace reportstore::pg {

// From _PG_init when preloaded: the cache's shared memory.
void RequestCredentialCache();
void InstallCredentialCacheHooks();

// PostgreSQL zone, before the first CallCore that may sign (PrepareS3Session
// calls it): a claim this process holds is released when it exits.
void PrepareCredentials();

// Core zone: the provider the S3 client signs with: null for static keys
// (the client uses them as they are), else temporary credentials from the
// shared cache, refreshed as they fall due. The same object while the
// settings stay the same. Throws reportstore::Error (kConfig).
aws::CredentialsProviderPtr ProcessCredentials(const Settings &settings);

// PostgreSQL zone, for the workers: obtains or refreshes temporary
// credentials that fall due (one process does), so that nobody waits for
// them. A failed refresh becomes the database's last error and one WARNING
// per new failure; credentials this process obtained are logged once.
// Returns when the credentials fall due next (0: never, or static keys).
TimestampTz MaintainCredentials();

// PostgreSQL zone: the S3 server refused requests (28000, 42501): temporary
// credentials are refreshed at their next use rather than at their expiry
// (an STS key rotated on the server, a revoked session).
void MarkCredentialsRefused();

// PostgreSQL zone: reportstore.credentials_info().
struct CredentialsInfo {
	char source[64];          // SourceLabel, or the configured source when the settings are incomplete
	TimestampTz expires_at;   // 0: no expiry (static keys) or none obtained yet
	TimestampTz obtained_at;  // 0: none obtained yet
	bool refreshing;          // a process is refreshing them now
	char last_error[1536];    // the last failed refresh (message: detail), "" when the last one worked
	TimestampTz last_error_at;
};
void GetCredentialsInfo(CredentialsInfo *out);

} // namespace reportstore::pg
