// The process's S3 connection state: one http::Engine per process (backend or
// worker), created on first use and freed at process exit, so keep-alive
// connections are reused across calls. Never placed in shared memory.
#pragma once

#include "pg/pg_prelude.hpp"

#include "core/http/engine.hpp"
#include "core/s3/client.hpp"
#include "pg/settings.hpp"

namespace reportstore::pg {

// PostgreSQL zone: registers the exit callback that frees the engine. Call
// before the first CallCore that uses ProcessEngine().
void PrepareS3Session();

// Core zone (inside CallCore): the engine configured with the current TLS
// settings. Throws on resource exhaustion.
http::Engine &ProcessEngine(const Settings &settings);

// Core zone: an S3 client for the current settings. It is kept for the life
// of the process while the settings stay the same, so its signer's cached
// signing key is reused across calls. With temporary credentials
// (reportstore.credential_source, reportstore.role_arn) they are obtained or
// refreshed first when due. Throws reportstore::Error (kConfig; kSystemic
// when no valid credentials can be obtained).
const s3::Client &ProcessClient(const Settings &settings);

// Interrupt probe for backends: query cancel, statement_timeout, termination.
http::InterruptProbe BackendInterruptProbe();

} // namespace reportstore::pg
