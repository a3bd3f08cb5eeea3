// Executor and utility hooks.
//
// * Wake the background worker when a transaction that inserted or updated
//   rows of the reports table (or COPYed into it) commits. A rolled-back
//   transaction wakes nothing (see WakeWorkerAtCommit); spurious wakes are
//   harmless, the worker just finds nothing to do.
// * DROP EXTENSION reportstore first drops the reportstore_guard trigger it
//   put on the application's table (a trigger cannot be an extension member,
//   and would otherwise make DROP EXTENSION fail). If the DROP fails, the
//   transaction rolls back and the trigger stays.
#include "pg/pg_prelude.hpp"

#include "pg/shared_state.hpp"

extern "C" {
#include "catalog/pg_class.h"
#include "executor/executor.h"
#include "nodes/parsenodes.h"
#include "parser/parsetree.h"
#include "tcop/utility.h"
}

namespace reportstore::pg {

namespace {

ExecutorEnd_hook_type g_prev_executor_end = nullptr;
ProcessUtility_hook_type g_prev_process_utility = nullptr;
bool g_is_worker = false;

bool IsReportsTable(Oid relid) {
	char *name = get_rel_name(relid);
	bool match = name != nullptr && strcmp(name, "reports") == 0;
	if (name != nullptr)
		pfree(name);
	return match;
}

void WakeOnWriteExecutorEnd(QueryDesc *query_desc) {
	if (!g_is_worker && Shared() != nullptr && query_desc->estate != nullptr && query_desc->estate->es_processed > 0 &&
	    (query_desc->operation == CMD_INSERT || query_desc->operation == CMD_UPDATE ||
	     query_desc->operation == CMD_MERGE) &&
	    query_desc->plannedstmt != nullptr) {
		ListCell *lc;
		foreach (lc, query_desc->plannedstmt->resultRelations) {
			RangeTblEntry *rte = rt_fetch(lfirst_int(lc), query_desc->plannedstmt->rtable);
			if (rte->rtekind == RTE_RELATION && IsReportsTable(rte->relid)) {
				WakeWorkerAtCommit();
				break;
			}
		}
	}
	if (g_prev_executor_end)
		g_prev_executor_end(query_desc);
	else
		standard_ExecutorEnd(query_desc);
}

bool DropsThisExtension(Node *parsetree) {
	if (parsetree == nullptr || !IsA(parsetree, DropStmt))
		return false;
	DropStmt *drop = reinterpret_cast<DropStmt *>(parsetree);
	if (drop->removeType != OBJECT_EXTENSION)
		return false;
	ListCell *lc;
	foreach (lc, drop->objects) {
		Node *name = static_cast<Node *>(lfirst(lc));
		if (IsA(name, String) && strcmp(strVal(name), "reportstore") == 0)
			return true;
	}
	return false;
}

void DropGuardTriggers() {
	SPI_connect();
	int rc = SPI_execute("SELECT format('DROP TRIGGER %I ON %s', t.tgname, t.tgrelid::regclass) "
	                     "FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid "
	                     "JOIN pg_namespace n ON n.oid = p.pronamespace "
	                     "WHERE n.nspname = 'reportstore' AND p.proname = 'reports_guard'",
	                     false, 0);
	if (rc == SPI_OK_SELECT) {
		uint64 n = SPI_processed;
		char **statements = static_cast<char **>(palloc(sizeof(char *) * (n + 1)));
		for (uint64 i = 0; i < n; i++)
			statements[i] = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		for (uint64 i = 0; i < n; i++)
			SPI_execute(statements[i], false, 0);
	}
	SPI_finish();
}

void WakeOnCopyProcessUtility(PlannedStmt *pstmt, const char *query_string, bool read_only_tree,
                              ProcessUtilityContext context, ParamListInfo params, QueryEnvironment *query_env,
                              DestReceiver *dest, QueryCompletion *qc) {
	Node *parsetree = pstmt->utilityStmt;
	if (DropsThisExtension(parsetree))
		DropGuardTriggers();
	if (g_prev_process_utility)
		g_prev_process_utility(pstmt, query_string, read_only_tree, context, params, query_env, dest, qc);
	else
		standard_ProcessUtility(pstmt, query_string, read_only_tree, context, params, query_env, dest, qc);
	if (!g_is_worker && Shared() != nullptr && parsetree != nullptr && IsA(parsetree, CopyStmt)) {
		CopyStmt *copy = reinterpret_cast<CopyStmt *>(parsetree);
		if (copy->is_from && copy->relation != nullptr && strcmp(copy->relation->relname, "reports") == 0)
			WakeWorkerAtCommit();
	}
}

} // namespace

void InstallWakeHooks() {
	g_prev_executor_end = ExecutorEnd_hook;
	ExecutorEnd_hook = WakeOnWriteExecutorEnd;
	g_prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = WakeOnCopyProcessUtility;
}

void MarkProcessAsWorker() {
	g_is_worker = true;
}

} // namespace reportstore::pg
