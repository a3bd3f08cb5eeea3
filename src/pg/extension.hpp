// The installed extension and the application's table it works on.
// PostgreSQL zone; no SPI needed.
#pragma once

#include "pg/pg_prelude.hpp"

namespace reportstore::pg {

// The schema version this library writes. Older installed versions are read
// (report_fetch keeps working between a package upgrade and ALTER EXTENSION
// UPDATE); everything that writes needs this one.
constexpr int kSchemaVersion = 102; // 1.2

struct ReportTable {
	char *qualified_name; // "schema"."reports", quoted
	char *search_path;    // fixed search_path: pg_catalog, the extension's schema, pg_temp
	Oid relid;
	Oid owner;           // the table's owner: work on the table runs as this role
	Oid extension_owner; // statements on reportstore's own tables run as this role
	int schema_version;  // installed extension version, 100 * major + minor
};

// The extension's reports table, allocated in `into`. False, with *why set,
// when the extension or the table is missing (the worker then waits).
bool FindReportTable(ReportTable *out, MemoryContext into, const char **why);

// FindReportTable or an ERROR; also an ERROR, with the ALTER EXTENSION hint,
// when the installed schema is older than min_version. Looked up once per
// transaction (the trigger asks for every row).
const ReportTable &RequireReportTable(int min_version);

} // namespace reportstore::pg
