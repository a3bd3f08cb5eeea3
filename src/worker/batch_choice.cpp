#include "worker/batch_choice.hpp"

#include <cstring>

#include "pg/catalog.hpp"
#include "pg/report_table.hpp"
#include "pg/run_as.hpp"
#include "pg/spi_plans.hpp"

extern "C" {
#include "access/detoast.h"
#include "utils/datum.h"
#include "utils/timestamp.h"
}

namespace reportstore::pg {

namespace {

void AdvanceCursor(BatchCursor *cursor, Datum created_at, Datum report_uuid) {
	MemoryContext old = MemoryContextSwitchTo(cursor->context);
	cursor->created_at = datumCopy(created_at, cursor->created_at_byval, cursor->created_at_len);
	MemoryContextSwitchTo(old);
	std::memcpy(&cursor->report_id, DatumGetUUIDP(report_uuid), sizeof(pg_uuid_t));
	cursor->started = true;
}

// The next pending reports after the cursor, oldest first (as the table's
// owner). Nothing is locked: the rows are only candidates.
void ScanPending(const ReportTable &table, const BatchOptions &options, BatchCursor *cursor, int limit) {
	Oid types[4];
	Datum values[4];
	int n = 0;
	types[n] = INT4OID;
	values[n++] = Int32GetDatum(limit);
	char *delay = pstrdup("");
	if (options.offload_delay_s > 0) {
		types[n] = TIMESTAMPTZOID;
		values[n++] = TimestampTzGetDatum(
		    TimestampTzPlusMilliseconds(GetCurrentTransactionStartTimestamp(), -1000LL * options.offload_delay_s));
		delay = psprintf(" AND r.updated_at OPERATOR(pg_catalog.<=) $%d", n);
	}
	char *after = pstrdup("");
	if (cursor->started) {
		types[n] = cursor->created_at_type;
		values[n++] = cursor->created_at;
		types[n] = UUIDOID;
		values[n++] = UUIDPGetDatum(&cursor->report_id);
		after = psprintf(" AND (r.created_at, r.report_id) OPERATOR(pg_catalog.>) ($%d, $%d)", n - 1, n);
	}
	char *sql = psprintf("SELECT r.report_id, r.created_at, r.report_data FROM %s r "
	                     "WHERE r.minio_path IS NULL AND r.report_data IS NOT NULL%s%s "
	                     "ORDER BY r.created_at, r.report_id LIMIT $1",
	                     table.qualified_name, delay, after);
	RunAsTableOwner(table, sql, n, types, values, nullptr, true, SPI_OK_SELECT);
	if (!cursor->started && SPI_processed > 0) {
		cursor->created_at_type = SPI_gettypeid(SPI_tuptable->tupdesc, 2);
		get_typlenbyval(cursor->created_at_type, &cursor->created_at_len, &cursor->created_at_byval);
	}
}

// Retry state of these reports (as the extension's owner): attempts so far,
// and whether their next try is still in the future.
void ReadRetryState(const ReportTable &table, Datum *ids, int n, int *attempts, bool *waiting) {
	static const char *sql =
	    "SELECT s.report_id, s.attempts, s.next_attempt_at OPERATOR(pg_catalog.>) pg_catalog.now() "
	    "FROM reportstore.offload_state s WHERE s.report_id OPERATOR(pg_catalog.=) ANY ($1)";
	Oid types[1] = {UUIDARRAYOID};
	Datum values[1] = {UuidArray(ids, n)};
	RunAsExtensionOwner(table, sql, 1, types, values, nullptr, true, SPI_OK_SELECT);
	for (int i = 0; i < n; i++) {
		attempts[i] = 0;
		waiting[i] = false;
	}
	for (uint64 r = 0; r < SPI_processed; r++) {
		bool isnull;
		HeapTuple tup = SPI_tuptable->vals[r];
		Datum id = SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull);
		for (int i = 0; i < n; i++) {
			if (std::memcmp(DatumGetUUIDP(ids[i]), DatumGetUUIDP(id), UUID_LEN) != 0)
				continue;
			attempts[i] = DatumGetInt32(SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull));
			waiting[i] = DatumGetBool(SPI_getbinval(tup, SPI_tuptable->tupdesc, 3, &isnull));
		}
	}
}

} // namespace

// Step 1: the batch, chosen by count and byte budget from the cursor on.
int ChooseCandidates(const ReportTable &table, const BatchOptions &options, BatchCursor *cursor,
                     MemoryContext batch_context, Candidate **out) {
	Candidate *chosen =
	    static_cast<Candidate *>(MemoryContextAllocZero(batch_context, sizeof(Candidate) * (options.batch_size + 1)));
	int count = 0;
	int64 bytes = 0;
	const int limit = Max(options.batch_size, 64);
	bool full = false;
	while (!full) {
		ScanPending(table, options, cursor, limit);
		SPITupleTable *rows = SPI_tuptable;
		int n = static_cast<int>(SPI_processed);
		if (n == 0) {
			cursor->at_end = true;
			break;
		}
		Datum *ids = static_cast<Datum *>(palloc(sizeof(Datum) * n));
		bool isnull;
		for (int i = 0; i < n; i++)
			ids[i] = SPI_getbinval(rows->vals[i], rows->tupdesc, 1, &isnull);
		int *attempts = static_cast<int *>(palloc(sizeof(int) * n));
		bool *waiting = static_cast<bool *>(palloc(sizeof(bool) * n));
		ReadRetryState(table, ids, n, attempts, waiting);
		int i = 0;
		for (; i < n && !full; i++) {
			Datum created_at = SPI_getbinval(rows->vals[i], rows->tupdesc, 2, &isnull);
			if (!waiting[i]) {
				// The uncompressed size, read from the TOAST header without
				// fetching or decompressing the value. A report larger than
				// the budget goes alone.
				int64 size =
				    static_cast<int64>(toast_raw_datum_size(SPI_getbinval(rows->vals[i], rows->tupdesc, 3, &isnull)));
				if (count > 0 && bytes + size > options.byte_budget) {
					full = true; // this one starts the next batch
					break;
				}
				Candidate &c = chosen[count++];
				MemoryContext old = MemoryContextSwitchTo(batch_context);
				c.report_uuid = datumCopy(ids[i], false, UUID_LEN);
				MemoryContextSwitchTo(old);
				strlcpy(c.report_id, DatumGetCString(DirectFunctionCall1(uuid_out, ids[i])), sizeof(c.report_id));
				c.attempts = attempts[i];
				c.raw_size = size;
				bytes += size;
				full = count >= options.batch_size;
			}
			AdvanceCursor(cursor, created_at, ids[i]);
		}
		if (!full && n < limit) {
			cursor->at_end = true;
			break;
		}
	}
	*out = chosen;
	return count;
}

// Step 2: locks the chosen rows that are still pending and not locked by
// anyone else (as the table's owner), and reads them under the lock: a
// READ COMMITTED row lock returns the newest version of the row.
int LockCandidates(const ReportTable &table, const BatchOptions &options, Candidate *candidates, int count) {
	char *sql = psprintf("SELECT r.report_id, r.format, r.report_data FROM %s r "
	                     "WHERE r.report_id OPERATOR(pg_catalog.=) ANY ($1) "
	                     "AND r.minio_path IS NULL AND r.report_data IS NOT NULL%s "
	                     "FOR UPDATE OF r SKIP LOCKED",
	                     table.qualified_name,
	                     options.offload_delay_s > 0 ? " AND r.updated_at OPERATOR(pg_catalog.<=) $2" : "");
	Datum *ids = static_cast<Datum *>(palloc(sizeof(Datum) * count));
	for (int i = 0; i < count; i++)
		ids[i] = candidates[i].report_uuid;
	Oid types[2] = {UUIDARRAYOID, TIMESTAMPTZOID};
	Datum values[2] = {UuidArray(ids, count),
	                   TimestampTzGetDatum(TimestampTzPlusMilliseconds(GetCurrentTransactionStartTimestamp(),
	                                                                   -1000LL * options.offload_delay_s))};
	RunAsTableOwner(table, sql, options.offload_delay_s > 0 ? 2 : 1, types, values, nullptr, false, SPI_OK_SELECT);
	SPITupleTable *rows = SPI_tuptable;
	for (uint64 r = 0; r < SPI_processed; r++) {
		bool isnull;
		Datum id = SPI_getbinval(rows->vals[r], rows->tupdesc, 1, &isnull);
		for (int i = 0; i < count; i++) {
			Candidate &c = candidates[i];
			if (std::memcmp(DatumGetUUIDP(c.report_uuid), DatumGetUUIDP(id), UUID_LEN) != 0)
				continue;
			c.locked = true;
			Datum format = SPI_getbinval(rows->vals[r], rows->tupdesc, 2, &isnull);
			c.format = isnull ? nullptr : FormatName(format, SPI_gettypeid(rows->tupdesc, 2));
			c.report_data = SPI_getbinval(rows->vals[r], rows->tupdesc, 3, &isnull);
		}
	}
	// Keep the locked ones, in order.
	int locked = 0;
	for (int i = 0; i < count; i++)
		if (candidates[i].locked)
			candidates[locked++] = candidates[i];
	return locked;
}

void InitBatchCursor(BatchCursor *cursor, MemoryContext parent) {
	std::memset(cursor, 0, sizeof(*cursor));
	cursor->context = AllocSetContextCreate(parent, "reportstore batch cursor", ALLOCSET_SMALL_SIZES);
}

void RestartBatchCursor(BatchCursor *cursor) {
	MemoryContextReset(cursor->context);
	cursor->started = false;
	cursor->at_end = false;
}

} // namespace reportstore::pg
