#include "worker/delete_batch.hpp"

#include <cstring>

#include "core/s3/client.hpp"
#include "core/uri.hpp"
#include "pg/run_as.hpp"
#include "pg/s3_session.hpp"
#include "pg/settings.hpp"
#include "pg/spi_plans.hpp"

extern "C" {
#include "utils/array.h"
#include "utils/timestamp.h"
}

namespace reportstore::pg {

namespace {

struct DeleteItem {
	int64 id;
	char *path;
	char *version_id;
	int attempts;
	bool delete_object; // false: the entry only kept the object for delete_delay
	bool in_use;
};

// An entry is in use when a report points at its path again and, for a
// versioned entry, at this very version.
void MarkInUse(const ReportTable &table, DeleteItem *items, int n) {
	Datum *paths = static_cast<Datum *>(palloc(sizeof(Datum) * n));
	for (int i = 0; i < n; i++)
		paths[i] = CStringGetTextDatum(items[i].path);
	Oid types[1] = {TEXTARRAYOID};
	Datum args[1] = {TextArray(paths, n)};
	bool *referenced = static_cast<bool *>(palloc0(sizeof(bool) * n));
	char *sql = psprintf("SELECT k.i FROM pg_catalog.unnest($1::pg_catalog.text[]) WITH ORDINALITY AS k(p, i) "
	                     "WHERE EXISTS (SELECT 1 FROM %s r WHERE r.minio_path OPERATOR(pg_catalog.=) k.p)",
	                     table.qualified_name);
	RunAsTableOwner(table, sql, 1, types, args, nullptr, true, SPI_OK_SELECT);
	bool isnull;
	for (uint64 r = 0; r < SPI_processed; r++)
		referenced[DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1, &isnull)) - 1] = true;

	static const char *versions_sql =
	    "SELECT k.i, o.version_id FROM pg_catalog.unnest($1::pg_catalog.text[]) WITH ORDINALITY AS k(p, i) "
	    "JOIN reportstore.objects o ON o.path OPERATOR(pg_catalog.=) k.p";
	RunAsExtensionOwner(table, versions_sql, 1, types, args, nullptr, true, SPI_OK_SELECT);
	bool *other_version = static_cast<bool *>(palloc0(sizeof(bool) * n));
	for (uint64 r = 0; r < SPI_processed; r++) {
		int i = static_cast<int>(
		    DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1, &isnull)) - 1);
		char *version = SPI_getvalue(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 2);
		other_version[i] =
		    items[i].version_id != nullptr && version != nullptr && std::strcmp(version, items[i].version_id) != 0;
	}
	for (int i = 0; i < n; i++)
		items[i].in_use = referenced[i] && !other_version[i];
}

} // namespace

void RunDeleteBatch(const ReportTable &table, const BatchOptions &options, DeleteResult *result) {
	std::memset(result, 0, sizeof(*result));
	SPI_connect();
	static const char *due_sql =
	    "SELECT q.id, q.path, q.version_id, q.attempts, q.delete_object FROM reportstore.delete_queue q "
	    "WHERE q.not_before OPERATOR(pg_catalog.<=) pg_catalog.now() "
	    "ORDER BY q.not_before LIMIT $1 FOR UPDATE OF q SKIP LOCKED";
	Oid types[1] = {INT4OID};
	Datum values[1] = {Int32GetDatum(options.batch_size)};
	RunAsExtensionOwner(table, due_sql, 1, types, values, nullptr, false, SPI_OK_SELECT);
	int n = static_cast<int>(SPI_processed);
	result->due = n;
	if (n == 0) {
		SPI_finish();
		return;
	}
	auto *items = static_cast<DeleteItem *>(palloc0(sizeof(DeleteItem) * n));
	auto *errors = static_cast<CapturedError *>(palloc0(sizeof(CapturedError) * n));
	SPITupleTable *due = SPI_tuptable;
	for (int i = 0; i < n; i++) {
		bool isnull;
		HeapTuple tup = due->vals[i];
		TupleDesc desc = due->tupdesc;
		items[i].id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		items[i].path = SPI_getvalue(tup, desc, 2);
		items[i].version_id = SPI_getvalue(tup, desc, 3);
		items[i].attempts = DatumGetInt32(SPI_getbinval(tup, desc, 4, &isnull));
		items[i].delete_object = DatumGetBool(SPI_getbinval(tup, desc, 5, &isnull));
	}
	MarkInUse(table, items, n);

	const Settings &settings = g_settings;
	PrepareS3Session();
	bool (*interrupted)() = options.interrupted;
	CapturedError batch_error;
	if (!TryCore(
	        [&] {
		        const s3::Client &client = ProcessClient(settings);
		        for (int i = 0; i < n; i++) {
			        if (items[i].in_use || !items[i].delete_object)
				        continue;
			        try {
				        uri::S3Location loc;
				        if (!uri::ParseS3Uri(items[i].path, &loc) || !IsAllowedBucket(settings, loc.bucket))
					        throw Error(ErrorKind::kClient, "22023", "invalid path in the delete queue",
					                    "Only objects in reportstore.bucket or reportstore.allowed_buckets are "
					                    "deleted.");
				        client.Delete(
				            s3::ObjectRef{loc.bucket, loc.key, items[i].version_id ? items[i].version_id : ""},
				            [interrupted] { return interrupted(); });
			        } catch (const Error &e) {
				        CaptureError(e, &errors[i]);
				        if (e.no_answer()) {
					        // The endpoint stopped answering: the rest wait for it, and
					        // nobody is charged (as in an offload batch).
					        for (int k = i + 1; k < n; k++)
						        if (!items[k].in_use && items[k].delete_object)
							        errors[k] = errors[i];
					        break;
				        }
			        }
		        }
	        },
	        &batch_error)) {
		for (int i = 0; i < n; i++)
			if (!items[i].in_use && items[i].delete_object && !errors[i].failed)
				errors[i] = batch_error;
	}

	static const char *retry_sql =
	    "UPDATE reportstore.delete_queue q SET attempts = q.attempts OPERATOR(pg_catalog.+) 1, "
	    "last_error = $2, not_before = $3 WHERE q.id OPERATOR(pg_catalog.=) $1";
	static const char *done_sql = "DELETE FROM reportstore.delete_queue q WHERE q.id OPERATOR(pg_catalog.=) $1";
	RoleScope scope;
	BeginExtensionOwner(table, &scope);
	for (int i = 0; i < n; i++) {
		CapturedError &e = errors[i];
		if (e.failed) {
			if (e.kind == ErrorKind::kInterrupted) {
				result->interrupted = true;
				continue;
			}
			if (IsSystemic(e.kind) || e.no_answer) {
				if (!result->systemic)
					result->systemic_error = e;
				result->systemic = true;
				continue;
			}
			Oid t[3] = {INT8OID, TEXTOID, TIMESTAMPTZOID};
			Datum v[3] = {Int64GetDatum(items[i].id), CStringGetTextDatum(e.message),
			              TimestampTzGetDatum(TimestampTzPlusMilliseconds(GetCurrentTransactionStartTimestamp(),
			                                                              RetryDelayMs(options, items[i].attempts)))};
			RunKeptPlan(retry_sql, 3, t, v, nullptr, false, SPI_OK_UPDATE);
			result->failed++;
			continue;
		}
		Oid t[1] = {INT8OID};
		Datum v[1] = {Int64GetDatum(items[i].id)};
		RunKeptPlan(done_sql, 1, t, v, nullptr, false, SPI_OK_DELETE);
		if (items[i].in_use || !items[i].delete_object)
			result->skipped++;
		else
			result->deleted++;
	}
	EndRole(&scope);
	SPI_finish();
}

} // namespace reportstore::pg
