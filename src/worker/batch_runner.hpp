// Runs offload batches so that one report can never stop the others.
//
// A batch runs in a subtransaction. A database error inside it (an
// application trigger or constraint refusing the update of one row, a
// serialization that PostgreSQL refuses...) rolls back only that batch; the
// runner then goes back to where the batch started and offloads the same
// reports one at a time, so that the report that fails is recorded in
// reportstore.offload_state alone and every other one goes through. Used by
// the background worker and reportstore.run_once(). PostgreSQL zone.
#pragma once

#include "worker/offload_batch.hpp"

namespace reportstore::pg {

struct BatchRunner {
	BatchCursor cursor;
	int one_by_one; // batches still to run with one report each
};

void InitBatchRunner(BatchRunner *runner, MemoryContext parent);

// A new pass over the pending reports (the worker starts one at each wake-up).
void RestartBatchRunner(BatchRunner *runner);

// True when the last batch found nothing after the cursor.
bool BatchRunnerAtEnd(const BatchRunner *runner);

// One batch in a subtransaction of the current transaction. An error that is
// not about a report (for example before any row was locked) comes back as a
// systemic failure with its SQLSTATE; a cancel request is raised again.
void RunBatch(const ReportTable &table, const BatchOptions &options, BatchRunner *runner, BatchResult *result);

} // namespace reportstore::pg
