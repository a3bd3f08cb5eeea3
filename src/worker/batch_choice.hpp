// Steps 1 and 2 of an offload batch (offload_batch.hpp): which pending
// reports it takes, and the row locks on them.
#pragma once

#include "pg/catalog.hpp"
#include "pg/jsonb_text.hpp"
#include "worker/offload_batch.hpp"

namespace reportstore::pg {

// One report of a batch, in the batch's memory.
struct Candidate {
	Datum report_uuid; // in the batch context
	char report_id[37];
	int attempts;
	int64 raw_size; // uncompressed jsonb size, from the TOAST header
	bool locked;
	char *format;
	Datum report_data; // as read under the row lock (SPI memory)
	TextBuffer body;
	bool has_body;
	bool recorded;              // its upload is recorded in the reports table
	char path[kObjectPathSize]; // s3://bucket/key, once known
};

// Step 1: the batch, chosen by count and byte budget from the cursor on,
// nothing locked. Returns how many; *out is allocated in batch_context.
int ChooseCandidates(const ReportTable &table, const BatchOptions &options, BatchCursor *cursor,
                     MemoryContext batch_context, Candidate **out);

// Step 2: locks the chosen rows that are still pending and not locked by
// anyone else, and reads them under the lock. Keeps the locked ones, in
// order, at the front; returns how many.
int LockCandidates(const ReportTable &table, const BatchOptions &options, Candidate *candidates, int count);

} // namespace reportstore::pg
