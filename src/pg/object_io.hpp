// Reading a report's object back: download, verification against the
// checksum recorded at upload (or the object's metadata), decoding to jsonb.
// Shared by report_fetch(), report_fetch_many() and reportstore.recall(). PostgreSQL zone.
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

// One report of FetchReportObjects; minio_path passed CheckedReportLocation().
struct FetchItem {
	const char *report_id;
	const char *minio_path;
	ObjectRecord object;
};

// Called with each report's content, in the order of the items.
using FetchSink = void (*)(int index, Datum jsonb, void *arg);

// FetchReportObject for many reports: up to reportstore.max_concurrency GETs
// in flight, in windows of bounded size; each object is verified and decoded
// as FetchReportObject does and handed to sink in item order, then freed.
// Raises an ERROR for the first report that fails, naming it.
void FetchReportObjects(const FetchItem *items, int n, FetchSink sink, void *sink_arg);

} // namespace reportstore::pg
