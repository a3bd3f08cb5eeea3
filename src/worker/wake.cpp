// Waking the background worker: when a transaction that inserted or updated
// rows of the reports table (or COPYed into it) commits, through executor and
// utility hooks, so that the application's table needs no trigger for it. A
// rolled-back transaction wakes nothing (see WakeWorkerAtCommit); spurious
// wakes are harmless, the worker just finds nothing to do. Deletions wake it
// from the reportstore_guard trigger, which queues their objects.
//
// The utility hook also lets DROP EXTENSION reportstore drop the
// reportstore_guard trigger first (see reports_guard.hpp).
#include "pg/pg_prelude.hpp"

#include "functions/reports_guard.hpp"
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
