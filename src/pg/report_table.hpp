// SPI access to the application's reports table. PostgreSQL zone, inside
// SPI, in a role scope (see run_as.hpp): statements run with the rights of
// the current user and resolve names through the fixed search_path.
#pragma once

#include "pg/extension.hpp"

namespace reportstore::pg {

struct ReportRow {
	char *format;                     // lower-case name of the format (text form of the column)
	struct varlena *report_data;      // detoasted jsonb, or nullptr when NULL
	char *minio_path;                 // or nullptr when NULL
	bool changed_in_this_transaction; // row version written by the current transaction (LockReportRow only)
};

// The lower-case text form of a format value, through its type's output
// function (never through a cast, which the type's owner could define).
char *FormatName(Datum value, Oid type);

// SELECT ... FOR UPDATE of one report. Raises P0002 for an unknown id.
// Values are copied (detoasted once) into `into`.
void LockReportRow(const ReportTable &table, Datum report_uuid, const char *report_id, ReportRow *row,
                   MemoryContext into);

// Plain SELECT, usable on a hot standby.
void ReadReportRow(const ReportTable &table, Datum report_uuid, const char *report_id, ReportRow *row,
                   MemoryContext into);

// One report of ReadReportRows.
struct ListedReport {
	Datum report_uuid; // points into the context given
	char *report_id;
	char *format;
	char *minio_path;  // or nullptr
	Datum report_data; // as stored (possibly a TOAST pointer, not detoasted)
	bool has_data;
};

// Plain SELECT of the reports whose ids are in `ids` (a uuid[]), each once,
// in the order of its first appearance there; ids that match no row the
// current user can see are left out. Returns the number of rows, copied to
// *rows (allocated in `into`). Values are not detoasted: the caller detoasts
// report_data one row at a time, in the same transaction.
int ReadReportRows(const ReportTable &table, Datum ids, ListedReport **rows, MemoryContext into);

// In one UPDATE: sets minio_path and updated_at of these reports, and clears
// report_data unless keep_report_data. The reportstore_guard trigger accepts
// these paths because they are registered as reportstore's own writes for
// the statement. Raises an ERROR unless exactly n rows changed.
void RecordOffloads(const ReportTable &table, const Datum *report_uuids, const char *const *minio_paths, int n,
                    bool keep_report_data);

// True while reportstore itself sets this report's minio_path to `path` (see
// RecordOffloads). Read by the reportstore_guard trigger.
bool IsOwnOffloadWrite(Datum report_uuid, const char *path);

} // namespace reportstore::pg
