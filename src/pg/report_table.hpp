// SPI access to the application's reports table. All functions here are
// PostgreSQL zone: they may ereport, and they run queries as the current user.
#pragma once

#include "pg/pg_prelude.hpp"

namespace reportstore::pg {

// The reports table lives in the schema the extension was installed into.
struct ReportTable {
	char *qualified_name;  // quoted "schema"."reports"
	bool has_delete_queue; // schema version 1.1 or later (ExtensionReportTable only)
};

struct ReportRow {
	char *format;                     // lower-case format name (LockReportRow only)
	struct varlena *report_data;      // detoasted jsonb, or nullptr when NULL
	char *minio_path;                 // or nullptr when NULL
	bool changed_in_this_transaction; // row version written by the current transaction (LockReportRow only)
};

ReportTable OpenReportTable(FunctionCallInfo fcinfo);

// Inside SPI: the reports table of the schema reportstore is installed in, or
// a table with qualified_name == nullptr when the extension is absent.
// Allocated in `into`.
ReportTable ExtensionReportTable(MemoryContext into);

// Outside SPI: ExtensionReportTable (kept for the transaction), or an ERROR
// when the extension is not installed in this database.
ReportTable RequireExtensionReportTable();

// Inside SPI_connect(): SELECT ... FOR UPDATE of one report. Raises P0002 for
// an unknown id. Values are copied (detoasted once) into `into`.
void LockReportRow(const ReportTable &table, Datum report_uuid, const char *report_id, ReportRow *row,
                   MemoryContext into);

// Inside SPI_connect(): plain SELECT, usable on a hot standby.
void ReadReportRow(const ReportTable &table, Datum report_uuid, const char *report_id, ReportRow *row,
                   MemoryContext into);

// Inside SPI_connect(): sets minio_path and updated_at, and clears
// report_data unless keep_report_data.
void RecordOffload(const ReportTable &table, Datum report_uuid, const char *minio_path, bool keep_report_data);

} // namespace reportstore::pg
