// Controlling the workers from SQL: reportstore.pause(), resume(), wake()
// and run_once() (a synchronous migration pass in the caller's transaction).
// pause and resume act on the workers of the current database.
#include "pg/guard.hpp"
#include "pg/progress.hpp"
#include "pg/run_as.hpp"
#include "pg/settings.hpp"
#include "pg/shared_state.hpp"
#include "worker/batch_runner.hpp"
#include "worker/delete_batch.hpp"
#include "worker/wake.hpp"

extern "C" {
#include "utils/timestamp.h"
}

namespace {

using namespace reportstore::pg;

void SetPaused(bool paused) {
	SharedState *shared = RequireShared();
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	DatabaseState *db = FindDatabase(shared, MyDatabaseId, true);
	if (db != nullptr)
		db->paused = paused;
	LWLockRelease(shared->lock);
	if (db == nullptr)
		ereport(ERROR, (errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
		                errmsg("reportstore keeps the state of at most %d databases", kMaxDatabases)));
	(void)WakeDatabaseWorkers(MyDatabaseId, true);
}

bool BackendInterrupted() {
	return InterruptRequested();
}

} // namespace

// reportstore.pause(): the workers of this database finish the batch in
// flight ("pausing") and then wait ("paused").
REPORTSTORE_FUNCTION(reportstore_pause) {
	SetPaused(true);
	PG_RETURN_VOID();
}

REPORTSTORE_FUNCTION(reportstore_resume) {
	SetPaused(false);
	PG_RETURN_VOID();
}

// reportstore.wake(): every worker of this database looks for work now;
// false when none runs (the launcher then starts one).
REPORTSTORE_FUNCTION(reportstore_wake) {
	if (Shared() == nullptr)
		PG_RETURN_BOOL(false); // not preloaded: there is no worker to wake
	PG_RETURN_BOOL(WakeDatabaseWorkers(MyDatabaseId, true));
}

// reportstore.wake_at_commit(): wake a worker if this transaction commits.
// Only the reportstore_guard trigger of schema version 1.1 calls it; kept so
// that this library works with that schema until ALTER EXTENSION UPDATE.
REPORTSTORE_FUNCTION(reportstore_wake_at_commit) {
	WakeWorkerAtCommit();
	PG_RETURN_VOID();
}

// reportstore.run_once(): offload every pending report now, in the calling
// transaction, batch by batch (each in a subtransaction, see batch_runner.hpp),
// then the deletions that are due. Returns the number offloaded.
REPORTSTORE_FUNCTION(reportstore_run_once) {
	const ReportTable &table = RequireReportTable(kSchemaVersion);
	BatchOptions options = BatchOptionsFromSettings(BackendInterrupted);
	int64 offloaded = 0, failed = 0, bytes = 0;
	TimestampTz start = GetCurrentTimestamp();
	ProgressBegin("run_once", -1);
	BatchRunner runner;
	InitBatchRunner(&runner, CurrentMemoryContext);
	for (;;) {
		BatchResult result;
		RunBatch(table, options, &runner, &result);
		CHECK_FOR_INTERRUPTS();
		if (result.interrupted)
			ereport(ERROR, (errcode(ERRCODE_QUERY_CANCELED), errmsg("migration pass interrupted")));
		if (result.systemic)
			RaiseCaptured(&result.systemic_error);
		offloaded += result.offloaded;
		failed += result.failed;
		bytes += result.bytes;
		if (result.failed > 0)
			ereport(NOTICE, (errmsg("reportstore: report %s was not offloaded: %s", result.first_failure_id,
			                        result.first_failure.message),
			                 result.failed > 1 ? errdetail("%d reports of this batch failed; see "
			                                               "reportstore.offload_state.",
			                                               result.failed)
			                                   : 0));
		if (result.selected == 0 && !result.locked_any && BatchRunnerAtEnd(&runner))
			break;
		long secs;
		int usecs;
		TimestampDifference(start, GetCurrentTimestamp(), &secs, &usecs);
		double elapsed = secs + usecs / 1e6;
		ProgressUpdate(offloaded, -1, failed);
		if (result.offloaded > 0)
			ereport(NOTICE, (errmsg("reportstore: %lld reports offloaded (%.1f MiB, %.1f reports/s), %lld failed",
			                        static_cast<long long>(offloaded), bytes / 1048576.0,
			                        elapsed > 0 ? offloaded / elapsed : 0.0, static_cast<long long>(failed))));
	}
	// Then the deletions that are due.
	for (;;) {
		DeleteResult deletes;
		RunDeleteBatch(table, options, &deletes);
		CHECK_FOR_INTERRUPTS();
		if (deletes.systemic)
			RaiseCaptured(&deletes.systemic_error);
		if (deletes.due == 0 || deletes.deleted + deletes.skipped == 0)
			break;
	}
	ProgressEnd();
	PG_RETURN_INT64(offloaded);
}
