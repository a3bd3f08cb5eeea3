// Running internal work with exactly the rights it needs.
//
// Work on the application's reports table (the worker, run_once, recall,
// release_kept_data, verify, orphans, the status counts) runs as the table's
// owner under SECURITY_RESTRICTED_OPERATION, the way PostgreSQL runs VACUUM,
// ANALYZE and index builds since CVE-2022-1552: the owner's triggers,
// defaults, constraints and policies then run with the owner's rights, never
// with those of the superuser that runs the worker or of a DBA calling a
// function. Statements on reportstore's own tables run as the extension's
// owner. Either way every name is resolved through the fixed search_path of
// ReportTable (pg_catalog, the extension's schema, pg_temp), never through
// the caller's; SQL text also qualifies every name and operator.
//
// An ERROR inside a scope needs no cleanup: aborting the (sub)transaction
// restores the user id, the security context and the GUC nesting level.
// PostgreSQL zone.
#pragma once

#include "pg/extension.hpp"

namespace reportstore::pg {

struct RoleScope {
	Oid saved_user;
	int saved_context;
	int guc_nest_level;
};

// As `role`, restricted, with the fixed search_path, until EndRole().
void BeginRole(Oid role, const char *search_path, RoleScope *scope);

// As the table's owner / as the extension's owner (see above).
void BeginTableOwner(const ReportTable &table, RoleScope *scope);
void BeginExtensionOwner(const ReportTable &table, RoleScope *scope);

// Keeps the current user and fixes the search_path: for work done with the
// caller's own rights (report_fetch, report_offload, report_url).
void BeginCaller(const ReportTable &table, RoleScope *scope);

void EndRole(const RoleScope *scope);

// One statement on reportstore's own tables, as the extension's owner, with
// a kept plan (spi_plans.hpp). Inside SPI.
void RunAsExtensionOwner(const ReportTable &table, const char *sql, int nargs, Oid *types, Datum *values,
                         const char *nulls, bool read_only, int expected_rc);

// One statement on the reports table, as its owner under
// SECURITY_RESTRICTED_OPERATION, with a kept plan. Inside SPI.
void RunAsTableOwner(const ReportTable &table, const char *sql, int nargs, Oid *types, Datum *values, const char *nulls,
                     bool read_only, int expected_rc);

} // namespace reportstore::pg
