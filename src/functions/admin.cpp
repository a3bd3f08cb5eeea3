// DBA functions in schema reportstore: worker control, monitoring, counters
// and a synchronous migration pass. PostgreSQL zone.
#include "pg/guard.hpp"
#include "pg/progress.hpp"
#include "pg/run_as.hpp"
#include "pg/settings.hpp"
#include "pg/shared_state.hpp"
#include "pg/spi_plans.hpp"
#include "worker/batch_runner.hpp"
#include "worker/delete_batch.hpp"

#include <algorithm>
#include <cstring>

extern "C" {
#include "utils/timestamp.h"
}

namespace {

using namespace reportstore::pg;

SharedState *RequireShared() {
	SharedState *shared = Shared();
	if (shared == nullptr)
		ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
		                errmsg("reportstore is not loaded through shared_preload_libraries"),
		                errhint("Add reportstore to shared_preload_libraries in postgresql.conf and restart the "
		                        "server.")));
	return shared;
}

bool BackendInterrupted() {
	return InterruptRequested();
}

Datum TimestampOrNull(TimestampTz t, bool *isnull) {
	*isnull = (t == 0);
	return TimestampTzGetDatum(t);
}

} // namespace

REPORTSTORE_FUNCTION(reportstore_pause) {
	SharedState *shared = RequireShared();
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	shared->paused = true;
	LWLockRelease(shared->lock);
	WakeWorker();
	PG_RETURN_VOID();
}

REPORTSTORE_FUNCTION(reportstore_resume) {
	SharedState *shared = RequireShared();
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	shared->paused = false;
	LWLockRelease(shared->lock);
	WakeWorker();
	PG_RETURN_VOID();
}

REPORTSTORE_FUNCTION(reportstore_wake) {
	SharedState *shared = Shared();
	if (shared == nullptr)
		PG_RETURN_BOOL(false); // not preloaded: there is no worker to wake
	LWLockAcquire(shared->lock, LW_SHARED);
	bool running = shared->worker_latch != nullptr;
	LWLockRelease(shared->lock);
	WakeWorker();
	PG_RETURN_BOOL(running);
}

// reportstore.wake_at_commit(): wake the worker if this transaction commits.
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

// reportstore.worker_info(): the worker's state and recent upload figures.
REPORTSTORE_FUNCTION(reportstore_worker_info) {
	SharedState *shared = RequireShared();
	TupleDesc tupdesc;
	if (get_call_result_type(fcinfo, nullptr, &tupdesc) != TYPEFUNC_COMPOSITE)
		ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED), errmsg("return type must be a row type")));
	tupdesc = BlessTupleDesc(tupdesc);

	constexpr int kColumns = 12;
	Datum values[kColumns];
	bool nulls[kColumns];
	std::memset(nulls, 0, sizeof(nulls));

	// Copy under the lock, compute outside it.
	LWLockAcquire(shared->lock, LW_SHARED);
	WorkerState state = shared->state;
	bool paused = shared->paused;
	pid_t pid = shared->worker_pid;
	char detail[sizeof(shared->state_detail)];
	char last_error[sizeof(shared->last_error)];
	strlcpy(detail, shared->state_detail, sizeof(detail));
	strlcpy(last_error, shared->last_error, sizeof(last_error));
	TimestampTz last_error_at = shared->last_error_at;
	TimestampTz last_batch_at = shared->last_batch_at;
	int count = shared->ring_count;
	auto *samples = static_cast<UploadSample *>(palloc(sizeof(UploadSample) * (count + 1)));
	for (int i = 0; i < count; i++)
		samples[i] = shared->ring[(shared->ring_next - 1 - i + kUploadRingSize) % kUploadRingSize];
	LWLockRelease(shared->lock);

	TimestampTz minute_ago = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), -60000);
	int recent = 0;
	uint64 recent_bytes = 0;
	auto *latencies = static_cast<uint32 *>(palloc(sizeof(uint32) * (count + 1)));
	for (int i = 0; i < count; i++) {
		if (samples[i].at < minute_ago)
			break; // newest first
		latencies[recent++] = samples[i].latency_us;
		recent_bytes += samples[i].bytes;
	}
	std::sort(latencies, latencies + recent);

	// pause() takes effect between batches: until the batch in flight ends
	// the worker is "pausing".
	const char *state_name = WorkerStateName(state);
	if (paused && state == WorkerState::kRunning)
		state_name = "pausing";
	else if (paused && state != WorkerState::kStopped)
		state_name = WorkerStateName(WorkerState::kPaused);
	values[0] = CStringGetTextDatum(state_name);
	values[1] = CStringGetTextDatum(detail);
	values[2] = Int32GetDatum(pid);
	nulls[2] = pid == 0;
	values[3] = BoolGetDatum(paused);
	values[4] = CStringGetTextDatum(last_error);
	nulls[4] = last_error[0] == '\0';
	values[5] = TimestampOrNull(last_error_at, &nulls[5]);
	values[6] = TimestampOrNull(last_batch_at, &nulls[6]);
	values[7] = Int32GetDatum(recent);
	values[8] = Float8GetDatum(recent / 60.0);
	values[9] = Float8GetDatum(recent_bytes / 60.0 / 1048576.0);
	if (recent > 0) {
		values[10] = Float8GetDatum(latencies[(recent - 1) * 50 / 100] / 1000.0);
		values[11] = Float8GetDatum(latencies[(recent - 1) * 99 / 100] / 1000.0);
	} else {
		nulls[10] = nulls[11] = true;
	}
	HeapTuple tuple = heap_form_tuple(tupdesc, values, nulls);
	PG_RETURN_DATUM(HeapTupleGetDatum(tuple));
}

// reportstore.stats(): cumulative counters since the last reset.
REPORTSTORE_FUNCTION(reportstore_stats) {
	SharedState *shared = RequireShared();
	TupleDesc tupdesc;
	if (get_call_result_type(fcinfo, nullptr, &tupdesc) != TYPEFUNC_COMPOSITE)
		ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED), errmsg("return type must be a row type")));
	tupdesc = BlessTupleDesc(tupdesc);
	Datum values[kCounterCount + 1];
	bool nulls[kCounterCount + 1];
	std::memset(nulls, 0, sizeof(nulls));
	for (int i = 0; i < kCounterCount; i++)
		values[i] = Int64GetDatum(static_cast<int64>(pg_atomic_read_u64(&shared->counters[i])));
	LWLockAcquire(shared->lock, LW_SHARED);
	values[kCounterCount] = TimestampTzGetDatum(shared->stats_reset);
	LWLockRelease(shared->lock);
	HeapTuple tuple = heap_form_tuple(tupdesc, values, nulls);
	PG_RETURN_DATUM(HeapTupleGetDatum(tuple));
}

REPORTSTORE_FUNCTION(reportstore_stats_reset) {
	SharedState *shared = RequireShared();
	for (int i = 0; i < kCounterCount; i++)
		pg_atomic_write_u64(&shared->counters[i], 0);
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	shared->ring_count = 0;
	shared->ring_next = 0;
	shared->stats_reset = GetCurrentTimestamp();
	LWLockRelease(shared->lock);
	PG_RETURN_VOID();
}

// reportstore.progress(): long DBA operations in progress in any session.
REPORTSTORE_FUNCTION(reportstore_progress) {
	InitMaterializedSRF(fcinfo, 0);
	ReturnSetInfo *rsinfo = reinterpret_cast<ReturnSetInfo *>(fcinfo->resultinfo);
	SharedState *shared = Shared();
	if (shared == nullptr)
		return (Datum)0;
	ProgressSlot slots[kProgressSlots];
	LWLockAcquire(shared->lock, LW_SHARED);
	std::memcpy(slots, shared->progress, sizeof(slots));
	LWLockRelease(shared->lock);
	for (const ProgressSlot &slot : slots) {
		if (slot.pid == 0)
			continue;
		Datum values[7];
		bool nulls[7] = {false, false, false, false, slot.total < 0, false, false};
		values[0] = Int32GetDatum(slot.pid);
		values[1] = CStringGetTextDatum(slot.command);
		values[2] = TimestampTzGetDatum(slot.started);
		values[3] = Int64GetDatum(slot.done);
		values[4] = Int64GetDatum(slot.total);
		values[5] = Int64GetDatum(slot.found);
		values[6] = TimestampTzGetDatum(slot.updated);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum)0;
}

// reportstore.report_counts(): counts and sizes behind reportstore.status.
// The reports table is read as its owner, so that a monitoring role granted
// reportstore.status needs no privilege on it.
REPORTSTORE_FUNCTION(reportstore_report_counts) {
	const ReportTable &table = RequireReportTable(kSchemaVersion);
	TupleDesc tupdesc;
	if (get_call_result_type(fcinfo, nullptr, &tupdesc) != TYPEFUNC_COMPOSITE)
		ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED), errmsg("return type must be a row type")));
	tupdesc = BlessTupleDesc(tupdesc);
	Datum values[4];
	bool nulls[4] = {false, false, false, false};
	char *sql = psprintf("SELECT pg_catalog.count(*) FILTER (WHERE r.minio_path IS NOT NULL), "
	                     "pg_catalog.count(*) FILTER (WHERE r.minio_path IS NULL AND r.report_data IS NOT NULL), "
	                     "COALESCE(pg_catalog.sum(pg_catalog.pg_column_size(r.report_data)) "
	                     "FILTER (WHERE r.minio_path IS NULL), 0)::pg_catalog.int8 FROM %s r",
	                     table.qualified_name);
	static const char *bytes_sql =
	    "SELECT COALESCE(pg_catalog.sum(o.size), 0)::pg_catalog.int8 FROM reportstore.objects o";
	SPI_connect();
	RoleScope scope;
	BeginTableOwner(table, &scope);
	RunKeptPlan(sql, 0, nullptr, nullptr, nullptr, true, SPI_OK_SELECT);
	EndRole(&scope);
	bool isnull;
	for (int i = 0; i < 3; i++) // int8: passed by value, valid after SPI_finish()
		values[i] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, i + 1, &isnull);
	BeginExtensionOwner(table, &scope);
	RunKeptPlan(bytes_sql, 0, nullptr, nullptr, nullptr, true, SPI_OK_SELECT);
	EndRole(&scope);
	values[3] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	SPI_finish();
	HeapTuple tuple = heap_form_tuple(tupdesc, values, nulls);
	PG_RETURN_DATUM(HeapTupleGetDatum(tuple));
}
