// Reading a report's object back: download, verification against the
// checksum recorded at upload (or the object's metadata), decoding to jsonb.
// Shared by report_fetch() and reportstore.recall(). PostgreSQL zone.
#pragma once

#include "pg/catalog.hpp"

#include "core/uri.hpp"

namespace reportstore::pg {

// Core zone: where a report's minio_path points, after checking that it is
// this report's key (reports/{report_id}/report.{format}) in reportstore.bucket
// or reportstore.allowed_buckets. A row written before these rules, or with
// the trigger disabled, must not make reportstore read another object.
// Throws reportstore::Error (kConfig, 22023).
uri::S3Location CheckedReportLocation(const char *report_id, const char *format, const char *minio_path);

// Returns the report's content as a jsonb Datum allocated in `into`. Raises
// an ERROR naming the report and the path when the object is missing,
// corrupt, unverifiable or not JSON. Counts fetches in shared memory.
// minio_path must have passed CheckedReportLocation().
Datum FetchReportObject(const char *report_id, const char *minio_path, const ObjectRecord &object, MemoryContext into);

} // namespace reportstore::pg
