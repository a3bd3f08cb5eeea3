// Watching reportstore from SQL: reportstore.worker_info() and stats() (the
// workers and counters of the current database, behind reportstore.status),
// progress() (long DBA operations in any session) and report_counts().
#include "pg/guard.hpp"
#include "pg/run_as.hpp"
#include "pg/shared_state.hpp"
#include "pg/spi_plans.hpp"

#include <algorithm>
#include <cstring>

extern "C" {
#include "utils/timestamp.h"
}

namespace {

using namespace reportstore::pg;

Datum TimestampOrNull(TimestampTz t, bool *isnull) {
	*isnull = (t == 0);
	return TimestampTzGetDatum(t);
}

// How the workers of a database are doing, as one state: trouble first,
// then work, then rest.
WorkerState Combined(const WorkerState *states, int n) {
	static const WorkerState kOrder[] = {WorkerState::kBackingOff, WorkerState::kRunning, WorkerState::kStarting,
	                                     WorkerState::kWaiting,    WorkerState::kPaused,  WorkerState::kIdle};
	for (WorkerState wanted : kOrder)
		for (int i = 0; i < n; i++)
			if (states[i] == wanted)
				return wanted;
	return WorkerState::kStopped;
}

} // namespace

// reportstore.worker_info(): the state of this database's workers and the
// upload figures of the last minute.
REPORTSTORE_FUNCTION(reportstore_worker_info) {
	SharedState *shared = RequireShared();
	TupleDesc tupdesc;
	if (get_call_result_type(fcinfo, nullptr, &tupdesc) != TYPEFUNC_COMPOSITE)
		ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED), errmsg("return type must be a row type")));
	tupdesc = BlessTupleDesc(tupdesc);

	constexpr int kColumns = 13;
	Datum values[kColumns];
	bool nulls[kColumns];
	std::memset(nulls, 0, sizeof(nulls));

	// Copy under the lock, compute outside it.
	WorkerState states[kMaxWorkers];
	char details[kMaxWorkers][sizeof(WorkerSlot::detail)];
	int workers = 0;
	pid_t pid = 0;
	TimestampTz last_batch_at = 0;
	bool paused = false;
	char last_error[sizeof(DatabaseState::last_error)] = "";
	char note[sizeof(DatabaseState::note)] = "";
	TimestampTz last_error_at = 0;
	int count = 0;
	UploadSample *samples = static_cast<UploadSample *>(palloc(sizeof(UploadSample) * kUploadRingSize));
	LWLockAcquire(shared->lock, LW_SHARED);
	for (const WorkerSlot &slot : shared->workers) {
		if (slot.database != MyDatabaseId || slot.pid == 0)
			continue;
		states[workers] = slot.state;
		strlcpy(details[workers], slot.detail, sizeof(details[workers]));
		workers++;
		if (pid == 0 || slot.pid < pid)
			pid = slot.pid;
		last_batch_at = Max(last_batch_at, slot.last_batch_at);
	}
	if (const DatabaseState *db = FindDatabase(shared, MyDatabaseId, false)) {
		paused = db->paused;
		strlcpy(last_error, db->last_error, sizeof(last_error));
		strlcpy(note, db->note, sizeof(note));
		last_error_at = db->last_error_at;
		count = db->ring_count;
		for (int i = 0; i < count; i++)
			samples[i] = db->ring[(db->ring_next - 1 - i + kUploadRingSize) % kUploadRingSize];
	}
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

	WorkerState state = Combined(states, workers);
	const char *detail = note;
	for (int i = 0; i < workers; i++)
		if (states[i] == state) {
			detail = details[i];
			break;
		}
	// pause() takes effect between batches: until the batches in flight end
	// the workers are "pausing".
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
	values[12] = Int32GetDatum(workers);
	HeapTuple tuple = heap_form_tuple(tupdesc, values, nulls);
	PG_RETURN_DATUM(HeapTupleGetDatum(tuple));
}

// reportstore.stats(): this database's cumulative counters since the last reset.
REPORTSTORE_FUNCTION(reportstore_stats) {
	SharedState *shared = RequireShared();
	TupleDesc tupdesc;
	if (get_call_result_type(fcinfo, nullptr, &tupdesc) != TYPEFUNC_COMPOSITE)
		ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED), errmsg("return type must be a row type")));
	tupdesc = BlessTupleDesc(tupdesc);
	Datum values[kCounterCount + 1];
	bool nulls[kCounterCount + 1];
	std::memset(nulls, 0, sizeof(nulls));
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	DatabaseState *db = FindDatabase(shared, MyDatabaseId, true);
	for (int i = 0; i < kCounterCount; i++)
		values[i] = Int64GetDatum(db ? static_cast<int64>(pg_atomic_read_u64(&db->counters[i])) : 0);
	values[kCounterCount] = TimestampTzGetDatum(db ? db->stats_reset : GetCurrentTimestamp());
	LWLockRelease(shared->lock);
	HeapTuple tuple = heap_form_tuple(tupdesc, values, nulls);
	PG_RETURN_DATUM(HeapTupleGetDatum(tuple));
}

REPORTSTORE_FUNCTION(reportstore_stats_reset) {
	SharedState *shared = RequireShared();
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	if (DatabaseState *db = FindDatabase(shared, MyDatabaseId, true)) {
		for (int i = 0; i < kCounterCount; i++)
			pg_atomic_write_u64(&db->counters[i], 0);
		db->ring_count = 0;
		db->ring_next = 0;
		db->stats_reset = GetCurrentTimestamp();
	}
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
	RunAsTableOwner(table, sql, 0, nullptr, nullptr, nullptr, true, SPI_OK_SELECT);
	bool isnull;
	for (int i = 0; i < 3; i++) // int8: passed by value, valid after SPI_finish()
		values[i] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, i + 1, &isnull);
	RunAsExtensionOwner(table, bytes_sql, 0, nullptr, nullptr, nullptr, true, SPI_OK_SELECT);
	values[3] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	SPI_finish();
	HeapTuple tuple = heap_form_tuple(tupdesc, values, nulls);
	PG_RETURN_DATUM(HeapTupleGetDatum(tuple));
}
