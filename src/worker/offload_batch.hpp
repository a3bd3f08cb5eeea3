// One offload batch: lock up to batch_size pending reports (oldest first,
// FOR UPDATE SKIP LOCKED, within a byte budget), upload them concurrently,
// and record every result in the current transaction. Used by the background
// worker (one transaction per batch) and by reportstore.run_once().
#pragma once

#include "pg/guard.hpp"
#include "pg/report_table.hpp"

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

struct BatchResult {
	int selected;
	int offloaded;
	int failed; // per-report failures, recorded in reportstore.offload_state
	int64 bytes;
	bool systemic; // a failure that concerns every report (credentials, bucket, endpoint)
	bool interrupted;
	CapturedError systemic_error;
};

// PostgreSQL zone. Requires an open transaction with an active snapshot.
void RunOffloadBatch(const ReportTable &table, const BatchOptions &options, BatchResult *result);

BatchOptions BatchOptionsFromSettings(bool (*interrupted)());

struct DeleteResult {
	int due;
	int deleted; // objects deleted (or already gone)
	int skipped; // the path is in use again: entry dropped, object kept
	int failed;  // retried later with backoff
	bool systemic;
	bool interrupted;
	CapturedError systemic_error;
};

// PostgreSQL zone, in a transaction with a snapshot: deletes objects from
// reportstore.delete_queue whose not_before has passed (FOR UPDATE SKIP
// LOCKED). An object whose path a report points to again is never deleted.
void RunDeleteBatch(const ReportTable &table, const BatchOptions &options, DeleteResult *result);

} // namespace reportstore::pg
