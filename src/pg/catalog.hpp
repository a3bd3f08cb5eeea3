// reportstore's own tables: reportstore.objects (what was uploaded for each
// offloaded report: size, SHA-256, ETag, version) and reportstore.offload_state
// (per-report failures and retry schedule). PostgreSQL zone, inside SPI.
//
// Application roles calling report_offload() have no privileges on these
// tables, so the statements run as the owner of schema reportstore, with the
// security context restricted for the duration of the statement.
#pragma once

#include "pg/pg_prelude.hpp"

#include "core/s3/client.hpp"

namespace reportstore::pg {

// What a verified upload produced, in plain memory the PostgreSQL zone can hold.
struct UploadedObject {
	bool ok;
	char path[600];
	char sha256[65];
	char etag[128];
	char version_id[1100];
	int64 size;
	double seconds;
};

struct ObjectRecord {
	bool found;
	int64 size;
	char sha256[65];
	char *version_id; // or nullptr
};

// Inside SPI: records a verified upload and clears any failure record.
void RecordObject(Datum report_uuid, const UploadedObject &object);

// Inside SPI: records a failed attempt; the next try is after delay_ms.
void RecordFailure(Datum report_uuid, const char *kind, const char *message, int64 delay_ms);

// Inside SPI: keeps a recalled report in the database: the worker skips it
// until report_offload() is called for it explicitly.
void PinInDatabase(Datum report_uuid);

// Inside SPI, before uploading to path: cancels pending deletions of the
// object at path (unversioned ones: a versioned deletion names an old version
// and stays valid). Waits while a delete batch holds them, so that its DELETE
// cannot reach the store after our PUT. No-op on a 1.0 schema.
void CancelQueuedDeletions(const char *path);

// Inside SPI: drops the deletion of this object that the reportstore_guard
// trigger queued in the current transaction (recall keeping its object).
void KeepQueuedObject(Datum report_uuid, const char *path);

// Inside SPI: what reportstore.objects knows about a report's object.
void LookupObject(Datum report_uuid, ObjectRecord *record);

// Core zone: fills *out from a PUT's result (throws if a field does not fit).
void FillUploadedObject(const s3::PutRequest &put, const s3::PutResult &result, UploadedObject *out);

} // namespace reportstore::pg
