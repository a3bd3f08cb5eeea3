#include "pg/run_as.hpp"

#include "pg/spi_plans.hpp"

namespace reportstore::pg {

namespace {

void FixSearchPath(const char *search_path, RoleScope *scope) {
	scope->guc_nest_level = NewGUCNestLevel();
	(void)set_config_option("search_path", search_path, PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
}

} // namespace

void BeginRole(Oid role, const char *search_path, RoleScope *scope) {
	GetUserIdAndSecContext(&scope->saved_user, &scope->saved_context);
	SetUserIdAndSecContext(role, scope->saved_context | SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION);
	FixSearchPath(search_path, scope);
}

void BeginTableOwner(const ReportTable &table, RoleScope *scope) {
	BeginRole(table.owner, table.search_path, scope);
}

void BeginExtensionOwner(const ReportTable &table, RoleScope *scope) {
	BeginRole(table.extension_owner, table.search_path, scope);
}

void BeginCaller(const ReportTable &table, RoleScope *scope) {
	GetUserIdAndSecContext(&scope->saved_user, &scope->saved_context);
	FixSearchPath(table.search_path, scope);
}

void EndRole(const RoleScope *scope) {
	AtEOXact_GUC(false, scope->guc_nest_level);
	SetUserIdAndSecContext(scope->saved_user, scope->saved_context);
}

void RunAsExtensionOwner(const ReportTable &table, const char *sql, int nargs, Oid *types, Datum *values,
                         const char *nulls, bool read_only, int expected_rc) {
	RoleScope scope;
	BeginExtensionOwner(table, &scope);
	RunKeptPlan(sql, nargs, types, values, nulls, read_only, expected_rc);
	EndRole(&scope);
}

void RunAsTableOwner(const ReportTable &table, const char *sql, int nargs, Oid *types, Datum *values, const char *nulls,
                     bool read_only, int expected_rc) {
	RoleScope scope;
	BeginTableOwner(table, &scope);
	RunKeptPlan(sql, nargs, types, values, nulls, read_only, expected_rc);
	EndRole(&scope);
}

} // namespace reportstore::pg
