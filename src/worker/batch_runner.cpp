#include "worker/batch_runner.hpp"

#include <cstring>

#include "pg/catalog.hpp"
#include "pg/settings.hpp"

extern "C" {
#include "utils/resowner.h"
}

namespace reportstore::pg {

namespace {

void CaptureErrorData(const ErrorData *edata, CapturedError *out) {
	char sqlstate[6];
	std::memcpy(sqlstate, unpack_sql_state(edata->sqlerrcode), 6);
	CaptureMessage(ErrorKind::kSystemic, sqlstate, edata->message ? edata->message : "unknown error", out);
	if (edata->detail != nullptr)
		strlcpy(out->detail, edata->detail, sizeof(out->detail));
	if (edata->hint != nullptr)
		strlcpy(out->hint, edata->hint, sizeof(out->hint));
}

// Errors of the server rather than of any report: out of disk, memory or
// connections (class 53), operator intervention (57), I/O errors (58),
// deadlocks and serialization failures (40), a lock timeout. Charging them to
// reports would park every report of a table after max_attempts passes of a
// transient outage.
bool NotTheReports(int sqlerrcode) {
	const int category = ERRCODE_TO_CATEGORY(sqlerrcode);
	return category == ERRCODE_INSUFFICIENT_RESOURCES || category == ERRCODE_OPERATOR_INTERVENTION ||
	       category == ERRCODE_SYSTEM_ERROR || category == ERRCODE_TRANSACTION_ROLLBACK ||
	       sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE;
}

// The report of a batch of one failed with a database error: it alone is
// charged (in the enclosing transaction, the batch's own work rolled back).
void RecordDatabaseFailure(const ReportTable &table, const BatchOptions &options, const pg_uuid_t &report_id,
                           const CapturedError &error, BatchResult *result) {
	char *message =
	    psprintf("%s (SQLSTATE %s)%s%s", error.message, error.sqlstate, error.detail[0] ? ": " : "", error.detail);
	Datum uuid = UUIDPGetDatum(const_cast<pg_uuid_t *>(&report_id));
	SPI_connect();
	int attempts = ReadAttempts(table, uuid);
	RecordFailure(table, uuid, "database", message,
	              attempts + 1 >= g_settings.max_attempts ? -1 : RetryDelayMs(options, attempts));
	SPI_finish();
	result->selected = 1;
	result->failed = 1;
	result->first_failure = error;
	result->first_failure.kind = ErrorKind::kClient;
	strlcpy(result->first_failure_id, DatumGetCString(DirectFunctionCall1(uuid_out, uuid)),
	        sizeof(result->first_failure_id));
}

} // namespace

void InitBatchRunner(BatchRunner *runner, MemoryContext parent) {
	InitBatchCursor(&runner->cursor, parent);
	runner->one_by_one = 0;
}

void RestartBatchRunner(BatchRunner *runner) {
	RestartBatchCursor(&runner->cursor);
}

bool BatchRunnerAtEnd(const BatchRunner *runner) {
	return runner->cursor.at_end;
}

void RunBatch(const ReportTable &table, const BatchOptions &options, BatchRunner *runner, BatchResult *result) {
	BatchOptions run = options;
	if (runner->one_by_one > 0)
		run.batch_size = 1;
	const BatchCursor saved = runner->cursor;
	MemoryContext context = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	BeginInternalSubTransaction(nullptr);
	MemoryContextSwitchTo(context);
	PG_TRY();
	{
		RunOffloadBatch(table, run, &runner->cursor, result);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(context);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(context);
		ErrorData *edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(context);
		CurrentResourceOwner = owner;
		if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED || edata->sqlerrcode == ERRCODE_ADMIN_SHUTDOWN)
			ReThrowError(edata);
		CapturedError error;
		CaptureErrorData(edata, &error);
		const bool locked_any = result->locked_any;
		const pg_uuid_t first = result->first_locked;
		std::memset(result, 0, sizeof(*result));
		if (NotTheReports(edata->sqlerrcode)) {
			// The server, not the reports: nobody is charged, the worker backs
			// off, and the next pass tries the same reports again.
			runner->cursor = saved;
			runner->one_by_one = 0;
			result->systemic = true;
			result->systemic_error = error;
		} else if (locked_any && run.batch_size == 1) {
			RecordDatabaseFailure(table, options, first, error, result);
		} else if (locked_any) {
			// Find the report: the same batch again, one report at a time.
			runner->cursor = saved;
			runner->one_by_one = options.batch_size;
			result->selected = 0;
			result->locked_any = true; // more work right away
		} else {
			result->systemic = true;
			result->systemic_error = error;
		}
		FreeErrorData(edata);
		return;
	}
	PG_END_TRY();
	if (runner->one_by_one > 0)
		runner->one_by_one--;
}

} // namespace reportstore::pg
