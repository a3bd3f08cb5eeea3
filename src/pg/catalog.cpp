#include "pg/catalog.hpp"

#include <cstring>
#include <string>

#include "core/uri.hpp"
#include "pg/run_as.hpp"
#include "pg/settings.hpp"
#include "pg/spi_plans.hpp"

extern "C" {
#include "utils/array.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"
}

namespace reportstore::pg {

namespace {

bool g_keep_released = false;
bool g_keep_callback_registered = false;

void ResetKeepReleased(XactEvent event, void *arg) {
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_COMMIT ||
	    event == XACT_EVENT_PARALLEL_ABORT || event == XACT_EVENT_PREPARE)
		g_keep_released = false;
}

// now() (the transaction's start) plus ms, or 'infinity' when ms < 0.
Datum TransactionTimePlusMs(int64 ms) {
	if (ms < 0) {
		TimestampTz never;
		TIMESTAMP_NOEND(never);
		return TimestampTzGetDatum(never);
	}
	return TimestampTzGetDatum(TimestampTzPlusMilliseconds(GetCurrentTransactionStartTimestamp(), ms));
}

Datum DeleteNotBefore() {
	return TransactionTimePlusMs(static_cast<int64>(g_settings.delete_delay_s) * 1000);
}

} // namespace

void RecordObjects(const ReportTable &table, const Datum *report_uuids, const UploadedObject *const *objects, int n) {
	if (n == 0)
		return;
	static const char *sql =
	    "WITH cleared AS (DELETE FROM reportstore.offload_state s "
	    "                 WHERE s.report_id OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.uuid[])) "
	    "INSERT INTO reportstore.objects AS o (report_id, path, size, sha256, etag, version_id, uploaded_at) "
	    "SELECT v.id, v.path, v.size, v.sha256, v.etag, NULLIF(v.version_id, ''), pg_catalog.now() "
	    "  FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.uuid[]), pg_catalog.unnest($2::pg_catalog.text[]), "
	    "                  pg_catalog.unnest($3::pg_catalog.int8[]), pg_catalog.unnest($4::pg_catalog.text[]), "
	    "                  pg_catalog.unnest($5::pg_catalog.text[]), pg_catalog.unnest($6::pg_catalog.text[])) "
	    "       AS v(id, path, size, sha256, etag, version_id) "
	    "ON CONFLICT (report_id) DO UPDATE SET path = excluded.path, size = excluded.size, "
	    "sha256 = excluded.sha256, etag = excluded.etag, version_id = excluded.version_id, "
	    "uploaded_at = pg_catalog.now()";
	Datum *columns[5];
	for (Datum *&column : columns)
		column = static_cast<Datum *>(palloc(sizeof(Datum) * n));
	for (int i = 0; i < n; i++) {
		columns[0][i] = CStringGetTextDatum(objects[i]->path);
		columns[1][i] = Int64GetDatum(objects[i]->size);
		columns[2][i] = CStringGetTextDatum(objects[i]->sha256);
		columns[3][i] = CStringGetTextDatum(objects[i]->etag);
		columns[4][i] = CStringGetTextDatum(objects[i]->version_id);
	}
	Oid types[6] = {UUIDARRAYOID, TEXTARRAYOID, INT8ARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID};
	Datum values[6] = {UuidArray(report_uuids, n),
	                   TextArray(columns[0], n),
	                   PointerGetDatum(construct_array(columns[1], n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE)),
	                   TextArray(columns[2], n),
	                   TextArray(columns[3], n),
	                   TextArray(columns[4], n)};
	RunAsExtensionOwner(table, sql, 6, types, values, nullptr, false, SPI_OK_INSERT);
}

void RecordFailure(const ReportTable &table, Datum report_uuid, const char *kind, const char *message, int64 delay_ms) {
	static const char *sql = "INSERT INTO reportstore.offload_state AS s "
	                         "(report_id, attempts, last_error_kind, last_error, last_attempt_at, next_attempt_at) "
	                         "VALUES ($1, 1, $2, $3, pg_catalog.now(), $4) "
	                         "ON CONFLICT (report_id) DO UPDATE SET attempts = s.attempts OPERATOR(pg_catalog.+) 1, "
	                         "last_error_kind = excluded.last_error_kind, last_error = excluded.last_error, "
	                         "last_attempt_at = pg_catalog.now(), next_attempt_at = excluded.next_attempt_at";
	Oid types[4] = {UUIDOID, TEXTOID, TEXTOID, TIMESTAMPTZOID};
	Datum values[4] = {report_uuid, CStringGetTextDatum(kind), CStringGetTextDatum(message),
	                   TransactionTimePlusMs(delay_ms)};
	RunAsExtensionOwner(table, sql, 4, types, values, nullptr, false, SPI_OK_INSERT);
}

void ClearFailures(const ReportTable &table, Datum report_uuid) {
	static const char *sql = "DELETE FROM reportstore.offload_state s WHERE s.report_id OPERATOR(pg_catalog.=) $1 "
	                         "AND s.last_error_kind IS DISTINCT FROM 'recalled'";
	Oid types[1] = {UUIDOID};
	Datum values[1] = {report_uuid};
	RunAsExtensionOwner(table, sql, 1, types, values, nullptr, false, SPI_OK_DELETE);
}

int ReadAttempts(const ReportTable &table, Datum report_uuid) {
	static const char *sql =
	    "SELECT s.attempts FROM reportstore.offload_state s WHERE s.report_id OPERATOR(pg_catalog.=) $1";
	Oid types[1] = {UUIDOID};
	Datum values[1] = {report_uuid};
	RunAsExtensionOwner(table, sql, 1, types, values, nullptr, true, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return 0;
	bool isnull;
	return DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

void PinInDatabase(const ReportTable &table, Datum report_uuid) {
	static const char *sql =
	    "INSERT INTO reportstore.offload_state AS s "
	    "(report_id, attempts, last_error_kind, last_error, last_attempt_at, next_attempt_at) "
	    "VALUES ($1, 0, 'recalled', 'recalled by reportstore.recall(); offload it with report_offload()', "
	    "pg_catalog.now(), 'infinity') "
	    "ON CONFLICT (report_id) DO UPDATE SET attempts = 0, last_error_kind = excluded.last_error_kind, "
	    "last_error = excluded.last_error, last_attempt_at = pg_catalog.now(), next_attempt_at = 'infinity'";
	Oid types[1] = {UUIDOID};
	Datum values[1] = {report_uuid};
	RunAsExtensionOwner(table, sql, 1, types, values, nullptr, false, SPI_OK_INSERT);
}

void CancelQueuedDeletions(const ReportTable &table, const char *const *paths, int n) {
	if (n == 0)
		return;
	static const char *sql = "DELETE FROM reportstore.delete_queue q "
	                         "WHERE q.path OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.text[]) AND q.version_id IS NULL";
	Datum *texts = static_cast<Datum *>(palloc(sizeof(Datum) * n));
	for (int i = 0; i < n; i++)
		texts[i] = CStringGetTextDatum(paths[i]);
	Oid types[1] = {TEXTARRAYOID};
	Datum values[1] = {TextArray(texts, n)};
	RunAsExtensionOwner(table, sql, 1, types, values, nullptr, false, SPI_OK_DELETE);
}

void LookupObject(const ReportTable &table, Datum report_uuid, const char *path, ObjectRecord *record,
                  MemoryContext into) {
	static const char *sql = "SELECT o.size, o.sha256, o.version_id FROM reportstore.objects o "
	                         "WHERE o.report_id OPERATOR(pg_catalog.=) $1 AND o.path OPERATOR(pg_catalog.=) $2";
	Oid types[2] = {UUIDOID, TEXTOID};
	Datum values[2] = {report_uuid, CStringGetTextDatum(path)};
	record->found = false;
	record->version_id = nullptr;
	RunAsExtensionOwner(table, sql, 2, types, values, nullptr, true, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return;
	bool isnull;
	HeapTuple tuple = SPI_tuptable->vals[0];
	TupleDesc desc = SPI_tuptable->tupdesc;
	Datum size = SPI_getbinval(tuple, desc, 1, &isnull);
	record->size = isnull ? -1 : DatumGetInt64(size);
	char *sha = SPI_getvalue(tuple, desc, 2);
	strlcpy(record->sha256, sha ? sha : "", sizeof(record->sha256));
	char *version = SPI_getvalue(tuple, desc, 3);
	record->version_id = version ? MemoryContextStrdup(into, version) : nullptr;
	record->found = true;
}

void LookupObjects(const ReportTable &table, const Datum *report_uuids, const char *const *paths, int n,
                   ObjectRecord *records, MemoryContext into) {
	for (int i = 0; i < n; i++) {
		records[i].found = false;
		records[i].version_id = nullptr;
	}
	if (n == 0)
		return;
	static const char *sql =
	    "SELECT v.n, o.size, o.sha256, o.version_id "
	    "FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.uuid[]), pg_catalog.unnest($2::pg_catalog.text[])) "
	    "     WITH ORDINALITY AS v(id, path, n) "
	    "JOIN reportstore.objects o ON o.report_id OPERATOR(pg_catalog.=) v.id "
	    "                          AND o.path OPERATOR(pg_catalog.=) v.path";
	Datum *path_datums = static_cast<Datum *>(palloc(sizeof(Datum) * n));
	for (int i = 0; i < n; i++)
		path_datums[i] = CStringGetTextDatum(paths[i]);
	Oid types[2] = {UUIDARRAYOID, TEXTARRAYOID};
	Datum values[2] = {UuidArray(report_uuids, n), TextArray(path_datums, n)};
	RunAsExtensionOwner(table, sql, 2, types, values, nullptr, true, SPI_OK_SELECT);
	TupleDesc desc = SPI_tuptable->tupdesc;
	for (uint64 row = 0; row < SPI_processed; row++) {
		HeapTuple tuple = SPI_tuptable->vals[row];
		bool isnull;
		const int64 ordinal = DatumGetInt64(SPI_getbinval(tuple, desc, 1, &isnull));
		if (ordinal < 1 || ordinal > n)
			continue;
		ObjectRecord *record = &records[ordinal - 1];
		Datum size = SPI_getbinval(tuple, desc, 2, &isnull);
		record->size = isnull ? -1 : DatumGetInt64(size);
		char *sha = SPI_getvalue(tuple, desc, 3);
		strlcpy(record->sha256, sha ? sha : "", sizeof(record->sha256));
		char *version = SPI_getvalue(tuple, desc, 4);
		record->version_id = version ? MemoryContextStrdup(into, version) : nullptr;
		record->found = true;
	}
}

void ReleaseObject(const ReportTable &table, Datum report_uuid, const char *path) {
	static const char *sql =
	    "WITH gone AS (DELETE FROM reportstore.objects o WHERE o.report_id OPERATOR(pg_catalog.=) $1 "
	    "              AND o.path OPERATOR(pg_catalog.=) $2 RETURNING o.version_id) "
	    "INSERT INTO reportstore.delete_queue (report_id, path, version_id, not_before, delete_object) "
	    "VALUES ($1, $2, (SELECT g.version_id FROM gone g LIMIT 1), $3, $4)";
	Oid types[4] = {UUIDOID, TEXTOID, TIMESTAMPTZOID, BOOLOID};
	Datum values[4] = {report_uuid, CStringGetTextDatum(path), DeleteNotBefore(), BoolGetDatum(!g_keep_released)};
	RunAsExtensionOwner(table, sql, 4, types, values, nullptr, false, SPI_OK_INSERT);
}

bool ReleaseDeletedReport(const ReportTable &table, Datum report_uuid, const char *minio_path,
                          const char *key_in_bucket) {
	static const char *sql =
	    "WITH gone AS (DELETE FROM reportstore.objects o WHERE o.report_id OPERATOR(pg_catalog.=) $1 "
	    "              RETURNING o.path, o.version_id), "
	    "state AS (DELETE FROM reportstore.offload_state s WHERE s.report_id OPERATOR(pg_catalog.=) $1) "
	    "INSERT INTO reportstore.delete_queue (report_id, path, version_id, not_before, delete_object) "
	    "SELECT $1, p.path, (SELECT g.version_id FROM gone g WHERE g.path OPERATOR(pg_catalog.=) p.path LIMIT 1), "
	    "       $4, true "
	    "  FROM (SELECT $2 AS path UNION SELECT g.path FROM gone g UNION SELECT $3) p "
	    " WHERE p.path IS NOT NULL";
	Oid types[4] = {UUIDOID, TEXTOID, TEXTOID, TIMESTAMPTZOID};
	Datum values[4] = {report_uuid, minio_path ? CStringGetTextDatum(minio_path) : (Datum)0,
	                   key_in_bucket ? CStringGetTextDatum(key_in_bucket) : (Datum)0, DeleteNotBefore()};
	char nulls[5] = "    ";
	if (minio_path == nullptr)
		nulls[1] = 'n';
	if (key_in_bucket == nullptr)
		nulls[2] = 'n';
	RunAsExtensionOwner(table, sql, 4, types, values, nulls, false, SPI_OK_INSERT);
	return SPI_processed > 0;
}

void SetKeepReleasedObjects(bool keep) {
	if (!g_keep_callback_registered) {
		RegisterXactCallback(ResetKeepReleased, nullptr);
		g_keep_callback_registered = true;
	}
	g_keep_released = keep;
}

bool IsQueuedForDeletion(const ReportTable &table, const char *path) {
	static const char *sql = "SELECT 1 FROM reportstore.delete_queue q "
	                         "WHERE q.path OPERATOR(pg_catalog.=) $1 AND q.delete_object LIMIT 1";
	Oid types[1] = {TEXTOID};
	Datum values[1] = {CStringGetTextDatum(path)};
	RunAsExtensionOwner(table, sql, 1, types, values, nullptr, true, SPI_OK_SELECT);
	return SPI_processed > 0;
}

void CopyObjectPath(const std::string &bucket, const std::string &key, char *out) {
	const std::string uri = uri::S3Location{bucket, key}.ToUri();
	if (uri.size() >= kObjectPathSize)
		throw Error(ErrorKind::kInternal, "XX000", "object path too long");
	std::memcpy(out, uri.c_str(), uri.size() + 1);
}

void FillUploadedObject(const s3::PutRequest &put, const s3::PutResult &result, UploadedObject *out) {
	FillUploadedObject(uri::S3Location{put.bucket, put.key}.ToUri().c_str(), result, out);
}

void FillUploadedObject(const char *path, const s3::PutResult &result, UploadedObject *out) {
	const std::size_t path_len = std::strlen(path);
	if (path_len >= sizeof(out->path) || result.etag.size() >= sizeof(out->etag) ||
	    result.version_id.size() >= sizeof(out->version_id) || result.sha256_hex.size() >= sizeof(out->sha256))
		throw Error(ErrorKind::kInternal, "XX000", "object path or S3 response field too long");
	std::memcpy(out->path, path, path_len + 1);
	std::memcpy(out->etag, result.etag.c_str(), result.etag.size() + 1);
	std::memcpy(out->version_id, result.version_id.c_str(), result.version_id.size() + 1);
	std::memcpy(out->sha256, result.sha256_hex.c_str(), result.sha256_hex.size() + 1);
	out->size = static_cast<int64>(result.size);
	out->seconds = result.seconds;
	out->ok = true;
}

} // namespace reportstore::pg
