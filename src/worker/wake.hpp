// Waking the workers (wake.cpp). PostgreSQL zone.
#pragma once

#include "pg/pg_prelude.hpp"

extern "C" {
#include "executor/execdesc.h"
}

namespace reportstore::pg {

// Wakes one idle worker of this database when the current transaction
// commits (at most once per transaction); when none runs, the launcher starts
// one. A rolled-back transaction wakes nothing.
void WakeWorkerAtCommit();

// ExecutorEnd: an INSERT, UPDATE or MERGE that changed rows of a table named
// reports wakes a worker at commit. Not in the workers themselves: their own
// updates need no wake-up.
void WakeOnWrite(const QueryDesc *query_desc);

// COPY ... FROM into a table named reports.
void WakeOnCopy(const char *relname);

// The worker process: its writes wake nobody.
void MarkProcessAsWorker();

} // namespace reportstore::pg
