#include "pg/catalog.hpp"

#include "pg/spi_plans.hpp"

#include <cstring>
#include <string>

#include "core/uri.hpp"

extern "C" {
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "utils/syscache.h"
}

namespace reportstore::pg {

namespace {

Oid CatalogOwner() {
	Oid nsp = get_namespace_oid("reportstore", false);
	HeapTuple tuple = SearchSysCache1(NAMESPACEOID, ObjectIdGetDatum(nsp));
	if (!HeapTupleIsValid(tuple))
		ereport(ERROR, (errcode(ERRCODE_UNDEFINED_SCHEMA), errmsg("schema \"reportstore\" does not exist")));
	Oid owner = reinterpret_cast<Form_pg_namespace>(GETSTRUCT(tuple))->nspowner;
	ReleaseSysCache(tuple);
	return owner;
}

// Runs one statement as the catalog owner. An ERROR unwinds the transaction
// (or subtransaction), whose abort restores the user id and security context.
int RunAsOwner(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls, bool read_only) {
	Oid saved_user;
	int saved_context;
	GetUserIdAndSecContext(&saved_user, &saved_context);
	SetUserIdAndSecContext(CatalogOwner(),
	                       saved_context | SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION);
	int rc = SPI_execute_plan(KeptPlan(sql, nargs, types), values, nulls, read_only, 0);
	SetUserIdAndSecContext(saved_user, saved_context);
	if (rc < 0)
		ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR),
		                errmsg("reportstore catalog query failed: %s", SPI_result_code_string(rc))));
	return rc;
}

} // namespace

void RecordObject(Datum report_uuid, const UploadedObject &object) {
	const char *version_id = object.version_id;
	static const char *sql =
	    "WITH cleared AS (DELETE FROM reportstore.offload_state WHERE report_id = $1) "
	    "INSERT INTO reportstore.objects AS o (report_id, path, size, sha256, etag, version_id, uploaded_at) "
	    "VALUES ($1, $2, $3, $4, $5, $6, now()) "
	    "ON CONFLICT (report_id) DO UPDATE SET path = excluded.path, size = excluded.size, "
	    "sha256 = excluded.sha256, etag = excluded.etag, version_id = excluded.version_id, uploaded_at = now()";
	Oid types[6] = {UUIDOID, TEXTOID, INT8OID, TEXTOID, TEXTOID, TEXTOID};
	Datum values[6] = {report_uuid,
	                   CStringGetTextDatum(object.path),
	                   Int64GetDatum(object.size),
	                   CStringGetTextDatum(object.sha256),
	                   CStringGetTextDatum(object.etag),
	                   version_id[0] ? CStringGetTextDatum(version_id) : (Datum)0};
	char nulls[7] = "      ";
	if (!version_id[0])
		nulls[5] = 'n';
	RunAsOwner(sql, 6, types, values, nulls, false);
}

void RecordFailure(Datum report_uuid, const char *kind, const char *message, int64 delay_ms) {
	static const char *sql = "INSERT INTO reportstore.offload_state AS s "
	                         "(report_id, attempts, last_error_kind, last_error, last_attempt_at, next_attempt_at) "
	                         "VALUES ($1, 1, $2, $3, now(), now() + $4 * interval '1 millisecond') "
	                         "ON CONFLICT (report_id) DO UPDATE SET attempts = s.attempts + 1, "
	                         "last_error_kind = excluded.last_error_kind, last_error = excluded.last_error, "
	                         "last_attempt_at = now(), next_attempt_at = excluded.next_attempt_at";
	Oid types[4] = {UUIDOID, TEXTOID, TEXTOID, INT8OID};
	Datum values[4] = {report_uuid, CStringGetTextDatum(kind), CStringGetTextDatum(message), Int64GetDatum(delay_ms)};
	RunAsOwner(sql, 4, types, values, nullptr, false);
}

void PinInDatabase(Datum report_uuid) {
	static const char *sql =
	    "INSERT INTO reportstore.offload_state AS s "
	    "(report_id, attempts, last_error_kind, last_error, last_attempt_at, next_attempt_at) "
	    "VALUES ($1, 0, 'recalled', 'recalled by reportstore.recall(); offload it with report_offload()', now(), "
	    "'infinity') "
	    "ON CONFLICT (report_id) DO UPDATE SET attempts = 0, last_error_kind = excluded.last_error_kind, "
	    "last_error = excluded.last_error, last_attempt_at = now(), next_attempt_at = 'infinity'";
	Oid types[1] = {UUIDOID};
	Datum values[1] = {report_uuid};
	RunAsOwner(sql, 1, types, values, nullptr, false);
}

void CancelQueuedDeletions(const char *path) {
	Oid nsp = get_namespace_oid("reportstore", true);
	if (!OidIsValid(nsp) || !OidIsValid(get_relname_relid("delete_queue", nsp)))
		return;
	static const char *sql = "DELETE FROM reportstore.delete_queue WHERE path = $1 AND version_id IS NULL";
	Oid types[1] = {TEXTOID};
	Datum values[1] = {CStringGetTextDatum(path)};
	RunAsOwner(sql, 1, types, values, nullptr, false);
}

void KeepQueuedObject(Datum report_uuid, const char *path) {
	// enqueued_at defaults to now(), the start time of this transaction.
	static const char *sql =
	    "DELETE FROM reportstore.delete_queue WHERE report_id = $1 AND path = $2 AND enqueued_at = now()";
	Oid types[2] = {UUIDOID, TEXTOID};
	Datum values[2] = {report_uuid, CStringGetTextDatum(path)};
	RunAsOwner(sql, 2, types, values, nullptr, false);
}

void LookupObject(Datum report_uuid, ObjectRecord *record) {
	static const char *sql = "SELECT size, sha256, version_id FROM reportstore.objects WHERE report_id = $1";
	Oid types[1] = {UUIDOID};
	Datum values[1] = {report_uuid};
	record->found = false;
	record->version_id = nullptr;
	RunAsOwner(sql, 1, types, values, nullptr, true);
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
	record->version_id = version ? MemoryContextStrdup(TopTransactionContext, version) : nullptr;
	record->found = true;
}

void FillUploadedObject(const s3::PutRequest &put, const s3::PutResult &result, UploadedObject *out) {
	std::string path = uri::S3Location{put.bucket, put.key}.ToUri();
	if (path.size() >= sizeof(out->path) || result.etag.size() >= sizeof(out->etag) ||
	    result.version_id.size() >= sizeof(out->version_id) || result.sha256_hex.size() >= sizeof(out->sha256))
		throw Error(ErrorKind::kInternal, "XX000", "object path or S3 response field too long");
	std::memcpy(out->path, path.c_str(), path.size() + 1);
	std::memcpy(out->etag, result.etag.c_str(), result.etag.size() + 1);
	std::memcpy(out->version_id, result.version_id.c_str(), result.version_id.size() + 1);
	std::memcpy(out->sha256, result.sha256_hex.c_str(), result.sha256_hex.size() + 1);
	out->size = static_cast<int64>(result.size);
	out->seconds = result.seconds;
	out->ok = true;
}

} // namespace reportstore::pg
