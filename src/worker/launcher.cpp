// The launcher: one process, connected to no database, that keeps a set of
// workers running for every database reportstore.database names ('*': every
// database that accepts connections), within reportstore.max_workers, in the
// manner of the autovacuum launcher.
//
// * Each database gets max_workers / (number of databases) workers (at least
//   one while there are slots). The workers of a database take disjoint
//   batches: rows locked by one are skipped by the others (SKIP LOCKED).
// * A worker that finds no extension in its database says so in shared memory
//   and exits; the launcher tries that database again a minute later, or at
//   once when CREATE EXTENSION reportstore or a write to reports asks for it.
// * Databases created later are found at the next look (every 10 s, or when
//   woken); DROP DATABASE and ALTER DATABASE RENAME first stop the workers of
//   that database (StopWorkersOfDatabase) so that they never block it.
// * Worker slots live in shared memory; the handles of the processes the
//   launcher started are process-local. A restarted launcher adopts the
//   running workers through their slots.
#include "pg/pg_prelude.hpp"

#include <cerrno>
#include <csignal>
#include <cstring>

#include "pg/settings.hpp"
#include "pg/shared_state.hpp"
#include "worker/launcher.hpp"

extern "C" {
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_database.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/snapmgr.h"

PGDLLEXPORT void reportstore_launcher_main(Datum main_arg);
}

namespace reportstore::pg {

namespace {

constexpr long kLookEveryMs = 10000;
constexpr long kNoExtensionRetryMs = 60000;
constexpr long kRestartDelayMs = 5000;
constexpr long kStartTimeoutMs = 60000;

struct Target {
	Oid database;
	char name[NAMEDATALEN];
};

// Process-local: handles of the workers this launcher started.
BackgroundWorkerHandle *g_handles[kMaxWorkers];
// Workers this launcher asked to stop (a surplus, a database no longer served):
// their exit is no failure, so their database gets no restart delay.
bool g_stop_requested[kMaxWorkers];
TimestampTz g_registered_at[kMaxWorkers];

void DetachLauncher(int code, Datum arg) {
	SharedState *shared = Shared();
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	shared->launcher_pid = 0;
	shared->launcher_latch = nullptr;
	LWLockRelease(shared->lock);
}

bool Listed(const char *list, const char *name) {
	if (std::strcmp(list, "*") == 0)
		return true;
	const char *p = list;
	const size_t len = std::strlen(name);
	while (*p) {
		while (*p == ' ' || *p == ',')
			p++;
		const char *end = p;
		while (*end && *end != ',')
			end++;
		const char *last = end;
		while (last > p && last[-1] == ' ')
			last--;
		if (static_cast<size_t>(last - p) == len && std::strncmp(p, name, len) == 0)
			return true;
		p = end;
	}
	return false;
}

// The databases to serve, from pg_database (a shared catalog: readable
// without a database connection); *existing gets every database's OID.
int ListTargets(Target *out, int max, Oid *existing, int *n_existing) {
	int n = 0;
	*n_existing = 0;
	const char *list = g_settings.database ? g_settings.database : "";
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	Relation rel = table_open(DatabaseRelationId, AccessShareLock);
	TableScanDesc scan = table_beginscan_catalog(rel, 0, nullptr);
	HeapTuple tuple;
	while ((tuple = heap_getnext(scan, ForwardScanDirection)) != nullptr) {
		auto *db = reinterpret_cast<Form_pg_database>(GETSTRUCT(tuple));
		if (*n_existing < max)
			existing[(*n_existing)++] = db->oid;
		if (db->datistemplate || !db->datallowconn || db->datconnlimit == DATCONNLIMIT_INVALID_DB || n >= max)
			continue;
		if (!Listed(list, NameStr(db->datname)))
			continue;
		out[n].database = db->oid;
		strlcpy(out[n].name, NameStr(db->datname), sizeof(out[n].name));
		n++;
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	PopActiveSnapshot();
	CommitTransactionCommand();
	return n;
}

// Frees the slots of workers that ended.
void ReapWorkers(SharedState *shared) {
	TimestampTz now = GetCurrentTimestamp();
	for (int i = 0; i < kMaxWorkers; i++) {
		bool free_it = false;
		pid_t pid = 0;
		BgwHandleStatus status = BGWH_STOPPED;
		if (g_handles[i] != nullptr)
			status = GetBackgroundWorkerPid(g_handles[i], &pid);
		LWLockAcquire(shared->lock, LW_EXCLUSIVE);
		WorkerSlot &slot = shared->workers[i];
		if (OidIsValid(slot.database)) {
			const bool gone = slot.pid != 0 && kill(slot.pid, 0) != 0 && errno == ESRCH;
			if (g_handles[i] != nullptr)
				free_it = status == BGWH_STOPPED || status == BGWH_POSTMASTER_DIED;
			else // adopted after a restart of the launcher
				free_it =
				    gone || (slot.pid == 0 && TimestampDifferenceExceeds(g_registered_at[i], now, kStartTimeoutMs));
			if (free_it) {
				DatabaseState *db = FindDatabase(shared, slot.database, false);
				if (db != nullptr && db->retry_after < now && !g_stop_requested[i])
					db->retry_after = TimestampTzPlusMilliseconds(now, kRestartDelayMs);
				g_stop_requested[i] = false;
				std::memset(&slot, 0, sizeof(slot));
			}
		}
		LWLockRelease(shared->lock);
		if (free_it && g_handles[i] != nullptr) {
			pfree(g_handles[i]);
			g_handles[i] = nullptr;
		}
	}
}

void StopSlot(SharedState *shared, int i) {
	g_stop_requested[i] = true;
	if (g_handles[i] != nullptr) {
		TerminateBackgroundWorker(g_handles[i]);
		return;
	}
	LWLockAcquire(shared->lock, LW_SHARED);
	pid_t pid = shared->workers[i].pid;
	LWLockRelease(shared->lock);
	if (pid != 0)
		kill(pid, SIGTERM);
}

bool StartWorker(SharedState *shared, Oid database) {
	int i = -1;
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	for (int k = 0; k < kMaxWorkers && k < g_settings.max_workers; k++) {
		if (!OidIsValid(shared->workers[k].database)) {
			i = k;
			break;
		}
	}
	if (i >= 0) {
		WorkerSlot &slot = shared->workers[i];
		std::memset(&slot, 0, sizeof(slot));
		slot.database = database;
		slot.state = WorkerState::kStarting;
	}
	LWLockRelease(shared->lock);
	if (i < 0)
		return false;

	BackgroundWorker worker;
	std::memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_ConsistentState;
	worker.bgw_restart_time = BGW_NEVER_RESTART; // the launcher decides
	strlcpy(worker.bgw_library_name, "reportstore", sizeof(worker.bgw_library_name));
	strlcpy(worker.bgw_function_name, "reportstore_worker_main", sizeof(worker.bgw_function_name));
	snprintf(worker.bgw_name, sizeof(worker.bgw_name), "reportstore worker %d", i);
	strlcpy(worker.bgw_type, "reportstore worker", sizeof(worker.bgw_type));
	worker.bgw_main_arg = Int32GetDatum(i);
	worker.bgw_notify_pid = MyProcPid;
	BackgroundWorkerHandle *handle = nullptr;
	if (!RegisterDynamicBackgroundWorker(&worker, &handle)) {
		LWLockAcquire(shared->lock, LW_EXCLUSIVE);
		std::memset(&shared->workers[i], 0, sizeof(WorkerSlot));
		LWLockRelease(shared->lock);
		ereport(WARNING, (errmsg("reportstore launcher: could not start a worker"),
		                  errhint("Raise max_worker_processes: reportstore needs reportstore.max_workers + 1.")));
		return false;
	}
	g_handles[i] = handle;
	g_registered_at[i] = GetCurrentTimestamp();
	g_stop_requested[i] = false;
	return true;
}

// Starts and stops workers so that each target database has its share.
void Reconcile(SharedState *shared, const Target *targets, int n_targets, const Oid *existing, int n_existing) {
	TimestampTz now = GetCurrentTimestamp();
	bool active[kMaxDatabases * 4] = {};
	int n_active = 0;
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	for (int t = 0; t < n_targets; t++) {
		DatabaseState *db = FindDatabase(shared, targets[t].database, true);
		if (db == nullptr)
			continue; // no room for its state: not served
		if (db->wake_requested) {
			db->wake_requested = false;
			if (db->retry_after > now)
				db->retry_after = 0; // someone writes reports there: try now
		}
		active[t] = db->retry_after <= now;
		n_active += active[t] ? 1 : 0;
	}
	// Entries of databases that no longer exist are recycled.
	for (DatabaseState &db : shared->databases) {
		if (!OidIsValid(db.database))
			continue;
		bool exists = false;
		for (int e = 0; e < n_existing && !exists; e++)
			exists = existing[e] == db.database;
		bool has_worker = false;
		for (const WorkerSlot &slot : shared->workers)
			has_worker = has_worker || slot.database == db.database;
		if (!exists && !has_worker)
			db.database = InvalidOid;
	}
	LWLockRelease(shared->lock);

	const int slots = Min(g_settings.max_workers, kMaxWorkers);
	int share = n_active > 0 ? Max(1, slots / n_active) : 0;
	int extra = n_active > 0 && slots > n_active ? slots % n_active : 0;
	int given = 0;
	static bool warned_too_many = false;
	if (n_active > slots && !warned_too_many) {
		ereport(WARNING, (errmsg("reportstore launcher: %d databases to serve but reportstore.max_workers is %d",
		                         n_active, slots),
		                  errhint("Raise reportstore.max_workers (restart needed); databases beyond it wait.")));
		warned_too_many = true;
	}
	for (int t = 0; t < n_targets; t++) {
		int want = 0;
		if (active[t] && given < slots) {
			want = Min(share + (extra > 0 ? 1 : 0), slots - given);
			if (extra > 0)
				extra--;
			given += want;
		}
		// The workers of this database: start the missing, stop the surplus.
		int have = 0;
		int running[kMaxWorkers];
		LWLockAcquire(shared->lock, LW_SHARED);
		for (int i = 0; i < kMaxWorkers; i++)
			if (shared->workers[i].database == targets[t].database)
				running[have++] = i;
		LWLockRelease(shared->lock);
		for (int k = want; k < have; k++)
			StopSlot(shared, running[k]);
		for (int k = have; k < want; k++)
			if (!StartWorker(shared, targets[t].database))
				break;
	}
	// Workers of databases that are no longer targets.
	for (int i = 0; i < kMaxWorkers; i++) {
		LWLockAcquire(shared->lock, LW_SHARED);
		Oid database = shared->workers[i].database;
		LWLockRelease(shared->lock);
		if (!OidIsValid(database))
			continue;
		bool target = false;
		for (int t = 0; t < n_targets && !target; t++)
			target = targets[t].database == database && active[t];
		if (!target)
			StopSlot(shared, i);
	}
}

} // namespace

void StopWorkersOfDatabase(Oid database, const char *why) {
	SharedState *shared = Shared();
	if (shared == nullptr || !OidIsValid(database))
		return;
	pid_t pids[kMaxWorkers];
	int n = 0;
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	DatabaseState *db = FindDatabase(shared, database, true);
	if (db != nullptr) {
		// No new worker while the old ones leave.
		db->retry_after = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), kNoExtensionRetryMs);
		strlcpy(db->note, why, sizeof(db->note));
	}
	for (const WorkerSlot &slot : shared->workers)
		if (slot.database == database && slot.pid != 0)
			pids[n++] = slot.pid;
	LWLockRelease(shared->lock);
	for (int i = 0; i < n; i++)
		kill(pids[i], SIGTERM);
	// Wait (up to 10 s) until they have left the database.
	for (int waited = 0; n > 0 && waited < 100; waited++) {
		bool any = false;
		LWLockAcquire(shared->lock, LW_SHARED);
		for (const WorkerSlot &slot : shared->workers)
			any = any || (slot.database == database && slot.pid != 0);
		LWLockRelease(shared->lock);
		if (!any)
			break;
		(void)WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 100, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	// The statement takes the database's lock within moments. A worker
	// started after that waits for the lock while it connects and is not
	// counted among the database's sessions; after a rollback (or a rename
	// that keeps the database a target) it serves the database again.
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	if (db != nullptr && db->database == database)
		db->retry_after = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), kRestartDelayMs);
	LWLockRelease(shared->lock);
}

void ServeDatabaseNow(Oid database) {
	SharedState *shared = Shared();
	if (shared == nullptr)
		return;
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	DatabaseState *db = FindDatabase(shared, database, true);
	if (db != nullptr) {
		db->retry_after = 0;
		db->wake_requested = true;
	}
	Latch *latch = shared->launcher_latch;
	LWLockRelease(shared->lock);
	if (latch != nullptr)
		SetLatch(latch);
}

void NoteDatabaseUnserved(Oid database, const char *why) {
	SharedState *shared = Shared();
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	DatabaseState *db = FindDatabase(shared, database, true);
	if (db != nullptr) {
		db->retry_after = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), kNoExtensionRetryMs);
		strlcpy(db->note, why, sizeof(db->note));
	}
	LWLockRelease(shared->lock);
}

void RegisterLauncher() {
	BackgroundWorker worker;
	std::memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	// Started at consistency so that its workers can report "standby" until promotion.
	worker.bgw_start_time = BgWorkerStart_ConsistentState;
	worker.bgw_restart_time = 5;
	strlcpy(worker.bgw_library_name, "reportstore", sizeof(worker.bgw_library_name));
	strlcpy(worker.bgw_function_name, "reportstore_launcher_main", sizeof(worker.bgw_function_name));
	strlcpy(worker.bgw_name, "reportstore launcher", sizeof(worker.bgw_name));
	strlcpy(worker.bgw_type, "reportstore launcher", sizeof(worker.bgw_type));
	RegisterBackgroundWorker(&worker);
}

} // namespace reportstore::pg

void reportstore_launcher_main(Datum main_arg) {
	using namespace reportstore::pg;
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(nullptr, nullptr, 0); // shared catalogs only
	pgstat_report_appname("reportstore launcher");

	SharedState *shared = Shared();
	TimestampTz started = GetCurrentTimestamp();
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	shared->launcher_pid = MyProcPid;
	shared->launcher_latch = MyLatch;
	// Adopt the workers a previous launcher started.
	for (int i = 0; i < kMaxWorkers; i++)
		g_registered_at[i] = started;
	LWLockRelease(shared->lock);
	before_shmem_exit(DetachLauncher, (Datum)0);

	constexpr int kMaxListed = kMaxDatabases * 4;
	auto *targets = static_cast<Target *>(MemoryContextAlloc(TopMemoryContext, sizeof(Target) * kMaxListed));
	auto *existing = static_cast<Oid *>(MemoryContextAlloc(TopMemoryContext, sizeof(Oid) * kMaxListed));
	for (;;) {
		int n_existing = 0;
		int n = ListTargets(targets, kMaxListed, existing, &n_existing);
		ReapWorkers(shared);
		Reconcile(shared, targets, n, existing, n_existing);
		(void)WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, kLookEveryMs, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending) {
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
	}
}
