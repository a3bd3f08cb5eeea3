// One offload batch, used by the background worker (one transaction per
// batch) and by reportstore.run_once():
// 1. choose: pending reports in (created_at, report_id) order from a cursor,
//    skipping those waiting for a retry, within batch_size and the byte
//    budget (sizes read from the TOAST headers, nothing detoasted), without
//    locking anything (batch_choice.cpp);
// 2. lock exactly the chosen rows, FOR UPDATE SKIP LOCKED, and read them
//    (batch_choice.cpp);
// 3. serialize each report on its own: one that cannot be (text over 1 GB,
//    out of memory) fails alone and the batch goes on;
// 4. upload concurrently on the upload thread and verify, while step 3 goes
//    on with the next reports;
// 5. record the verified uploads set-based, a few dozen at a time while the
//    next ones are in flight, and then each failure, all in the current
//    transaction.
// The reports table is read and written as its owner and reportstore's
// tables as the extension's owner (run_as.hpp).
#pragma once

#include "pg/extension.hpp"
#include "pg/guard.hpp"

extern "C" {
#include "utils/uuid.h"
}

namespace reportstore::pg {

struct BatchOptions {
	int batch_size;
	int64 byte_budget;
	int max_concurrency;
	int offload_delay_s;
	bool keep_report_data;
	int retry_base_delay_ms;
	int retry_max_delay_ms;
	bool (*interrupted)(); // polled during transfers
};

// Where the scan over pending reports stands. A pass starts at the first
// pending report (Restart) and goes on batch after batch, so that reports
// waiting for a retry are read once per pass, not once per batch. A copy of
// the struct is a saved position (values are freed only by a restart).
struct BatchCursor {
	bool started;
	bool at_end; // the last batch found no further pending report
	Datum created_at;
	Oid created_at_type;
	int16 created_at_len;
	bool created_at_byval;
	pg_uuid_t report_id;
	MemoryContext context; // holds created_at when passed by reference
};

// The cursor's memory is a child of `parent` that lives as long as it.
void InitBatchCursor(BatchCursor *cursor, MemoryContext parent);
void RestartBatchCursor(BatchCursor *cursor);

struct BatchResult {
	int selected;
	int offloaded;
	int failed; // per-report failures, recorded in reportstore.offload_state
	int64 bytes;
	bool systemic; // a failure that concerns every report (credentials, bucket, endpoint)
	bool interrupted;
	CapturedError systemic_error;
	bool locked_any;         // rows were locked (first_locked is set)
	pg_uuid_t first_locked;  // for a batch of one: the report it was about
	CapturedError first_failure; // the first per-report failure, for reportstore.status
	char first_failure_id[37];
};

// PostgreSQL zone. Requires an open transaction with an active snapshot.
void RunOffloadBatch(const ReportTable &table, const BatchOptions &options, BatchCursor *cursor, BatchResult *result);

BatchOptions BatchOptionsFromSettings(bool (*interrupted)());

// Exponential backoff with jitter for the attempts-th retry.
int64 RetryDelayMs(const BatchOptions &options, int attempts);

bool IsSystemic(ErrorKind kind);

} // namespace reportstore::pg
