// reportstore's executor and utility hooks, which only dispatch:
// * writes to reports wake a worker at commit (src/worker/wake.hpp);
// * CREATE EXTENSION reportstore has the launcher serve the database at commit;
// * DROP EXTENSION reportstore first drops the reportstore_guard trigger
//   (src/functions/reports_guard.hpp);
// * DROP DATABASE and ALTER DATABASE ... RENAME / SET TABLESPACE first stop
//   the workers of that database, so that they never block it
//   (src/worker/launcher.hpp).
#include "pg/pg_prelude.hpp"

#include "functions/reports_guard.hpp"
#include "pg/shared_state.hpp"
#include "worker/launcher.hpp"
#include "worker/wake.hpp"

extern "C" {
#include "commands/dbcommands.h"
#include "executor/executor.h"
#include "nodes/parsenodes.h"
#include "tcop/utility.h"
}

namespace reportstore::pg {

namespace {

ExecutorEnd_hook_type g_prev_executor_end = nullptr;
ProcessUtility_hook_type g_prev_process_utility = nullptr;

void ReportstoreExecutorEnd(QueryDesc *query_desc) {
	WakeOnWrite(query_desc);
	if (g_prev_executor_end)
		g_prev_executor_end(query_desc);
	else
		standard_ExecutorEnd(query_desc);
}

bool NamesThisExtension(List *names) {
	ListCell *lc;
	foreach (lc, names) {
		Node *name = static_cast<Node *>(lfirst(lc));
		if (IsA(name, String) && strcmp(strVal(name), "reportstore") == 0)
			return true;
	}
	return false;
}

// A statement that needs the database without other sessions.
const char *DatabaseToLeave(Node *parsetree) {
	if (IsA(parsetree, DropdbStmt))
		return reinterpret_cast<DropdbStmt *>(parsetree)->dbname;
	if (IsA(parsetree, RenameStmt) && reinterpret_cast<RenameStmt *>(parsetree)->renameType == OBJECT_DATABASE)
		return reinterpret_cast<RenameStmt *>(parsetree)->subname;
	if (IsA(parsetree, AlterDatabaseStmt)) {
		auto *alter = reinterpret_cast<AlterDatabaseStmt *>(parsetree);
		ListCell *lc;
		foreach (lc, alter->options) {
			DefElem *option = static_cast<DefElem *>(lfirst(lc));
			if (strcmp(option->defname, "tablespace") == 0)
				return alter->dbname;
		}
	}
	return nullptr;
}

void ReportstoreProcessUtility(PlannedStmt *pstmt, const char *query_string, bool read_only_tree,
                               ProcessUtilityContext context, ParamListInfo params, QueryEnvironment *query_env,
                               DestReceiver *dest, QueryCompletion *qc) {
	Node *parsetree = pstmt->utilityStmt;
	if (parsetree != nullptr) {
		if (IsA(parsetree, DropStmt) && reinterpret_cast<DropStmt *>(parsetree)->removeType == OBJECT_EXTENSION &&
		    NamesThisExtension(reinterpret_cast<DropStmt *>(parsetree)->objects))
			DropGuardTriggers();
		if (const char *dbname = DatabaseToLeave(parsetree))
			StopWorkersOfDatabase(get_database_oid(dbname, true), "the database is being dropped or changed");
	}
	if (g_prev_process_utility)
		g_prev_process_utility(pstmt, query_string, read_only_tree, context, params, query_env, dest, qc);
	else
		standard_ProcessUtility(pstmt, query_string, read_only_tree, context, params, query_env, dest, qc);
	if (parsetree == nullptr)
		return;
	if (IsA(parsetree, CopyStmt)) {
		CopyStmt *copy = reinterpret_cast<CopyStmt *>(parsetree);
		if (copy->is_from && copy->relation != nullptr)
			WakeOnCopy(copy->relation->relname);
	} else if (IsA(parsetree, CreateExtensionStmt) &&
	           strcmp(reinterpret_cast<CreateExtensionStmt *>(parsetree)->extname, "reportstore") == 0) {
		WakeWorkerAtCommit();
	}
}

} // namespace

void InstallHooks() {
	g_prev_executor_end = ExecutorEnd_hook;
	ExecutorEnd_hook = ReportstoreExecutorEnd;
	g_prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = ReportstoreProcessUtility;
}

} // namespace reportstore::pg
