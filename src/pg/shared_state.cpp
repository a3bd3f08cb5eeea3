#include "pg/shared_state.hpp"

#include <cstring>

extern "C" {
#include "storage/ipc.h"
#include "storage/proc.h"
#include "storage/shmem.h"
}

namespace reportstore::pg {

int g_worker_slot = -1;

namespace {

SharedState *g_shared = nullptr;
shmem_request_hook_type g_prev_shmem_request = nullptr;
shmem_startup_hook_type g_prev_shmem_startup = nullptr;

constexpr const char *kTrancheName = "reportstore";

void ShmemRequest(void) {
	if (g_prev_shmem_request)
		g_prev_shmem_request();
	RequestAddinShmemSpace(MAXALIGN(sizeof(SharedState)));
	RequestNamedLWLockTranche(kTrancheName, 1);
}

void InitDatabase(DatabaseState *db, Oid database) {
	std::memset(db, 0, offsetof(DatabaseState, counters));
	db->database = database;
	db->stats_reset = GetCurrentTimestamp();
	for (int i = 0; i < kCounterCount; i++)
		pg_atomic_init_u64(&db->counters[i], 0);
	db->ring_next = 0;
	db->ring_count = 0;
}

void ShmemStartup(void) {
	if (g_prev_shmem_startup)
		g_prev_shmem_startup();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	bool found;
	g_shared = static_cast<SharedState *>(ShmemInitStruct("reportstore", sizeof(SharedState), &found));
	if (!found) {
		std::memset(g_shared, 0, sizeof(SharedState));
		g_shared->lock = &(GetNamedLWLockTranche(kTrancheName))->lock;
		for (DatabaseState &db : g_shared->databases)
			InitDatabase(&db, InvalidOid);
	}
	LWLockRelease(AddinShmemInitLock);
}

DatabaseState *MyDatabaseLocked(bool create) {
	return OidIsValid(MyDatabaseId) ? FindDatabase(g_shared, MyDatabaseId, create) : nullptr;
}

} // namespace

const char *WorkerStateName(WorkerState state) {
	switch (state) {
	case WorkerState::kStopped:
		return "stopped";
	case WorkerState::kStarting:
		return "starting";
	case WorkerState::kWaiting:
		return "waiting";
	case WorkerState::kIdle:
		return "idle";
	case WorkerState::kRunning:
		return "running";
	case WorkerState::kPaused:
		return "paused";
	case WorkerState::kBackingOff:
		return "backing off";
	}
	return "unknown";
}

SharedState *Shared() {
	return g_shared;
}

SharedState *RequireShared() {
	if (g_shared == nullptr)
		ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
		                errmsg("reportstore is not loaded through shared_preload_libraries"),
		                errhint("Add reportstore to shared_preload_libraries in postgresql.conf and restart the "
		                        "server.")));
	return g_shared;
}

void RequestSharedState() {
	g_prev_shmem_request = shmem_request_hook;
	shmem_request_hook = ShmemRequest;
}

void InstallSharedStateHooks() {
	g_prev_shmem_startup = shmem_startup_hook;
	shmem_startup_hook = ShmemStartup;
}

DatabaseState *FindDatabase(SharedState *shared, Oid database, bool create) {
	DatabaseState *free_entry = nullptr;
	for (DatabaseState &db : shared->databases) {
		if (db.database == database)
			return &db;
		if (free_entry == nullptr && !OidIsValid(db.database))
			free_entry = &db;
	}
	if (!create || free_entry == nullptr)
		return nullptr;
	InitDatabase(free_entry, database);
	return free_entry;
}

void CountAdd(Counter counter, uint64 value) {
	if (g_shared == nullptr)
		return;
	LWLockAcquire(g_shared->lock, LW_EXCLUSIVE);
	DatabaseState *db = MyDatabaseLocked(true);
	if (db != nullptr)
		pg_atomic_fetch_add_u64(&db->counters[counter], value);
	LWLockRelease(g_shared->lock);
}

void RecordUpload(uint64 bytes, double seconds) {
	if (g_shared == nullptr)
		return;
	LWLockAcquire(g_shared->lock, LW_EXCLUSIVE);
	DatabaseState *db = MyDatabaseLocked(true);
	if (db != nullptr) {
		pg_atomic_fetch_add_u64(&db->counters[kUploads], 1);
		pg_atomic_fetch_add_u64(&db->counters[kUploadBytes], bytes);
		UploadSample &sample = db->ring[db->ring_next];
		sample.at = GetCurrentTimestamp();
		sample.bytes = bytes;
		double us = seconds * 1e6;
		sample.latency_us = us > 4e9 ? 4000000000u : static_cast<uint32>(us);
		db->ring_next = (db->ring_next + 1) % kUploadRingSize;
		if (db->ring_count < kUploadRingSize)
			db->ring_count++;
	}
	LWLockRelease(g_shared->lock);
}

void SetLastError(const char *message) {
	if (g_shared == nullptr)
		return;
	LWLockAcquire(g_shared->lock, LW_EXCLUSIVE);
	DatabaseState *db = MyDatabaseLocked(true);
	if (db != nullptr) {
		strlcpy(db->last_error, message ? message : "", sizeof(db->last_error));
		db->last_error_at = GetCurrentTimestamp();
	}
	LWLockRelease(g_shared->lock);
}

void SetWorkerState(WorkerState state, const char *detail) {
	if (g_shared == nullptr || g_worker_slot < 0)
		return;
	LWLockAcquire(g_shared->lock, LW_EXCLUSIVE);
	WorkerSlot &slot = g_shared->workers[g_worker_slot];
	slot.state = state;
	slot.idle = state != WorkerState::kRunning;
	strlcpy(slot.detail, detail ? detail : "", sizeof(slot.detail));
	LWLockRelease(g_shared->lock);
}

bool WakeDatabaseWorkers(Oid database, bool all) {
	if (g_shared == nullptr)
		return false;
	LWLockAcquire(g_shared->lock, LW_EXCLUSIVE);
	Latch *wake[kMaxWorkers];
	int n = 0;
	int running = 0;
	Latch *busy = nullptr;
	for (int k = 0; k < kMaxWorkers; k++) {
		// Round robin, so that consecutive commits spread over the workers.
		WorkerSlot &slot = g_shared->workers[(g_shared->wake_cursor + k) % kMaxWorkers];
		if (slot.database != database || slot.pid == 0 || slot.latch == nullptr)
			continue;
		running++;
		if (all || (n == 0 && slot.idle))
			wake[n++] = slot.latch;
		else if (busy == nullptr)
			busy = slot.latch;
	}
	g_shared->wake_cursor = (g_shared->wake_cursor + 1) % kMaxWorkers;
	if (n == 0 && busy != nullptr)
		wake[n++] = busy; // none idle: the busy one looks again after its batch
	if (running == 0) {
		DatabaseState *db = FindDatabase(g_shared, database, true);
		if (db != nullptr)
			db->wake_requested = true;
		if (g_shared->launcher_latch != nullptr)
			wake[n++] = g_shared->launcher_latch;
	}
	LWLockRelease(g_shared->lock);
	for (int i = 0; i < n; i++)
		SetLatch(wake[i]);
	return running > 0;
}

bool WakeIdleHelper(Oid database) {
	if (g_shared == nullptr)
		return false;
	Latch *latch = nullptr;
	LWLockAcquire(g_shared->lock, LW_SHARED);
	for (int k = 0; k < kMaxWorkers && latch == nullptr; k++) {
		const WorkerSlot &slot = g_shared->workers[k];
		if (k != g_worker_slot && slot.database == database && slot.pid != 0 && slot.latch != nullptr && slot.idle)
			latch = slot.latch;
	}
	LWLockRelease(g_shared->lock);
	if (latch != nullptr)
		SetLatch(latch);
	return latch != nullptr;
}

} // namespace reportstore::pg
