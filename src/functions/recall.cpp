// Moving reports back into the database: reportstore.recall(),
// reportstore.recall_many() and reportstore.release_kept_data() (which checks
// objects against the report_data kept during a cautious roll-out). They
// work on the reports table as its owner (run_as.hpp): a DBA role granted
// EXECUTE needs no privilege on the table, and the owner's triggers run with
// the owner's rights.
#include "pg/catalog.hpp"
#include "pg/guard.hpp"
#include "pg/object_io.hpp"
#include "pg/progress.hpp"
#include "pg/report_table.hpp"
#include "pg/run_as.hpp"
#include "pg/spi_plans.hpp"

extern "C" {
#include "access/toast_compression.h"
#include "access/toast_internals.h"
#include "utils/array.h"
#include "utils/datum.h"
#include "utils/uuid.h"
}

using namespace reportstore;
using namespace reportstore::pg;

namespace {

// The report's content: report_data, or the verified object. In `into`.
Datum ReportContent(const ReportTable &table, Datum report_uuid, const char *report_id, const ReportRow &row,
                    MemoryContext into) {
	if (row.report_data != nullptr)
		return PointerGetDatum(row.report_data);
	ObjectRecord object;
	SPI_connect();
	LookupObject(table, report_uuid, row.minio_path, &object, into);
	SPI_finish();
	CallCore([&] { (void)CheckedReportLocation(report_id, row.format, row.minio_path); });
	return FetchReportObject(report_id, row.minio_path, object, into);
}

// A fetched report's content compressed as TOAST would compress it, and the
// uncompressed copy freed: the UPDATE then copies only the compressed bytes
// into the new tuple, and TOAST stores them without compressing the whole
// value again (peak memory about twice the text instead of four times).
Datum CompressedForStorage(Datum content) {
	Datum compressed = toast_compress_datum(content, default_toast_compression);
	if (DatumGetPointer(compressed) == nullptr)
		return content; // not worth compressing: stored as it is
	pfree(DatumGetPointer(content));
	return compressed;
}

// Recalls one report (row lock held to the end of the transaction). Returns
// false when it was not offloaded. In the table owner's scope.
bool RecallOne(const ReportTable &table, Datum report_uuid, bool delete_object) {
	char *report_id = DatumGetCString(DirectFunctionCall1(uuid_out, report_uuid));
	MemoryContext caller = CurrentMemoryContext;
	ReportRow row;
	SPI_connect();
	LockReportRow(table, report_uuid, report_id, &row, caller);
	SPI_finish();
	if (row.minio_path == nullptr)
		return false;

	Datum content = ReportContent(table, report_uuid, report_id, row, caller);
	if (DatumGetPointer(content) != static_cast<void *>(row.report_data))
		content = CompressedForStorage(content);
	char *sql = psprintf("UPDATE %s r SET report_data = $2, minio_path = NULL, updated_at = pg_catalog.now() "
	                     "WHERE r.report_id OPERATOR(pg_catalog.=) $1",
	                     table.qualified_name);
	Oid types[2] = {UUIDOID, JSONBOID};
	Datum values[2] = {report_uuid, content};
	SPI_connect();
	// The reportstore_guard trigger queues the old object for delete_delay:
	// to be deleted then, or, by default, only kept safe from orphans() so
	// that a point-in-time restore of the database still finds it.
	SetKeepReleasedObjects(!delete_object);
	PG_TRY();
	{
		RunKeptPlan(sql, 2, types, values, nullptr, false, SPI_OK_UPDATE);
	}
	PG_FINALLY();
	{
		SetKeepReleasedObjects(false);
	}
	PG_END_TRY();
	if (SPI_processed != 1)
		ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR), errmsg("could not recall report %s", report_id)));
	PinInDatabase(table, report_uuid);
	SPI_finish();
	return true;
}

} // namespace

// reportstore.recall(report_id uuid, delete_object boolean) RETURNS boolean
REPORTSTORE_FUNCTION(reportstore_recall) {
	const ReportTable &table = RequireReportTable(kSchemaVersion);
	RoleScope scope;
	BeginTableOwner(table, &scope);
	bool recalled = RecallOne(table, PG_GETARG_DATUM(0), PG_GETARG_BOOL(1));
	EndRole(&scope);
	PG_RETURN_BOOL(recalled);
}

// reportstore.recall_many(report_ids uuid[], delete_objects boolean) RETURNS bigint
REPORTSTORE_FUNCTION(reportstore_recall_many) {
	ArrayType *ids = PG_GETARG_ARRAYTYPE_P(0);
	bool delete_objects = PG_GETARG_BOOL(1);
	const ReportTable &table = RequireReportTable(kSchemaVersion);
	Datum *elems;
	bool *nulls;
	int n;
	deconstruct_array(ids, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR, &elems, &nulls, &n);
	Progress progress;
	ProgressStart(&progress, "recall", n);
	int64 recalled = 0;
	MemoryContext each = AllocSetContextCreate(CurrentMemoryContext, "reportstore recall", ALLOCSET_DEFAULT_SIZES);
	RoleScope scope;
	BeginTableOwner(table, &scope);
	for (int i = 0; i < n; i++) {
		if (nulls[i])
			continue;
		MemoryContext old = MemoryContextSwitchTo(each);
		if (RecallOne(table, elems[i], delete_objects))
			recalled++;
		MemoryContextSwitchTo(old);
		MemoryContextReset(each);
		CHECK_FOR_INTERRUPTS();
		ProgressTick(&progress, i + 1, n, 0);
	}
	EndRole(&scope);
	ProgressEnd();
	PG_RETURN_INT64(recalled);
}

// reportstore.release_kept_data(): for reports offloaded with
// keep_report_data = on, check each object against report_data (downloaded,
// verified, decoded, compared as jsonb) and only then clear report_data.
REPORTSTORE_FUNCTION(reportstore_release_kept_data) {
	const ReportTable &table = RequireReportTable(kSchemaVersion);
	MemoryContext caller = CurrentMemoryContext;
	RoleScope scope;
	BeginTableOwner(table, &scope);
	SPI_connect();
	char *sql = psprintf("SELECT r.report_id FROM %s r WHERE r.minio_path IS NOT NULL AND r.report_data IS NOT NULL "
	                     "ORDER BY r.report_id",
	                     table.qualified_name);
	if (SPI_execute(sql, true, 0) != SPI_OK_SELECT)
		ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR), errmsg("could not list reports with kept data")));
	int n = static_cast<int>(SPI_processed);
	MemoryContext old = MemoryContextSwitchTo(caller);
	Datum *ids = static_cast<Datum *>(palloc(sizeof(Datum) * (n + 1)));
	for (int i = 0; i < n; i++) {
		bool isnull;
		ids[i] = datumCopy(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull), false, UUID_LEN);
	}
	MemoryContextSwitchTo(old);
	SPI_finish();

	Progress progress;
	ProgressStart(&progress, "release_kept_data", n);
	MemoryContext each = AllocSetContextCreate(CurrentMemoryContext, "reportstore release", ALLOCSET_DEFAULT_SIZES);
	char *update = psprintf("UPDATE %s r SET report_data = NULL WHERE r.report_id OPERATOR(pg_catalog.=) $1",
	                        table.qualified_name);
	int64 released = 0;
	for (int i = 0; i < n; i++) {
		MemoryContext prev = MemoryContextSwitchTo(each);
		char *report_id = DatumGetCString(DirectFunctionCall1(uuid_out, ids[i]));
		ReportRow row;
		SPI_connect();
		LockReportRow(table, ids[i], report_id, &row, each);
		SPI_finish();
		if (row.minio_path != nullptr && row.report_data != nullptr) {
			ReportRow without_data = row;
			without_data.report_data = nullptr; // read the object, not the kept copy
			Datum stored = ReportContent(table, ids[i], report_id, without_data, each);
			bool same = DatumGetBool(DirectFunctionCall2(jsonb_eq, stored, PointerGetDatum(row.report_data)));
			if (!same)
				ereport(ERROR, (errcode(ERRCODE_DATA_CORRUPTED),
				                errmsg("object of report %s does not match its report_data", report_id),
				                errdetail("The object at %s holds other content.", row.minio_path),
				                errhint("Offload the report again: recall it with reportstore.recall(), then call "
				                        "report_offload().")));
			Oid types[1] = {UUIDOID};
			Datum values[1] = {ids[i]};
			SPI_connect();
			RunKeptPlan(update, 1, types, values, nullptr, false, SPI_OK_UPDATE);
			SPI_finish();
			released++;
		}
		MemoryContextSwitchTo(prev);
		MemoryContextReset(each);
		CHECK_FOR_INTERRUPTS();
		ProgressTick(&progress, i + 1, n, 0);
	}
	EndRole(&scope);
	ProgressEnd();
	PG_RETURN_INT64(released);
}
