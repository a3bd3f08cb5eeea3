// Reading a report's object back: download, verification against the
// checksum recorded at upload (or the object's metadata), decoding to jsonb.
// Shared by report_fetch() and reportstore.recall(). PostgreSQL zone.
#pragma once

#include "pg/catalog.hpp"

namespace reportstore::pg {

// Returns the report's content as a jsonb Datum allocated in `into`. Raises
// an ERROR naming the report and the path when the object is missing,
// corrupt, unverifiable or not JSON. Counts fetches in shared memory.
Datum FetchReportObject(const char *report_id, const char *minio_path, const ObjectRecord &object, MemoryContext into);

} // namespace reportstore::pg
