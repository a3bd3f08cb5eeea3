// reportstore's own tables: reportstore.objects (the object uploaded for each
// offloaded report: size, SHA-256, ETag, version), reportstore.offload_state
// (per-report failures and retry schedule) and reportstore.delete_queue
// (objects no report needs any more, kept for delete_delay so that a
// point-in-time restore of the database still finds them).
//
// Application roles have no privileges on these tables, and the table owner
// may not change them either (it could aim the worker's deletions at any
// object in the bucket). So every statement here runs as the extension's
// owner, restricted, with the fixed search_path (see run_as.hpp), and its
// SQL qualifies every name and operator. PostgreSQL zone, inside SPI.
#pragma once

#include "pg/extension.hpp"

#include "core/s3/client.hpp"

namespace reportstore::pg {

// An object path (s3://bucket/key) in the PostgreSQL zone's fixed buffers.
constexpr std::size_t kObjectPathSize = 600;

// Core zone: s3://{bucket}/{key} into out (kObjectPathSize bytes). Throws
// reportstore::Error (XX000) when it does not fit.
void CopyObjectPath(const std::string &bucket, const std::string &key, char *out);

// What a verified upload produced, in plain memory the PostgreSQL zone can hold.
struct UploadedObject {
	bool ok;
	char path[kObjectPathSize];
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

// Records verified uploads (one statement) and clears their failure records.
void RecordObjects(const ReportTable &table, const Datum *report_uuids, const UploadedObject *const *objects, int n);

// Records a failed attempt; the next try is after delay_ms, or never
// (until report_offload() or a change of the report) when delay_ms < 0.
void RecordFailure(const ReportTable &table, Datum report_uuid, const char *kind, const char *message, int64 delay_ms);

// New content deserves a new try: forgets the report's failures (not a
// recall's pin).
void ClearFailures(const ReportTable &table, Datum report_uuid);

// Failed attempts recorded for the report so far (0 when none).
int ReadAttempts(const ReportTable &table, Datum report_uuid);

// Keeps a recalled report in the database: the worker skips it until
// report_offload() is called for it explicitly.
void PinInDatabase(const ReportTable &table, Datum report_uuid);

// Before uploading to these paths: cancels pending deletions of the objects
// at them (unversioned ones: a versioned deletion names an old version and
// stays valid), in one statement. Waits while a delete batch holds them, so
// that its DELETE cannot reach the store after our PUT.
void CancelQueuedDeletions(const ReportTable &table, const char *const *paths, int n);

// What reportstore.objects knows about the object of a report at path;
// version_id is allocated in `into`.
void LookupObject(const ReportTable &table, Datum report_uuid, const char *path, ObjectRecord *record,
                  MemoryContext into);

// LookupObject for n reports in one statement: records[i] for report_uuids[i]
// at paths[i].
void LookupObjects(const ReportTable &table, const Datum *report_uuids, const char *const *paths, int n,
                   ObjectRecord *records, MemoryContext into);

// A report no longer points at the object at path (new content, recall,
// another path): forgets it in reportstore.objects and queues it in
// reportstore.delete_queue for delete_delay. Whether the queued entry will
// delete the object or only keep it safe from orphans() for delete_delay
// follows SetKeepReleasedObjects().
void ReleaseObject(const ReportTable &table, Datum report_uuid, const char *path);

// A report is deleted: queues its object (minio_path, or null), the last
// object uploaded for it, and key_in_bucket (where an upload that never
// committed may have left an object; or null), and forgets its state.
// Returns true when something was queued.
bool ReleaseDeletedReport(const ReportTable &table, Datum report_uuid, const char *minio_path,
                          const char *key_in_bucket);

// While true, ReleaseObject() queues entries that keep the object
// (reportstore.recall() without delete_object). Reset at transaction end.
void SetKeepReleasedObjects(bool keep);

// True when a pending entry of reportstore.delete_queue will delete the
// object at path: nothing may claim it by setting minio_path.
bool IsQueuedForDeletion(const ReportTable &table, const char *path);

// Core zone: fills *out from a PUT's result (throws if a field does not fit).
void FillUploadedObject(const s3::PutRequest &put, const s3::PutResult &result, UploadedObject *out);
void FillUploadedObject(const char *path, const s3::PutResult &result, UploadedObject *out);

} // namespace reportstore::pg
