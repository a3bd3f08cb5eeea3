// The launcher of the workers (launcher.cpp). PostgreSQL zone.
#pragma once

#include "pg/pg_prelude.hpp"

namespace reportstore::pg {

// _PG_init: the launcher, a static background worker.
void RegisterLauncher();

// In a backend about to DROP or RENAME a database: stops its workers and
// waits (up to 10 s) until they have left it; the launcher starts none there
// for a minute (a failed DROP is served again then).
void StopWorkersOfDatabase(Oid database, const char *why);

// CREATE EXTENSION reportstore, or a write to reports where no worker runs:
// the launcher serves the database at once.
void ServeDatabaseNow(Oid database);

// In a worker: its database has nothing to serve (no extension...); the
// launcher tries again a minute later.
void NoteDatabaseUnserved(Oid database, const char *why);

} // namespace reportstore::pg
