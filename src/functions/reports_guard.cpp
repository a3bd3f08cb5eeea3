// The reportstore_guard trigger on the application's reports table keeps
// reports and objects consistent under every write:
// * new content wins: updating report_data of an offloaded report clears
//   minio_path in the same statement, and the worker offloads it again;
// * minio_path may only name this report's key, s3://{bucket}/reports/{id}/
//   report.{format}, in reportstore.bucket or reportstore.allowed_buckets;
// * only reportstore itself (report_offload(), the worker) sets minio_path to
//   an object it uploaded and verified for this row. Anyone else setting it by
//   hand (an import of reports already in object storage) must have the
//   rights of the table's owner, and may not claim an object queued for
//   deletion (a deleted report's object must not reappear under a new row);
// * minio_path is never cleared while the content lives only in the store;
// * an object no row points to any more is queued in reportstore.delete_queue
//   for delete_delay (a rolled-back statement queues nothing).
//
// The function runs with the rights of whoever writes the row; reportstore's
// own tables are written as the extension's owner (catalog.hpp). It never
// runs code of the table's owner with other rights: the format's text comes
// from its type's output function, not from a cast.
#include "pg/catalog.hpp"
#include "pg/guard.hpp"
#include "pg/report_table.hpp"
#include "pg/settings.hpp"
#include "pg/shared_state.hpp"
#include "worker/wake.hpp"

#include <cstring>
#include <string>

#include "core/uri.hpp"

extern "C" {
#include "access/htup_details.h"
#include "commands/trigger.h"
#include "utils/acl.h"
#include "utils/datum.h"
#include "utils/uuid.h"
}

using namespace reportstore;
using namespace reportstore::pg;

namespace {

struct Columns {
	int report_id;
	int format;
	int report_data;
	int minio_path;
};

struct Values {
	Datum report_id;
	char *id_text;
	char *format; // lower case, or nullptr
	Datum report_data;
	bool data_null;
	char *minio_path; // or nullptr
};

int Column(TupleDesc desc, const char *name) {
	int attnum = SPI_fnumber(desc, name);
	if (attnum <= 0)
		ereport(ERROR, (errcode(ERRCODE_UNDEFINED_COLUMN),
		                errmsg("reportstore_guard: the table has no column \"%s\"", name)));
	return attnum;
}

Values Read(HeapTuple tuple, TupleDesc desc, const Columns &cols) {
	Values v;
	bool isnull;
	v.report_id = heap_getattr(tuple, cols.report_id, desc, &isnull);
	v.id_text = isnull ? nullptr : DatumGetCString(DirectFunctionCall1(uuid_out, v.report_id));
	Datum format = heap_getattr(tuple, cols.format, desc, &isnull);
	v.format = isnull ? nullptr : FormatName(format, TupleDescAttr(desc, cols.format - 1)->atttypid);
	v.report_data = heap_getattr(tuple, cols.report_data, desc, &v.data_null);
	Datum path = heap_getattr(tuple, cols.minio_path, desc, &isnull);
	v.minio_path = isnull ? nullptr : TextDatumGetCString(path);
	return v;
}

bool SameText(const char *a, const char *b) {
	if (a == nullptr || b == nullptr)
		return a == b;
	return std::strcmp(a, b) == 0;
}

// New content: the value differs as jsonb (the same stored value is equal
// without being read).
bool ContentChanged(const Values &before, const Values &after) {
	if (after.data_null)
		return false;
	if (before.data_null)
		return true;
	if (datumIsEqual(before.report_data, after.report_data, false, -1))
		return false;
	return !DatumGetBool(DirectFunctionCall2(jsonb_eq, before.report_data, after.report_data));
}

// s3://{bucket}/reports/{id}/report.{format} in this bucket, or nullptr when
// the id or the format cannot form a key.
char *KeyInBucket(const char *bucket, const Values &v) {
	if (v.id_text == nullptr || v.format == nullptr)
		return nullptr;
	char path[kObjectPathSize];
	CapturedError error;
	bool ok = TryCore([&] { CopyObjectPath(bucket, uri::ReportObjectKey(v.id_text, v.format), path); }, &error);
	return ok ? pstrdup(path) : nullptr;
}

// minio_path names this report's key in an allowed bucket.
bool ValidPath(const Values &v) {
	uri::S3Location location;
	bool ok = false;
	CapturedError error;
	(void)TryCore(
	    [&] {
		    if (!uri::ParseS3Uri(v.minio_path, &location) || !IsAllowedBucket(g_settings, location.bucket))
			    return;
		    ok = v.id_text != nullptr && v.format != nullptr &&
		         location.key == uri::ReportObjectKey(v.id_text, v.format);
	    },
	    &error);
	return ok;
}

void CheckNewPath(const ReportTable &table, const Values &v) {
	if (!ValidPath(v))
		ereport(ERROR,
		        (errcode(ERRCODE_CHECK_VIOLATION), errmsg("invalid minio_path for report %s", v.id_text),
		         errdetail("minio_path must be s3://{bucket}/reports/%s/report.%s, where {bucket} is "
		                   "reportstore.bucket (\"%s\") or listed in reportstore.allowed_buckets.",
		                   v.id_text ? v.id_text : "{report_id}", v.format ? v.format : "{format}", g_settings.bucket),
		         errhint("Let report_offload() or the background worker set minio_path.")));
	if (IsOwnOffloadWrite(v.report_id, v.minio_path))
		return;
	if (!has_privs_of_role(GetUserId(), table.owner))
		ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
		                errmsg("permission denied to set minio_path of report %s", v.id_text),
		                errdetail("Only reportstore itself, the owner of table %s and members of its role may point "
		                          "a report at an object.",
		                          table.qualified_name),
		                errhint("Let report_offload() or the background worker set minio_path.")));
	if (IsQueuedForDeletion(table, v.minio_path))
		ereport(ERROR, (errcode(ERRCODE_OBJECT_IN_USE),
		                errmsg("object \"%s\" is queued for deletion", v.minio_path),
		                errdetail("It belonged to a report that was deleted or changed; reportstore deletes it after "
		                          "reportstore.delete_delay."),
		                errhint("Insert the report with its report_data and let reportstore offload it.")));
}

} // namespace

// reportstore.reports_guard(): BEFORE INSERT OR UPDATE OR DELETE, FOR EACH ROW.
REPORTSTORE_FUNCTION(reportstore_reports_guard) {
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR, (errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
		                errmsg("reportstore.reports_guard() must be called as a trigger")));
	auto *td = reinterpret_cast<TriggerData *>(fcinfo->context);
	if (!TRIGGER_FIRED_BEFORE(td->tg_event) || !TRIGGER_FIRED_FOR_ROW(td->tg_event))
		ereport(ERROR, (errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
		                errmsg("reportstore.reports_guard() must be a BEFORE ... FOR EACH ROW trigger")));
	const ReportTable &table = RequireReportTable(kSchemaVersion);
	TupleDesc desc = RelationGetDescr(td->tg_relation);
	Columns cols = {Column(desc, "report_id"), Column(desc, "format"), Column(desc, "report_data"),
	                Column(desc, "minio_path")};

	if (TRIGGER_FIRED_BY_DELETE(td->tg_event)) {
		Values old = Read(td->tg_trigtuple, desc, cols);
		// An upload whose transaction never committed (a killed session, a
		// crash) may have left an object at the report's key; deleting a
		// missing object is harmless.
		char *key = old.data_null ? nullptr : KeyInBucket(g_settings.bucket, old);
		SPI_connect();
		bool queued = ReleaseDeletedReport(table, old.report_id, old.minio_path, key);
		SPI_finish();
		if (queued)
			WakeWorkerAtCommit();
		return PointerGetDatum(td->tg_trigtuple);
	}

	const bool update = TRIGGER_FIRED_BY_UPDATE(td->tg_event);
	HeapTuple newtuple = update ? td->tg_newtuple : td->tg_trigtuple;
	Values now = Read(newtuple, desc, cols);
	bool clear_path = false;
	SPI_connect();
	if (update) {
		Values old = Read(td->tg_trigtuple, desc, cols);
		// Cheap: a report_data that is not the stored value any more. Its
		// failures are forgotten, so that new content gets a new try.
		if (!now.data_null && (old.data_null || !datumIsEqual(old.report_data, now.report_data, false, -1)))
			ClearFailures(table, now.report_id);
		if (old.minio_path != nullptr && SameText(now.minio_path, old.minio_path) && ContentChanged(old, now)) {
			clear_path = true;
			now.minio_path = nullptr;
		}
		if (old.minio_path != nullptr && !SameText(now.minio_path, old.minio_path)) {
			if (now.minio_path == nullptr && now.data_null)
				ereport(ERROR, (errcode(ERRCODE_CHECK_VIOLATION),
				                errmsg("report %s would lose its content", now.id_text),
				                errdetail("Its content is only in the object store, at %s.", old.minio_path),
				                errhint("Use reportstore.recall() to bring the report back into report_data first.")));
			ReleaseObject(table, old.report_id, old.minio_path);
		}
		if (now.minio_path != nullptr &&
		    (!SameText(now.minio_path, old.minio_path) || !SameText(now.id_text, old.id_text) ||
		     !SameText(now.format, old.format)))
			CheckNewPath(table, now);
	} else if (now.minio_path != nullptr) {
		CheckNewPath(table, now);
	}
	SPI_finish();
	if (!clear_path)
		return PointerGetDatum(newtuple);
	int column = cols.minio_path;
	Datum value = (Datum)0;
	bool isnull = true;
	return PointerGetDatum(heap_modify_tuple_by_cols(newtuple, desc, 1, &column, &value, &isnull));
}

namespace reportstore::pg {

void DropGuardTriggers() {
	SPI_connect();
	int nest_level = NewGUCNestLevel();
	(void)set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0,
	                        false);
	int rc = SPI_execute("SELECT pg_catalog.format('DROP TRIGGER %I ON %s', t.tgname, t.tgrelid::pg_catalog.regclass) "
	                     "FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_proc p ON p.oid OPERATOR(pg_catalog.=) t.tgfoid "
	                     "JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace "
	                     "WHERE n.nspname OPERATOR(pg_catalog.=) 'reportstore' "
	                     "AND p.proname OPERATOR(pg_catalog.=) 'reports_guard'",
	                     false, 0);
	if (rc == SPI_OK_SELECT) {
		uint64 n = SPI_processed;
		char **statements = static_cast<char **>(palloc(sizeof(char *) * (n + 1)));
		for (uint64 i = 0; i < n; i++)
			statements[i] = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		for (uint64 i = 0; i < n; i++)
			if (SPI_execute(statements[i], false, 0) != SPI_OK_UTILITY)
				ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR), errmsg("could not run \"%s\"", statements[i])));
	}
	AtEOXact_GUC(false, nest_level);
	SPI_finish();
}

} // namespace reportstore::pg
