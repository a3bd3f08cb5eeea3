// Scans of the object store against the database: reportstore.verify() and
// reportstore.orphans(). The reports table is read as its owner and
// reportstore's tables as the extension's owner (run_as.hpp); each network
// call runs in a guarded core call.
#include "pg/catalog.hpp"
#include "pg/guard.hpp"
#include "pg/object_io.hpp"
#include "pg/progress.hpp"
#include "pg/report_table.hpp"
#include "pg/run_as.hpp"
#include "pg/s3_session.hpp"
#include "pg/settings.hpp"
#include "pg/spi_plans.hpp"

#include <cstring>
#include <string>

#include "core/s3/client.hpp"
#include "core/uri.hpp"

extern "C" {
#include "utils/array.h"
#include "utils/datum.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"
#include "utils/uuid.h"
}

using namespace reportstore;
using namespace reportstore::pg;

namespace {

constexpr int kVerifyChunk = 100;

struct VerifyItem {
	Datum report_uuid;
	char report_id[37];
	char *path;
	char *format;
	bool known; // reportstore.objects has a row for this path
	int64 size;
	char sha256[65];
	char *version_id;
};

struct VerifyOutcome {
	const char *problem; // nullptr = fine
	char detail[1024];
};

void CheckObject(const s3::Client &client, const VerifyItem &item, bool full, VerifyOutcome *out) {
	out->problem = nullptr;
	out->detail[0] = '\0';
	auto set = [out](const char *problem, const std::string &detail) {
		out->problem = problem;
		strlcpy(out->detail, detail.c_str(), sizeof(out->detail));
	};
	uri::S3Location loc;
	try {
		loc = CheckedReportLocation(item.report_id, item.format, item.path);
	} catch (const Error &e) {
		set("invalid path", e.detail());
		return;
	}
	s3::ObjectRef ref{loc.bucket, loc.key, item.version_id ? item.version_id : ""};
	try {
		if (full) {
			std::string body;
			s3::ObjectInfo info = client.Get(ref, &body, BackendInterruptProbe(), item.known ? item.sha256 : "",
			                                 item.known ? item.size : -1);
			if (!item.known && info.Meta(s3::kSha256MetaKey) == nullptr)
				set("unverifiable", "no checksum recorded at upload and none in the object's metadata");
			return;
		}
		s3::ObjectInfo info = client.Head(ref, BackendInterruptProbe());
		const std::string *meta = info.Meta(s3::kSha256MetaKey);
		if (item.known && static_cast<int64>(info.size) != item.size)
			set("size mismatch",
			    "object has " + std::to_string(info.size) + " bytes, " + std::to_string(item.size) + " were uploaded");
		else if (item.known && meta != nullptr && *meta != item.sha256)
			set("checksum mismatch", "object metadata sha256 " + *meta + " differs from the recorded " + item.sha256);
		else if (!item.known && meta == nullptr)
			set("unverifiable", "no checksum recorded at upload and none in the object's metadata");
	} catch (const Error &e) {
		if (e.kind() == ErrorKind::kNotFound)
			set("missing", e.what());
		else if (e.kind() == ErrorKind::kIntegrity)
			set("corrupt", std::string(e.what()) + ": " + e.detail());
		else if (e.kind() == ErrorKind::kInterrupted)
			throw;
		else
			set("error", std::string(e.what()) + (e.detail().empty() ? "" : ": " + e.detail()));
	}
}

// What reportstore.objects recorded for the items (as the extension's owner).
void LookUpRecordedObjects(const ReportTable &table, VerifyItem *items, int n) {
	Datum *ids = static_cast<Datum *>(palloc(sizeof(Datum) * n));
	for (int i = 0; i < n; i++)
		ids[i] = items[i].report_uuid;
	static const char *sql = "SELECT o.report_id, o.path, o.size, o.sha256, o.version_id FROM reportstore.objects o "
	                         "WHERE o.report_id OPERATOR(pg_catalog.=) ANY ($1)";
	Oid types[1] = {UUIDARRAYOID};
	Datum values[1] = {UuidArray(ids, n)};
	RunAsExtensionOwner(table, sql, 1, types, values, nullptr, true, SPI_OK_SELECT);
	for (uint64 r = 0; r < SPI_processed; r++) {
		HeapTuple tup = SPI_tuptable->vals[r];
		TupleDesc desc = SPI_tuptable->tupdesc;
		bool isnull;
		char *id = DatumGetCString(DirectFunctionCall1(uuid_out, SPI_getbinval(tup, desc, 1, &isnull)));
		char *path = SPI_getvalue(tup, desc, 2);
		for (int i = 0; i < n; i++) {
			VerifyItem &item = items[i];
			if (std::strcmp(item.report_id, id) != 0 || path == nullptr || std::strcmp(item.path, path) != 0)
				continue;
			item.known = true;
			item.size = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
			char *sha = SPI_getvalue(tup, desc, 4);
			strlcpy(item.sha256, sha ? sha : "", sizeof(item.sha256));
			item.version_id = SPI_getvalue(tup, desc, 5);
		}
	}
}

} // namespace

// reportstore.verify(full boolean) RETURNS SETOF (report_id, minio_path, problem, detail)
REPORTSTORE_FUNCTION(reportstore_verify) {
	bool full = PG_GETARG_BOOL(0);
	InitMaterializedSRF(fcinfo, 0);
	ReturnSetInfo *rsinfo = reinterpret_cast<ReturnSetInfo *>(fcinfo->resultinfo);
	const ReportTable &table = RequireReportTable(kSchemaVersion);
	const Settings &settings = g_settings;
	PrepareS3Session();

	RoleScope owner;
	BeginTableOwner(table, &owner);
	SPI_connect();
	char *count_sql =
	    psprintf("SELECT pg_catalog.count(*) FROM %s r WHERE r.minio_path IS NOT NULL", table.qualified_name);
	if (SPI_execute(count_sql, true, 0) != SPI_OK_SELECT)
		ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR), errmsg("could not count offloaded reports")));
	bool isnull;
	int64 total = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	char *sql = psprintf("SELECT r.report_id, r.minio_path, r.format FROM %s r "
	                     "WHERE r.minio_path IS NOT NULL ORDER BY r.report_id",
	                     table.qualified_name);
	SPIPlanPtr plan = SPI_prepare(sql, 0, nullptr);
	if (plan == nullptr)
		ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR), errmsg("could not prepare the verify query")));
	Portal portal = SPI_cursor_open(nullptr, plan, nullptr, nullptr, true);
	MemoryContext chunk_context =
	    AllocSetContextCreate(CurrentMemoryContext, "reportstore verify", ALLOCSET_DEFAULT_SIZES);
	Progress progress;
	ProgressStart(&progress, full ? "verify (full)" : "verify", total);
	int64 done = 0, problems = 0;
	for (;;) {
		SPI_cursor_fetch(portal, true, kVerifyChunk);
		int n = static_cast<int>(SPI_processed);
		if (n == 0)
			break;
		MemoryContextReset(chunk_context);
		MemoryContext old = MemoryContextSwitchTo(chunk_context);
		auto *items = static_cast<VerifyItem *>(palloc0(sizeof(VerifyItem) * n));
		auto *outcomes = static_cast<VerifyOutcome *>(palloc0(sizeof(VerifyOutcome) * n));
		SPITupleTable *rows = SPI_tuptable;
		for (int i = 0; i < n; i++) {
			HeapTuple tup = rows->vals[i];
			TupleDesc desc = rows->tupdesc;
			items[i].report_uuid = datumCopy(SPI_getbinval(tup, desc, 1, &isnull), false, UUID_LEN);
			strlcpy(items[i].report_id, DatumGetCString(DirectFunctionCall1(uuid_out, items[i].report_uuid)),
			        sizeof(items[i].report_id));
			items[i].path = SPI_getvalue(tup, desc, 2);
			Datum format = SPI_getbinval(tup, desc, 3, &isnull);
			items[i].format = isnull ? nullptr : FormatName(format, SPI_gettypeid(desc, 3));
			items[i].size = -1;
		}
		SPI_freetuptable(rows);
		LookUpRecordedObjects(table, items, n);
		for (int i = 0; i < n; i++)
			items[i].version_id = items[i].version_id ? pstrdup(items[i].version_id) : nullptr;
		MemoryContextSwitchTo(old);
		CallCore([&] {
			const s3::Client &client = ProcessClient(settings);
			for (int i = 0; i < n; i++)
				CheckObject(client, items[i], full, &outcomes[i]);
		});
		for (int i = 0; i < n; i++) {
			done++;
			if (outcomes[i].problem == nullptr)
				continue;
			problems++;
			Datum values[4];
			bool nulls[4] = {false, false, false, false};
			values[0] = items[i].report_uuid;
			values[1] = CStringGetTextDatum(items[i].path);
			values[2] = CStringGetTextDatum(outcomes[i].problem);
			values[3] = CStringGetTextDatum(outcomes[i].detail);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
		CHECK_FOR_INTERRUPTS();
		ProgressTick(&progress, done, total, problems);
	}
	SPI_cursor_close(portal);
	SPI_finish();
	EndRole(&owner);
	ProgressEnd();
	return (Datum)0;
}

namespace {

struct ListedPage {
	s3::ListPage page;
};

struct KeyState {
	bool referenced; // a report points at it
	bool recorded;   // reportstore.objects has it
	bool to_delete;  // a pending deletion
	bool kept;       // released less than delete_delay ago (recall, new content)
};

// Which keys reports point at (as the table's owner) and what reportstore's
// tables say of them (as the extension's owner).
void ClassifyKeys(const ReportTable &table, ArrayType *paths, KeyState *states) {
	Oid types[1] = {TEXTARRAYOID};
	Datum args[1] = {PointerGetDatum(paths)};
	char *referenced_sql =
	    psprintf("SELECT k.i FROM pg_catalog.unnest($1::pg_catalog.text[]) WITH ORDINALITY AS k(p, i) "
	             "WHERE EXISTS (SELECT 1 FROM %s r WHERE r.minio_path OPERATOR(pg_catalog.=) k.p)",
	             table.qualified_name);
	RunAsTableOwner(table, referenced_sql, 1, types, args, nullptr, true, SPI_OK_SELECT);
	bool isnull;
	for (uint64 r = 0; r < SPI_processed; r++)
		states[DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1, &isnull)) - 1].referenced =
		    true;

	static const char *catalog_sql =
	    "SELECT k.i, EXISTS (SELECT 1 FROM reportstore.objects o WHERE o.path OPERATOR(pg_catalog.=) k.p), "
	    "EXISTS (SELECT 1 FROM reportstore.delete_queue q WHERE q.path OPERATOR(pg_catalog.=) k.p AND "
	    "q.delete_object), "
	    "EXISTS (SELECT 1 FROM reportstore.delete_queue q WHERE q.path OPERATOR(pg_catalog.=) k.p "
	    "        AND NOT q.delete_object) "
	    "FROM pg_catalog.unnest($1::pg_catalog.text[]) WITH ORDINALITY AS k(p, i)";
	RunAsExtensionOwner(table, catalog_sql, 1, types, args, nullptr, true, SPI_OK_SELECT);
	for (uint64 r = 0; r < SPI_processed; r++) {
		HeapTuple tup = SPI_tuptable->vals[r];
		KeyState &state = states[DatumGetInt64(SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull)) - 1];
		state.recorded = DatumGetBool(SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull));
		state.to_delete = DatumGetBool(SPI_getbinval(tup, SPI_tuptable->tupdesc, 3, &isnull));
		state.kept = DatumGetBool(SPI_getbinval(tup, SPI_tuptable->tupdesc, 4, &isnull));
	}
}

} // namespace

namespace {

struct ListedUploads {
	s3::UploadsPage page;
};

TimestampTz ParseTimestamp(const char *text) {
	return DatumGetTimestampTz(
	    DirectFunctionCall3(timestamptz_in, CStringGetDatum(text), ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)));
}

// Multipart uploads under reports/ that were never completed nor aborted (a
// session killed during an upload): rows with a NULL size, aborted with
// delete => true once older than min_age. Returns how many were found.
int64 ReportIncompleteUploads(ReturnSetInfo *rsinfo, const char *bucket, int page_size, TimestampTz cutoff,
                              bool do_delete, Progress *progress, int64 listed_count) {
	const Settings &settings = g_settings;
	ListedUploads *listed = NewOwnedByContext<ListedUploads>(CurrentMemoryContext);
	char *key_marker = pstrdup("");
	char *id_marker = pstrdup("");
	int64 found = 0;
	for (;;) {
		CallCore([&] {
			listed->page = ProcessClient(settings).ListIncompleteUploads(bucket, "reports/", key_marker, id_marker,
			                                                             page_size, BackendInterruptProbe());
		});
		for (const s3::IncompleteUpload &upload : listed->page.uploads) {
			found++;
			char *key = pstrdup(upload.key.c_str());
			char *upload_id = pstrdup(upload.upload_id.c_str());
			char *initiated = pstrdup(upload.initiated.c_str());
			const bool old_enough = initiated[0] != '\0' && ParseTimestamp(initiated) < cutoff;
			const char *action;
			if (!old_enough)
				action = "incomplete multipart upload, kept: younger than min_age";
			else if (!do_delete)
				action = "incomplete multipart upload, would abort";
			else {
				CallCore([&] { ProcessClient(settings).AbortUpload(bucket, key, upload_id, BackendInterruptProbe()); });
				action = "incomplete multipart upload, aborted";
			}
			Datum values[4];
			bool nulls[4] = {false, true, false, false};
			values[0] = CStringGetTextDatum(key);
			values[1] = (Datum)0;
			values[2] = CStringGetTextDatum(initiated);
			values[3] = CStringGetTextDatum(action);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
		CHECK_FOR_INTERRUPTS();
		ProgressTick(progress, listed_count + found, -1, found);
		if (!listed->page.is_truncated)
			break;
		key_marker = pstrdup(listed->page.next_key_marker.c_str());
		id_marker = pstrdup(listed->page.next_upload_id_marker.c_str());
	}
	return found;
}

} // namespace

// reportstore.orphans(delete boolean, min_age interval, page_size integer)
//   RETURNS SETOF (key, size, last_modified, action)
//
// An object is an orphan when no report points at it and reportstore does not
// keep it for a point-in-time restore: it is not in reportstore.objects and
// no entry of reportstore.delete_queue names it (objects of deleted or
// recalled reports stay there for delete_delay). min_age spares uploads in
// flight, whose row is not committed yet.
REPORTSTORE_FUNCTION(reportstore_orphans) {
	bool do_delete = PG_GETARG_BOOL(0);
	Interval *min_age = PG_GETARG_INTERVAL_P(1);
	int page_size = PG_GETARG_INT32(2);
	if (page_size < 1 || page_size > 1000)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("page_size must be between 1 and 1000")));
	InitMaterializedSRF(fcinfo, 0);
	ReturnSetInfo *rsinfo = reinterpret_cast<ReturnSetInfo *>(fcinfo->resultinfo);
	const ReportTable &table = RequireReportTable(kSchemaVersion);
	const Settings &settings = g_settings;
	PrepareS3Session();
	TimestampTz cutoff = DatumGetTimestampTz(DirectFunctionCall2(
	    timestamptz_mi_interval, TimestampTzGetDatum(GetCurrentTimestamp()), PointerGetDatum(min_age)));

	MemoryContext page_context =
	    AllocSetContextCreate(CurrentMemoryContext, "reportstore orphans", ALLOCSET_DEFAULT_SIZES);
	ListedPage *listed = NewOwnedByContext<ListedPage>(CurrentMemoryContext);
	char *token = pstrdup("");
	char *bucket = pstrdup(settings.bucket);
	Progress progress;
	ProgressStart(&progress, "orphans", -1);
	int64 listed_count = 0, orphan_count = 0;
	for (;;) {
		MemoryContextReset(page_context);
		CallCore([&] {
			const s3::Client &client = ProcessClient(settings);
			listed->page = client.List(bucket, "reports/", token, page_size, BackendInterruptProbe());
		});
		int n = static_cast<int>(listed->page.objects.size());
		MemoryContext old = MemoryContextSwitchTo(page_context);
		Datum *paths = static_cast<Datum *>(palloc(sizeof(Datum) * (n + 1)));
		for (int i = 0; i < n; i++)
			paths[i] = CStringGetTextDatum(psprintf("s3://%s/%s", bucket, listed->page.objects[i].key.c_str()));
		ArrayType *array = construct_array(paths, n, TEXTOID, -1, false, TYPALIGN_INT);
		auto *states = static_cast<KeyState *>(palloc0(sizeof(KeyState) * (n + 1)));
		MemoryContextSwitchTo(old);

		if (n > 0) {
			SPI_connect();
			ClassifyKeys(table, array, states);
			SPI_finish();
		}

		for (int i = 0; i < n; i++) {
			listed_count++;
			const KeyState &state = states[i];
			if (state.referenced)
				continue;
			orphan_count++;
			const s3::ListedObject &obj = listed->page.objects[i];
			char *key = pstrdup(obj.key.c_str());
			char *last_modified = pstrdup(obj.last_modified.c_str());
			const bool old_enough = last_modified[0] != '\0' && ParseTimestamp(last_modified) < cutoff;
			const char *action;
			if (state.to_delete)
				action = "scheduled for deletion";
			else if (state.kept)
				action = "kept: released less than reportstore.delete_delay ago";
			else if (state.recorded)
				action = "kept: recorded in reportstore.objects";
			else if (!old_enough)
				action = "kept: younger than min_age";
			else if (!do_delete)
				action = "would delete";
			else {
				CallCore([&] {
					ProcessClient(settings).Delete(s3::ObjectRef{bucket, key, {}}, BackendInterruptProbe());
				});
				action = "deleted";
			}
			Datum values[4];
			bool nulls[4] = {false, false, false, false};
			values[0] = CStringGetTextDatum(key);
			values[1] = Int64GetDatum(static_cast<int64>(obj.size));
			values[2] = CStringGetTextDatum(last_modified);
			values[3] = CStringGetTextDatum(action);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
		CHECK_FOR_INTERRUPTS();
		ProgressTick(&progress, listed_count, -1, orphan_count);
		if (!listed->page.is_truncated || listed->page.next_continuation_token.empty())
			break;
		token = pstrdup(listed->page.next_continuation_token.c_str());
	}
	orphan_count += ReportIncompleteUploads(rsinfo, bucket, page_size, cutoff, do_delete, &progress, listed_count);
	ProgressEnd();
	return (Datum)0;
}
