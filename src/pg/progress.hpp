// Progress of long DBA operations (verify, orphans, recall_many,
// release_kept_data, run_once): a slot in shared memory that the view
// reportstore.progress shows to other sessions, a periodic NOTICE, and the
// text of pg_stat_activity. A slot is released when the operation ends, when
// its (sub)transaction aborts, and when the backend exits. PostgreSQL zone.
#pragma once

#include "pg/pg_prelude.hpp"

extern "C" {
#include "utils/timestamp.h"
}

namespace reportstore::pg {

// No-ops without shared memory (library not preloaded).
void ProgressBegin(const char *command, int64 total);
void ProgressUpdate(int64 done, int64 total, int64 found);
void ProgressEnd();

// An operation that also tells the client how it is doing every few seconds.
struct Progress {
	const char *what;
	TimestampTz started;
	TimestampTz last;
};
void ProgressStart(Progress *p, const char *what, int64 total);
// total < 0: unknown; `found` counts problems, orphans...
void ProgressTick(Progress *p, int64 done, int64 total, int64 found);

} // namespace reportstore::pg
