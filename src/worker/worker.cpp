// A worker: gradual migration of the existing reports of one database (seed
// Phase 2) and automatic offload of new ones. The launcher (launcher.cpp)
// starts one or several per database; they take disjoint batches.
//
// Loop: wait on the latch (woken at commit by writes to reports, by
// reportstore.wake(), or when a retry or deletion falls due) -> a pass over
// the pending reports, batch after batch, each in its own transaction -> the
// deletions that are due. Transfers run inside the batch's transaction: the
// row locks of a batch are what keeps two writers from racing on one object
// key, so they last until the batch's results are recorded. SIGTERM (die)
// aborts transfers through the interrupt probe and ends the process; the open
// transaction is rolled back, so nothing is half-committed. Systemic errors
// pause the whole worker with exponential backoff and one LOG line per state
// change.
#include "pg/pg_prelude.hpp"

#include <cstring>

#include "pg/credentials.hpp"
#include "pg/extension.hpp"
#include "pg/run_as.hpp"
#include "pg/s3_session.hpp"
#include "pg/settings.hpp"
#include "pg/shared_state.hpp"
#include "pg/spi_plans.hpp"
#include "worker/batch_runner.hpp"
#include "worker/delete_batch.hpp"
#include "worker/launcher.hpp"
#include "worker/wake.hpp"

extern "C" {
#include "commands/dbcommands.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/snapmgr.h"

PGDLLEXPORT void reportstore_worker_main(Datum main_arg);
}

namespace reportstore::pg {

namespace {

constexpr const char *kSystemicPrefix = "paused after a systemic error, retrying with backoff: ";

bool WorkerInterrupted() {
	return ProcDiePending;
}

void DetachFromSlot(int code, Datum arg) {
	SharedState *shared = Shared();
	if (shared == nullptr || g_worker_slot < 0)
		return;
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	WorkerSlot &slot = shared->workers[g_worker_slot];
	slot.latch = nullptr;
	slot.pid = 0;
	slot.exited = true;
	slot.state = WorkerState::kStopped;
	LWLockRelease(shared->lock);
}

bool DatabasePaused(SharedState *shared) {
	LWLockAcquire(shared->lock, LW_SHARED);
	DatabaseState *db = FindDatabase(shared, MyDatabaseId, false);
	bool paused = db != nullptr && db->paused;
	LWLockRelease(shared->lock);
	return paused;
}

// Logs a line only when the reason differs from the last one logged.
void LogOnChange(char *last, size_t size, int level, const char *reason) {
	if (strcmp(last, reason) == 0)
		return;
	strlcpy(last, reason, size);
	ereport(level, (errmsg("reportstore worker: %s", reason)));
}

// The reports table, or false with *why when the worker has nothing to do
// yet. In its own transaction.
bool LookUpTable(ReportTable *table, MemoryContext into, const char **why) {
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	bool found = FindReportTable(table, into, why);
	if (found && table->schema_version < kSchemaVersion) {
		found = false;
		*why = "the installed reportstore schema is older than this library; run ALTER EXTENSION reportstore UPDATE";
	}
	CommitTransactionCommand();
	return found;
}

// When the next piece of work becomes due by itself: a failed report's retry,
// a deletion's delay, or a report leaving reportstore.offload_delay. Nobody
// writes to wake the worker for those, so it sleeps no longer than this.
TimestampTz NextDueTime(const ReportTable &table) {
	TimestampTz due = 0;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	auto earliest = [&](const char *sql) {
		if (SPI_execute(sql, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
			return;
		bool isnull;
		Datum d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (!isnull && (due == 0 || DatumGetTimestampTz(d) < due))
			due = DatumGetTimestampTz(d);
	};
	RoleScope scope;
	BeginExtensionOwner(table, &scope);
	earliest("SELECT pg_catalog.min(s.next_attempt_at) FROM reportstore.offload_state s "
	         "WHERE s.next_attempt_at OPERATOR(pg_catalog.<) 'infinity'");
	earliest("SELECT pg_catalog.min(q.not_before) FROM reportstore.delete_queue q");
	EndRole(&scope);
	if (g_settings.offload_delay_s > 0) {
		BeginTableOwner(table, &scope);
		earliest(psprintf("SELECT pg_catalog.min(r.updated_at)::pg_catalog.timestamptz "
		                  "OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => %d) FROM %s r "
		                  "WHERE r.minio_path IS NULL AND r.report_data IS NOT NULL",
		                  g_settings.offload_delay_s, table.qualified_name));
		EndRole(&scope);
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	return due;
}

// While the endpoint does not answer, the worker asks it this often whether
// it is back, instead of sleeping out the whole backoff.
constexpr long kEndpointProbeMs = 2000;

long WaitTimeout(TimestampTz backoff_until, TimestampTz next_due, bool endpoint_silent) {
	long timeout = g_settings.naptime_ms;
	TimestampTz now = GetCurrentTimestamp();
	// A backoff that has passed (the worker was paused or disabled meanwhile)
	// no longer shortens the wait: it would make the loop spin.
	if (backoff_until != 0 && backoff_until <= now)
		backoff_until = 0;
	if (backoff_until != 0)
		timeout = TimestampDifferenceMilliseconds(now, backoff_until);
	if (backoff_until != 0 && endpoint_silent)
		timeout = Min(timeout, kEndpointProbeMs);
	else if (next_due != 0)
		timeout = Min(timeout, TimestampDifferenceMilliseconds(now, next_due) + 10);
	return Max(timeout, 1);
}

struct OffloadStep {
	const ReportTable *table;
	BatchRunner *runner;
	BatchResult result;
};

struct DeleteStep {
	const ReportTable *table;
	DeleteResult result;
};

void RunOffloadStep(void *arg) {
	auto *step = static_cast<OffloadStep *>(arg);
	RunBatch(*step->table, BatchOptionsFromSettings(WorkerInterrupted), step->runner, &step->result);
}

void RunDeleteStep(void *arg) {
	auto *step = static_cast<DeleteStep *>(arg);
	RunDeleteBatch(*step->table, BatchOptionsFromSettings(WorkerInterrupted), &step->result);
}

// Runs one step in its own transaction. A database-side error outside the
// batch's own isolation (the catalog changed shape...) is logged, rolled back
// and reported like a systemic error with its SQLSTATE, so that the worker
// backs off instead of restarting.
void RunInTransaction(const char *activity, void (*step)(void *), void *arg, bool *failed, CapturedError *failure) {
	MemoryContext before = CurrentMemoryContext;
	PG_TRY();
	{
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, activity);
		step(arg);
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(before);
		ErrorData *edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		CHECK_FOR_INTERRUPTS();
		*failed = true;
		char sqlstate[6];
		std::memcpy(sqlstate, unpack_sql_state(edata->sqlerrcode), 6);
		CaptureMessage(ErrorKind::kSystemic, sqlstate, edata->message, failure);
		if (edata->detail != nullptr)
			strlcpy(failure->detail, edata->detail, sizeof(failure->detail));
		ereport(LOG, (errcode(edata->sqlerrcode), errmsg("reportstore worker: %s", edata->message)));
		FreeErrorData(edata);
	}
	PG_END_TRY();
	pgstat_report_activity(STATE_IDLE, nullptr);
}

// reportstore.max_rate: after a batch that moved `bytes`, sleep (interruptibly)
// so that all workers together upload no faster than the limit, and a DBA can
// keep the migration from competing with the application for CPU and I/O.
// The workers share one clock: each batch pushes it forward by its bytes at
// the allowed rate, and its worker waits until then.
void ThrottleAfterBatch(int64 bytes) {
	if (g_settings.max_rate_kb <= 0 || bytes <= 0)
		return;
	const int64 cost_ms = static_cast<int64>(bytes * 1000.0 / (g_settings.max_rate_kb * 1024.0));
	SharedState *shared = Shared();
	TimestampTz now = GetCurrentTimestamp();
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	if (shared->rate_clock < now)
		shared->rate_clock = now;
	shared->rate_clock = TimestampTzPlusMilliseconds(shared->rate_clock, cost_ms);
	TimestampTz until = shared->rate_clock;
	LWLockRelease(shared->lock);
	long wait_ms = TimestampDifferenceMilliseconds(now, until);
	if (wait_ms <= 0)
		return;
	SetWorkerState(WorkerState::kRunning, "throttled by reportstore.max_rate");
	(void)WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, wait_ms, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
}

// Returns true when the latch was set (someone asked for a new pass).
// Returns true when the configuration was reloaded.
bool WaitForWork(long timeout_ms) {
	(void)WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, timeout_ms, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
	if (!ConfigReloadPending)
		return false;
	ConfigReloadPending = false;
	ProcessConfigFile(PGC_SIGHUP);
	return true;
}

// Whether the S3 endpoint answers again (any HTTP answer).
bool EndpointAnswers() {
	PrepareS3Session();
	const Settings &settings = g_settings;
	bool answers = false;
	CapturedError error;
	(void)TryCore(
	    [&] { answers = ProcessClient(settings).Answers(settings.bucket, [] { return ProcDiePending != 0; }); },
	    &error);
	return answers;
}

void ReportFailure(const BatchResult &result) {
	if (result.failed == 0)
		return;
	const CapturedError &e = result.first_failure;
	char *msg = psprintf("report %s: %s%s%s (%d report%s failed in the last batch; see reportstore.offload_state)",
	                     result.first_failure_id, e.message, e.detail[0] ? ": " : "", e.detail, result.failed,
	                     result.failed == 1 ? "" : "s");
	SetLastError(msg);
}

} // namespace

} // namespace reportstore::pg

void reportstore_worker_main(Datum main_arg) {
	using namespace reportstore::pg;
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	SharedState *shared = Shared();
	g_worker_slot = DatumGetInt32(main_arg);
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	WorkerSlot &slot = shared->workers[g_worker_slot];
	Oid database = slot.database;
	slot.pid = MyProcPid;
	slot.latch = MyLatch;
	slot.state = WorkerState::kStarting;
	LWLockRelease(shared->lock);
	before_shmem_exit(DetachFromSlot, (Datum)0);
	if (!OidIsValid(database))
		proc_exit(0); // the launcher gave this slot up meanwhile

	BackgroundWorkerInitializeConnectionByOid(database, InvalidOid, 0);
	pgstat_report_appname("reportstore worker");
	MarkProcessAsWorker();     // its own updates of reports must not wake it
	StartTransactionCommand(); // catalog access needs a transaction
	ereport(LOG, (errmsg("reportstore worker %d started in database \"%s\"", g_worker_slot,
	                     get_database_name(MyDatabaseId))));
	CommitTransactionCommand();

	MemoryContext loop_context =
	    AllocSetContextCreate(TopMemoryContext, "reportstore worker loop", ALLOCSET_DEFAULT_SIZES);
	BatchRunner runner;
	InitBatchRunner(&runner, TopMemoryContext);
	static char last_logged[512] = "";
	long backoff_ms = 0;
	TimestampTz backoff_until = 0;
	bool endpoint_silent = false; // the last systemic error: no answer at all
	// The first pass starts at once: reports may be pending from before this
	// worker started, and the latch PostgreSQL sets at process start is no
	// promise of it (any wait during start-up, for a lock or for a buffer
	// another backend is reading in, resets it).
	bool more_work = true;
	TimestampTz next_due = 0;

	for (;;) {
		if (!more_work) {
			// A reloaded configuration (new credentials, endpoint...) is
			// tried at once.
			if (WaitForWork(WaitTimeout(backoff_until, next_due, endpoint_silent)))
				backoff_until = 0;
			// A new pass: a write may have made any report pending again.
			RestartBatchRunner(&runner);
		} else {
			CHECK_FOR_INTERRUPTS();
		}
		more_work = false;
		next_due = 0;
		MemoryContextReset(loop_context);
		MemoryContextSwitchTo(loop_context);

		if (!g_settings.worker_enabled) {
			SetWorkerState(WorkerState::kWaiting, "reportstore.worker_enabled is off");
			LogOnChange(last_logged, sizeof(last_logged), LOG, "disabled (reportstore.worker_enabled = off)");
			continue;
		}
		if (DatabasePaused(shared)) {
			SetWorkerState(WorkerState::kPaused, "paused by reportstore.pause()");
			LogOnChange(last_logged, sizeof(last_logged), LOG, "paused by reportstore.pause()");
			continue;
		}
		if (RecoveryInProgress()) {
			SetWorkerState(WorkerState::kWaiting, "hot standby: waiting for promotion");
			LogOnChange(last_logged, sizeof(last_logged), LOG, "server is a standby; waiting for promotion");
			continue;
		}
		if (backoff_until != 0 && GetCurrentTimestamp() < backoff_until) {
			// An endpoint that stopped answering is asked every few seconds
			// whether it is back: recovery takes seconds, not a backoff.
			if (!endpoint_silent)
				continue;
			if (!EndpointAnswers()) {
				// Still silent. The probe may itself have outlasted the backoff
				// (it waits up to request_timeout): probe again in a moment, not
				// after reportstore.naptime, which is what a passed backoff
				// would give.
				backoff_until =
				    Max(backoff_until, TimestampTzPlusMilliseconds(GetCurrentTimestamp(), kEndpointProbeMs));
				continue;
			}
			backoff_until = 0;
		}
		if (g_settings.endpoint == nullptr || g_settings.endpoint[0] == '\0') {
			SetWorkerState(WorkerState::kWaiting, "reportstore.endpoint is not set");
			LogOnChange(last_logged, sizeof(last_logged), LOG, "reportstore.endpoint is not set; waiting");
			continue;
		}

		// Temporary S3 credentials: refreshed ahead of need (pg/credentials.hpp).
		const TimestampTz credentials_due = MaintainCredentials();

		const char *why = nullptr;
		ReportTable table;
		if (!LookUpTable(&table, loop_context, &why)) {
			// Nothing to do here: the launcher looks again later, or when
			// CREATE EXTENSION reportstore asks for it.
			NoteDatabaseUnserved(MyDatabaseId, why);
			ereport(LOG, (errmsg("reportstore worker: %s; exiting", why)));
			proc_exit(0);
		}

		OffloadStep offload = {&table, &runner, {}};
		SetWorkerState(WorkerState::kRunning, "offloading a batch");
		RunInTransaction("reportstore: offloading a batch of reports", RunOffloadStep, &offload,
		                 &offload.result.systemic, &offload.result.systemic_error);
		BatchResult &result = offload.result;
		MemoryContextSwitchTo(loop_context);
		pgstat_report_stat(false);

		if (result.interrupted)
			CHECK_FOR_INTERRUPTS(); // SIGTERM: exits here

		// Deletions whose delay has passed, in their own short transaction.
		if (!result.systemic) {
			DeleteStep deletes = {&table, {}};
			RunInTransaction("reportstore: deleting objects of deleted reports", RunDeleteStep, &deletes,
			                 &deletes.result.systemic, &deletes.result.systemic_error);
			MemoryContextSwitchTo(loop_context);
			if (deletes.result.interrupted)
				CHECK_FOR_INTERRUPTS();
			if (deletes.result.systemic) {
				result.systemic = true;
				result.systemic_error = deletes.result.systemic_error;
			}
			if (deletes.result.due > 0 && deletes.result.deleted + deletes.result.skipped > 0)
				more_work = true;
		}

		LWLockAcquire(shared->lock, LW_EXCLUSIVE);
		shared->workers[g_worker_slot].last_batch_at = GetCurrentTimestamp();
		LWLockRelease(shared->lock);

		if (result.systemic) {
			backoff_ms = backoff_ms == 0 ? 1000 : Min(backoff_ms * 2, (long)g_settings.systemic_backoff_max_ms);
			backoff_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), backoff_ms);
			const CapturedError &e = result.systemic_error;
			endpoint_silent = e.no_answer;
			if (strcmp(e.sqlstate, "28000") == 0 || strcmp(e.sqlstate, "42501") == 0)
				MarkCredentialsRefused(); // temporary credentials: get new ones at the next try
			char *cause = psprintf("%s%s%s", e.message, e.detail[0] ? ": " : "", e.detail);
			char *reason = psprintf("%s%s", kSystemicPrefix, cause);
			SetLastError(cause);
			SetWorkerState(WorkerState::kBackingOff, reason);
			// One line per state change, not per attempt or per report.
			if (strncmp(last_logged, kSystemicPrefix, strlen(kSystemicPrefix)) != 0)
				LogOnChange(last_logged, sizeof(last_logged), WARNING, reason);
			continue;
		}
		if (backoff_ms != 0) {
			backoff_ms = 0;
			backoff_until = 0;
			LogOnChange(last_logged, sizeof(last_logged), LOG, "resumed: the object store accepts requests again");
		}
		ReportFailure(result);
		if (result.selected > 0 || result.locked_any || !BatchRunnerAtEnd(&runner) || more_work) {
			more_work = true; // keep going until the pass reaches the end
			// More than one batch of work: one more idle worker of this
			// database helps. Workers pass each other through SKIP LOCKED:
			// rows another worker has locked are skipped, never waited for.
			if (!BatchRunnerAtEnd(&runner))
				(void)WakeIdleHelper(MyDatabaseId);
			LogOnChange(last_logged, sizeof(last_logged), DEBUG1, "offloading");
			ThrottleAfterBatch(result.bytes);
		} else {
			SetWorkerState(WorkerState::kIdle, "nothing to offload");
			LogOnChange(last_logged, sizeof(last_logged), DEBUG1, "idle");
			next_due = NextDueTime(table);
			if (credentials_due != 0 && (next_due == 0 || credentials_due < next_due))
				next_due = credentials_due;
		}
	}
}
