// DBA tools that talk to the object store: verify(), orphans(), recall(),
// and the application's report_url(). PostgreSQL zone; every network call
// runs inside TryCore/CallCore.
#include "pg/catalog.hpp"
#include "pg/guard.hpp"
#include "pg/object_io.hpp"
#include "pg/report_table.hpp"
#include "pg/s3_session.hpp"
#include "pg/settings.hpp"
#include "pg/shared_state.hpp"

#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "core/s3/client.hpp"
#include "core/s3/xml.hpp"
#include "core/uri.hpp"

extern "C" {
#include "catalog/pg_type.h"
#include "pgstat.h"
#include "utils/array.h"
#include "utils/datum.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"
#include "utils/uuid.h"
}

using namespace reportstore;
using namespace reportstore::pg;

namespace {

constexpr long kProgressEveryMs = 5000;

// Periodic NOTICE for long operations, also visible in pg_stat_activity.
struct Progress {
	const char *what;
	TimestampTz started;
	TimestampTz last;
};

void ProgressStart(Progress *p, const char *what) {
	p->what = what;
	p->started = p->last = GetCurrentTimestamp();
	ProgressBegin(what, -1);
}

void ProgressTick(Progress *p, int64 done, int64 total, int64 problems) {
	ProgressUpdate(done, total, problems);
	TimestampTz now = GetCurrentTimestamp();
	if (TimestampDifferenceMilliseconds(p->last, now) < kProgressEveryMs)
		return;
	p->last = now;
	double secs = TimestampDifferenceMilliseconds(p->started, now) / 1000.0;
	char *msg = total >= 0
	                ? psprintf("reportstore %s: %lld of %lld done (%.1f/s), %lld problems", p->what,
	                           static_cast<long long>(done), static_cast<long long>(total),
	                           secs > 0 ? done / secs : 0.0, static_cast<long long>(problems))
	                : psprintf("reportstore %s: %lld done (%.1f/s), %lld found", p->what, static_cast<long long>(done),
	                           secs > 0 ? done / secs : 0.0, static_cast<long long>(problems));
	pgstat_report_activity(STATE_RUNNING, msg);
	ereport(NOTICE, (errmsg_internal("%s", msg)));
}

struct VerifyItem {
	char report_id[37];
	char *path;
	bool known; // reportstore.objects has a row
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
	if (!uri::ParseS3Uri(item.path, &loc)) {
		set("invalid path", "minio_path is not an s3:// URI");
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

} // namespace

// reportstore.verify(full boolean) RETURNS SETOF (report_id, minio_path, problem, detail)
REPORTSTORE_FUNCTION(reportstore_verify) {
	bool full = PG_GETARG_BOOL(0);
	InitMaterializedSRF(fcinfo, 0);
	ReturnSetInfo *rsinfo = reinterpret_cast<ReturnSetInfo *>(fcinfo->resultinfo);
	ReportTable table = RequireExtensionReportTable();
	const Settings &settings = g_settings;
	PrepareS3Session();

	SPI_connect();
	char *count_sql = psprintf("SELECT count(*) FROM %s WHERE minio_path IS NOT NULL", table.qualified_name);
	SPI_execute(count_sql, true, 0);
	bool isnull;
	int64 total = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	char *sql =
	    psprintf("SELECT r.report_id::text, r.minio_path, o.size, o.sha256, o.version_id "
	             "FROM %s r LEFT JOIN reportstore.objects o ON o.report_id = r.report_id AND o.path = r.minio_path "
	             "WHERE r.minio_path IS NOT NULL ORDER BY r.report_id",
	             table.qualified_name);
	SPIPlanPtr plan = SPI_prepare(sql, 0, nullptr);
	Portal portal = SPI_cursor_open(nullptr, plan, nullptr, nullptr, true);
	MemoryContext chunk_context =
	    AllocSetContextCreate(CurrentMemoryContext, "reportstore verify", ALLOCSET_DEFAULT_SIZES);
	Progress progress;
	ProgressStart(&progress, full ? "verify (full)" : "verify");
	ProgressUpdate(0, total, 0);
	int64 done = 0, problems = 0;
	for (;;) {
		SPI_cursor_fetch(portal, true, 100);
		uint64 n = SPI_processed;
		if (n == 0)
			break;
		MemoryContextReset(chunk_context);
		MemoryContext old = MemoryContextSwitchTo(chunk_context);
		auto *items = static_cast<VerifyItem *>(palloc0(sizeof(VerifyItem) * n));
		auto *outcomes = static_cast<VerifyOutcome *>(palloc0(sizeof(VerifyOutcome) * n));
		for (uint64 i = 0; i < n; i++) {
			HeapTuple tup = SPI_tuptable->vals[i];
			TupleDesc desc = SPI_tuptable->tupdesc;
			strlcpy(items[i].report_id, SPI_getvalue(tup, desc, 1), sizeof(items[i].report_id));
			items[i].path = SPI_getvalue(tup, desc, 2);
			Datum size = SPI_getbinval(tup, desc, 3, &isnull);
			items[i].known = !isnull;
			items[i].size = isnull ? -1 : DatumGetInt64(size);
			char *sha = SPI_getvalue(tup, desc, 4);
			strlcpy(items[i].sha256, sha ? sha : "", sizeof(items[i].sha256));
			items[i].version_id = SPI_getvalue(tup, desc, 5);
		}
		MemoryContextSwitchTo(old);
		SPI_freetuptable(SPI_tuptable);
		CallCore([&] {
			const s3::Client &client = ProcessClient(settings);
			for (uint64 i = 0; i < n; i++)
				CheckObject(client, items[i], full, &outcomes[i]);
		});
		for (uint64 i = 0; i < n; i++) {
			done++;
			if (outcomes[i].problem == nullptr)
				continue;
			problems++;
			Datum values[4];
			bool nulls[4] = {false, false, false, false};
			values[0] = DirectFunctionCall1(uuid_in, CStringGetDatum(items[i].report_id));
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
	ProgressEnd();
	return (Datum)0;
}

namespace {

struct ListedPage {
	s3::ListPage page;
};

} // namespace

// reportstore.orphans(delete boolean, min_age interval, page_size integer)
//   RETURNS SETOF (key, size, last_modified, action)
REPORTSTORE_FUNCTION(reportstore_orphans) {
	bool do_delete = PG_GETARG_BOOL(0);
	Interval *min_age = PG_GETARG_INTERVAL_P(1);
	int page_size = PG_GETARG_INT32(2);
	if (page_size < 1 || page_size > 1000)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("page_size must be between 1 and 1000")));
	InitMaterializedSRF(fcinfo, 0);
	ReturnSetInfo *rsinfo = reinterpret_cast<ReturnSetInfo *>(fcinfo->resultinfo);
	ReportTable table = RequireExtensionReportTable();
	const Settings &settings = g_settings;
	PrepareS3Session();
	TimestampTz cutoff = DatumGetTimestampTz(DirectFunctionCall2(
	    timestamptz_mi_interval, TimestampTzGetDatum(GetCurrentTimestamp()), PointerGetDatum(min_age)));

	MemoryContext page_context =
	    AllocSetContextCreate(CurrentMemoryContext, "reportstore orphans", ALLOCSET_DEFAULT_SIZES);
	ListedPage *listed = NewOwnedByContext<ListedPage>(CurrentMemoryContext);
	char *token = pstrdup("");
	char *bucket = pstrdup(settings.bucket);
	char *check_sql = psprintf("SELECT k.i, EXISTS (SELECT 1 FROM %s r WHERE r.minio_path = k.p), "
	                           "EXISTS (SELECT 1 FROM reportstore.delete_queue q WHERE q.path = k.p) "
	                           "FROM unnest($1::text[]) WITH ORDINALITY AS k(p, i)",
	                           table.qualified_name);
	Progress progress;
	ProgressStart(&progress, "orphans");
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
		bool *referenced = static_cast<bool *>(palloc0(sizeof(bool) * (n + 1)));
		bool *scheduled = static_cast<bool *>(palloc0(sizeof(bool) * (n + 1)));
		MemoryContextSwitchTo(old);

		if (n > 0) {
			SPI_connect();
			Oid types[1] = {TEXTARRAYOID};
			Datum args[1] = {PointerGetDatum(array)};
			if (SPI_execute_with_args(check_sql, 1, types, args, nullptr, true, 0) != SPI_OK_SELECT)
				ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR), errmsg("orphan check query failed")));
			for (uint64 r = 0; r < SPI_processed; r++) {
				bool isnull;
				HeapTuple tup = SPI_tuptable->vals[r];
				int64 i = DatumGetInt64(SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull)) - 1;
				referenced[i] = DatumGetBool(SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull));
				scheduled[i] = DatumGetBool(SPI_getbinval(tup, SPI_tuptable->tupdesc, 3, &isnull));
			}
			SPI_finish();
		}

		for (int i = 0; i < n; i++) {
			listed_count++;
			if (referenced[i])
				continue;
			orphan_count++;
			const s3::ListedObject &obj = listed->page.objects[i];
			char *key = pstrdup(obj.key.c_str());
			char *last_modified = pstrdup(obj.last_modified.c_str());
			bool old_enough = false;
			if (last_modified[0] != '\0') {
				TimestampTz lm = DatumGetTimestampTz(DirectFunctionCall3(
				    timestamptz_in, CStringGetDatum(last_modified), ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)));
				old_enough = lm < cutoff;
			}
			const char *action;
			if (scheduled[i])
				action = "scheduled for deletion";
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
	ProgressEnd();
	return (Datum)0;
}

namespace {

// Recalls one report (caller's privileges and row lock). Returns false when it
// was not offloaded.
bool RecallOne(const ReportTable &table, Datum report_uuid, bool delete_object) {
	char *report_id = DatumGetCString(DirectFunctionCall1(uuid_out, report_uuid));
	MemoryContext caller = CurrentMemoryContext;
	ReportRow row;
	ObjectRecord object;
	object.found = false;
	SPI_connect();
	LockReportRow(table, report_uuid, report_id, &row, caller);
	if (row.minio_path != nullptr)
		LookupObject(report_uuid, &object);
	SPI_finish();
	if (row.minio_path == nullptr)
		return false;

	Datum content = row.report_data != nullptr ? PointerGetDatum(row.report_data)
	                                           : FetchReportObject(report_id, row.minio_path, object, caller);
	SPI_connect();
	char *sql = psprintf("UPDATE %s SET report_data = $2, minio_path = NULL, updated_at = now() WHERE report_id = $1",
	                     table.qualified_name);
	Oid types[2] = {UUIDOID, JSONBOID};
	Datum values[2] = {report_uuid, content};
	if (SPI_execute_with_args(sql, 2, types, values, nullptr, false, 0) != SPI_OK_UPDATE || SPI_processed != 1)
		ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR), errmsg("could not recall report %s", report_id)));
	PinInDatabase(report_uuid);
	// The guard trigger queued the object for deletion when minio_path was
	// cleared; keep it unless asked to delete it.
	if (!delete_object)
		KeepQueuedObject(report_uuid, row.minio_path);
	SPI_finish();
	return true;
}

} // namespace

// reportstore.recall(report_id uuid, delete_object boolean) RETURNS boolean
REPORTSTORE_FUNCTION(reportstore_recall) {
	ReportTable table = RequireExtensionReportTable();
	PG_RETURN_BOOL(RecallOne(table, PG_GETARG_DATUM(0), PG_GETARG_BOOL(1)));
}

// reportstore.recall(report_ids uuid[], delete_objects boolean) RETURNS bigint
REPORTSTORE_FUNCTION(reportstore_recall_many) {
	ArrayType *ids = PG_GETARG_ARRAYTYPE_P(0);
	bool delete_objects = PG_GETARG_BOOL(1);
	ReportTable table = RequireExtensionReportTable();
	Datum *elems;
	bool *nulls;
	int n;
	deconstruct_array(ids, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR, &elems, &nulls, &n);
	Progress progress;
	ProgressStart(&progress, "recall");
	int64 recalled = 0;
	MemoryContext each = AllocSetContextCreate(CurrentMemoryContext, "reportstore recall", ALLOCSET_DEFAULT_SIZES);
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
	ProgressEnd();
	PG_RETURN_INT64(recalled);
}

// report_url(report_id uuid, expires interval) RETURNS text
REPORTSTORE_FUNCTION(reportstore_report_url) {
	Datum report_uuid = PG_GETARG_DATUM(0);
	Interval *expires = PG_GETARG_INTERVAL_P(1);
	char *report_id = DatumGetCString(DirectFunctionCall1(uuid_out, report_uuid));
	double seconds =
	    DatumGetFloat8(DirectFunctionCall2(interval_part, CStringGetTextDatum("epoch"), PointerGetDatum(expires)));
	if (!(seconds >= 1 && seconds <= 7 * 24 * 3600))
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("expires must be between 1 second and 7 days"),
		                errhint("S3 presigned URLs are valid for at most 7 days.")));
	MemoryContext caller = CurrentMemoryContext;
	ReportTable table = OpenReportTable(fcinfo);
	ReportRow row;
	ObjectRecord object;
	object.found = false;
	SPI_connect();
	ReadReportRow(table, report_uuid, report_id, &row, caller); // as the caller: privileges and RLS apply
	if (row.minio_path != nullptr)
		LookupObject(report_uuid, &object);
	SPI_finish();
	if (row.minio_path == nullptr)
		PG_RETURN_NULL(); // still in the database: no object to link to

	const Settings &settings = g_settings;
	PrepareS3Session();
	auto *url = NewOwnedByContext<std::string>(CurrentMemoryContext);
	const char *path = row.minio_path;
	const char *version = object.found ? object.version_id : nullptr;
	CallCore([&] {
		uri::S3Location loc;
		if (!uri::ParseS3Uri(path, &loc))
			throw Error(ErrorKind::kConfig, "22023", std::string("report ") + report_id + " has an invalid minio_path");
		*url = ProcessClient(settings).PresignGet(s3::ObjectRef{loc.bucket, loc.key, version ? version : ""},
		                                          std::chrono::seconds(static_cast<long>(seconds)));
	});
	PG_RETURN_TEXT_P(cstring_to_text_with_len(url->data(), static_cast<int>(url->size())));
}

namespace {

constexpr const char *kLifecycleRuleId = "reportstore-expire-reports";

void ReturnLifecycleRules(FunctionCallInfo fcinfo, const std::string &xml) {
	ReturnSetInfo *rsinfo = reinterpret_cast<ReturnSetInfo *>(fcinfo->resultinfo);
	auto *rules = NewOwnedByContext<std::vector<s3::LifecycleRule>>(CurrentMemoryContext);
	CallCore([&] { *rules = s3::ParseLifecycleRules(xml); });
	for (const s3::LifecycleRule &rule : *rules) {
		Datum values[4];
		bool nulls[4] = {false, false, false, rule.expiration_days <= 0};
		values[0] = CStringGetTextDatum(rule.id.c_str());
		values[1] = CStringGetTextDatum(rule.prefix.c_str());
		values[2] = CStringGetTextDatum(rule.status.c_str());
		values[3] = Int32GetDatum(rule.expiration_days);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
}

} // namespace

// reportstore.lifecycle() RETURNS SETOF (rule_id, prefix, status, expiration_days)
REPORTSTORE_FUNCTION(reportstore_lifecycle) {
	InitMaterializedSRF(fcinfo, 0);
	const Settings &settings = g_settings;
	PrepareS3Session();
	auto *xml = NewOwnedByContext<std::string>(CurrentMemoryContext);
	CallCore([&] { *xml = ProcessClient(settings).GetBucketLifecycle(settings.bucket, BackendInterruptProbe()); });
	ReturnLifecycleRules(fcinfo, *xml);
	return (Datum)0;
}

// reportstore.set_lifecycle(expire_after_days integer, confirm boolean)
REPORTSTORE_FUNCTION(reportstore_set_lifecycle) {
	int days = PG_GETARG_INT32(0);
	bool confirm = PG_GETARG_BOOL(1);
	if (!confirm)
		ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
		                errmsg("an expiry rule makes the object store delete report objects by itself"),
		                errdetail("Objects under reports/ older than %d days would be deleted although reports still "
		                          "point to them; report_fetch() would then fail for those reports.",
		                          days),
		                errhint("Call reportstore.set_lifecycle(%d, confirm => true) if old reports may lose their "
		                        "content, and run reportstore.verify() afterwards to list them.",
		                        days)));
	if (days < 1)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("expire_after_days must be at least 1")));
	InitMaterializedSRF(fcinfo, 0);
	const Settings &settings = g_settings;
	PrepareS3Session();
	auto *xml = NewOwnedByContext<std::string>(CurrentMemoryContext);
	CallCore([&] {
		const s3::Client &client = ProcessClient(settings);
		// This replaces the bucket's lifecycle configuration: the rule is the
		// only one reportstore manages.
		client.PutBucketLifecycleExpiry(settings.bucket, "reports/", days, kLifecycleRuleId, BackendInterruptProbe());
		*xml = client.GetBucketLifecycle(settings.bucket, BackendInterruptProbe());
	});
	ereport(NOTICE,
	        (errmsg("objects under reports/ in bucket \"%s\" now expire after %d days", settings.bucket, days)));
	ReturnLifecycleRules(fcinfo, *xml);
	return (Datum)0;
}

// reportstore.progress(): long DBA operations in progress in any session.
REPORTSTORE_FUNCTION(reportstore_progress) {
	InitMaterializedSRF(fcinfo, 0);
	ReturnSetInfo *rsinfo = reinterpret_cast<ReturnSetInfo *>(fcinfo->resultinfo);
	SharedState *shared = Shared();
	if (shared == nullptr)
		return (Datum)0;
	ProgressSlot slots[kProgressSlots];
	LWLockAcquire(shared->lock, LW_SHARED);
	std::memcpy(slots, shared->progress, sizeof(slots));
	LWLockRelease(shared->lock);
	for (const ProgressSlot &slot : slots) {
		if (slot.pid == 0)
			continue;
		Datum values[7];
		bool nulls[7] = {false, false, false, false, slot.total < 0, false, false};
		values[0] = Int32GetDatum(slot.pid);
		values[1] = CStringGetTextDatum(slot.command);
		values[2] = TimestampTzGetDatum(slot.started);
		values[3] = Int64GetDatum(slot.done);
		values[4] = Int64GetDatum(slot.total);
		values[5] = Int64GetDatum(slot.found);
		values[6] = TimestampTzGetDatum(slot.updated);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum)0;
}

// reportstore.release_kept_data(): for reports offloaded with
// keep_report_data = on, check each object against report_data (downloaded,
// verified, decoded, compared as jsonb) and only then clear report_data.
REPORTSTORE_FUNCTION(reportstore_release_kept_data) {
	ReportTable table = RequireExtensionReportTable();
	MemoryContext caller = CurrentMemoryContext;
	SPI_connect();
	char *sql = psprintf("SELECT report_id FROM %s WHERE minio_path IS NOT NULL AND report_data IS NOT NULL "
	                     "ORDER BY report_id",
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
	ProgressStart(&progress, "release_kept_data");
	MemoryContext each = AllocSetContextCreate(CurrentMemoryContext, "reportstore release", ALLOCSET_DEFAULT_SIZES);
	int64 released = 0;
	for (int i = 0; i < n; i++) {
		MemoryContext prev = MemoryContextSwitchTo(each);
		char *report_id = DatumGetCString(DirectFunctionCall1(uuid_out, ids[i]));
		ReportRow row;
		ObjectRecord object;
		object.found = false;
		SPI_connect();
		LockReportRow(table, ids[i], report_id, &row, each);
		if (row.minio_path != nullptr && row.report_data != nullptr)
			LookupObject(ids[i], &object);
		SPI_finish();
		if (row.minio_path != nullptr && row.report_data != nullptr) {
			Datum stored = FetchReportObject(report_id, row.minio_path, object, each);
			bool same = DatumGetBool(DirectFunctionCall2(jsonb_eq, stored, PointerGetDatum(row.report_data)));
			if (!same)
				ereport(ERROR, (errcode(ERRCODE_DATA_CORRUPTED),
				                errmsg("object of report %s does not match its report_data", report_id),
				                errdetail("The object at %s holds other content.", row.minio_path),
				                errhint("Offload the report again: UPDATE reports SET minio_path = NULL is refused, so "
				                        "recall it with reportstore.recall() and call report_offload().")));
			SPI_connect();
			char *update = psprintf("UPDATE %s SET report_data = NULL WHERE report_id = $1", table.qualified_name);
			Oid types[1] = {UUIDOID};
			Datum values[1] = {ids[i]};
			if (SPI_execute_with_args(update, 1, types, values, nullptr, false, 0) != SPI_OK_UPDATE)
				ereport(ERROR,
				        (errcode(ERRCODE_INTERNAL_ERROR), errmsg("could not clear report_data of %s", report_id)));
			SPI_finish();
			released++;
		}
		MemoryContextSwitchTo(prev);
		MemoryContextReset(each);
		CHECK_FOR_INTERRUPTS();
		ProgressTick(&progress, i + 1, n, 0);
	}
	ProgressEnd();
	PG_RETURN_INT64(released);
}
