// Waking the workers when a transaction that inserted or updated rows of the
// reports table (or COPYed into it) commits: through the executor and utility
// hooks (src/pg/hooks.cpp), so that the application's table needs no trigger
// for it. Deletions wake them from the reportstore_guard trigger, which queues
// their objects; CREATE EXTENSION reportstore wakes the launcher. Spurious
// wakes are harmless: a worker just finds nothing to do.
#include "worker/wake.hpp"

#include "pg/shared_state.hpp"

extern "C" {
#include "access/xact.h"
#include "parser/parsetree.h"
}

namespace reportstore::pg {

namespace {

bool g_is_worker = false;
bool g_wake_registered = false; // this transaction asked for a wake

void WakeAtCommitCallback(XactEvent event, void *arg) {
	switch (event) {
	case XACT_EVENT_COMMIT:
	case XACT_EVENT_PARALLEL_COMMIT:
		if (g_wake_registered)
			(void)WakeDatabaseWorkers(MyDatabaseId, false);
		g_wake_registered = false;
		break;
	case XACT_EVENT_ABORT:
	case XACT_EVENT_PARALLEL_ABORT:
		g_wake_registered = false; // a rolled-back insert wakes nothing
		break;
	default:
		break;
	}
}

bool IsReportsTable(Oid relid) {
	char *name = get_rel_name(relid);
	bool match = name != nullptr && strcmp(name, "reports") == 0;
	if (name != nullptr)
		pfree(name);
	return match;
}

} // namespace

void WakeWorkerAtCommit() {
	static bool callback_registered = false;
	if (!callback_registered) {
		RegisterXactCallback(WakeAtCommitCallback, nullptr);
		callback_registered = true;
	}
	g_wake_registered = true;
}

void WakeOnWrite(const QueryDesc *query_desc) {
	if (g_is_worker || g_wake_registered || Shared() == nullptr || query_desc->estate == nullptr ||
	    query_desc->plannedstmt == nullptr)
		return;
	// WITH ins AS (INSERT ... RETURNING) SELECT ...: the statement is a SELECT
	// and es_processed counts its rows, so any write in a CTE counts (a
	// spurious wake costs a worker one look).
	const bool in_cte = query_desc->plannedstmt->hasModifyingCTE;
	if (!in_cte && query_desc->operation != CMD_INSERT && query_desc->operation != CMD_UPDATE &&
	    query_desc->operation != CMD_MERGE)
		return;
	if (!in_cte && query_desc->estate->es_processed == 0)
		return;
	ListCell *lc;
	foreach (lc, query_desc->plannedstmt->resultRelations) {
		RangeTblEntry *rte = rt_fetch(lfirst_int(lc), query_desc->plannedstmt->rtable);
		if (rte->rtekind == RTE_RELATION && IsReportsTable(rte->relid)) {
			WakeWorkerAtCommit();
			return;
		}
	}
}

void WakeOnCopy(const char *relname) {
	if (!g_is_worker && Shared() != nullptr && relname != nullptr && strcmp(relname, "reports") == 0)
		WakeWorkerAtCommit();
}

void MarkProcessAsWorker() {
	g_is_worker = true;
}

} // namespace reportstore::pg
