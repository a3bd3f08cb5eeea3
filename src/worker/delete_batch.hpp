// Deletion of objects that no report needs any more: the entries of
// reportstore.delete_queue whose delete_delay has passed. Used by the
// background worker (in its own short transaction) and reportstore.run_once().
#pragma once

#include "worker/offload_batch.hpp"

namespace reportstore::pg {

struct DeleteResult {
	int due;
	int deleted; // objects deleted (or already gone)
	int skipped; // the path is in use again, or the entry only kept the object: entry dropped, object kept
	int failed;  // retried later with backoff
	bool systemic;
	bool interrupted;
	CapturedError systemic_error;
};

// PostgreSQL zone, in a transaction with a snapshot: handles the due entries
// (FOR UPDATE SKIP LOCKED). An object that a report points to again is never
// deleted.
void RunDeleteBatch(const ReportTable &table, const BatchOptions &options, DeleteResult *result);

} // namespace reportstore::pg
