// Shared memory: the launcher, the worker slots, per-database state
// (pause, last error, counters, a ring of recent uploads for rates and
// latency percentiles) and the progress of long DBA operations.
//
// Locking: `lock` (a named LWLock) protects everything but the counters,
// which are atomics. Only plain data lives here, and latches, which live in
// PostgreSQL's shared PGPROC array: never a pointer to process-local memory
// such as a curl handle or a BackgroundWorkerHandle (the launcher keeps
// those).
#pragma once

#include "pg/pg_prelude.hpp"

extern "C" {
#include "port/atomics.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "utils/timestamp.h"
}

namespace reportstore::pg {

enum class WorkerState : int {
	kStopped = 0, // not running (or not preloaded)
	kStarting,    // connecting, checking the extension and settings
	kWaiting,     // extension absent, endpoint unset, standby, or disabled: nothing to do
	kIdle,        // nothing left to offload
	kRunning,     // a batch is in flight
	kPaused,      // paused by reportstore.pause()
	kBackingOff,  // systemic error: waiting before the next try
};
const char *WorkerStateName(WorkerState state);

enum Counter {
	kUploads,
	kUploadBytes,
	kUploadFailuresTransient,
	kUploadFailuresSystemic,
	kUploadFailuresIntegrity,
	kUploadFailuresOther,
	kRetries,
	kFetches,
	kFetchBytes,
	kFetchFailures,
	kCounterCount
};

struct UploadSample {
	TimestampTz at;
	uint64 bytes;
	uint32 latency_us;
};

constexpr int kMaxWorkers = 64;       // upper bound of reportstore.max_workers
constexpr int kMaxDatabases = 32;     // databases with state at the same time
constexpr int kUploadRingSize = 4096; // per database
constexpr int kProgressSlots = 32;

// One long DBA operation (verify, orphans, recall, run_once) in progress.
struct ProgressSlot {
	pid_t pid; // 0 = free
	char command[32];
	TimestampTz started;
	TimestampTz updated;
	int64 done;
	int64 total; // -1 = unknown
	int64 found; // problems, orphans...
};

// A worker process offloading one database, or a free slot (database invalid).
struct WorkerSlot {
	Oid database; // assigned by the launcher; InvalidOid = free
	pid_t pid;    // 0 until the process runs, and again once it has ended
	bool exited;  // the process ran and ended: the launcher frees the slot
	Latch *latch; // its PGPROC latch (shared memory)
	WorkerState state;
	bool idle; // waiting for work: the one to wake for a new report
	char detail[256];
	TimestampTz last_batch_at;
};

// A database served by workers, or counted by backends.
struct DatabaseState {
	Oid database; // InvalidOid = free entry
	bool paused;
	bool wake_requested;     // a commit found no running worker: the launcher starts one
	TimestampTz retry_after; // the launcher starts no worker before (no extension, being dropped)
	char note[256];          // why the launcher does not start a worker
	char last_error[512];
	TimestampTz last_error_at;
	TimestampTz stats_reset;
	pg_atomic_uint64 counters[kCounterCount];
	int ring_next;
	int ring_count;
	UploadSample ring[kUploadRingSize];
};

struct SharedState {
	LWLock *lock;
	pid_t launcher_pid;
	Latch *launcher_latch;
	int wake_cursor;        // round robin over the idle workers of a database
	TimestampTz rate_clock; // reportstore.max_rate: when the bytes uploaded so far are "paid"
	WorkerSlot workers[kMaxWorkers];
	DatabaseState databases[kMaxDatabases];
	ProgressSlot progress[kProgressSlots];
};

// Null when the library was not preloaded (then nothing is counted and no
// worker exists).
SharedState *Shared();

// Shared(), or an ERROR saying that the library must be preloaded.
SharedState *RequireShared();

void RequestSharedState(); // from _PG_init, via shmem_request_hook
void InstallSharedStateHooks();

// The entry of a database, created when asked and there is room; with the
// lock held (exclusive to create). nullptr when absent or full.
DatabaseState *FindDatabase(SharedState *shared, Oid database, bool create);

// Counters and samples of the current database.
void CountAdd(Counter counter, uint64 value);
void RecordUpload(uint64 bytes, double seconds);
void SetLastError(const char *message);

// The worker slot of this process (workers only; -1 elsewhere).
extern int g_worker_slot;
void SetWorkerState(WorkerState state, const char *detail);

// Wakes one idle worker of the database, or, when none runs, the launcher
// (which starts one). all = every worker of the database (reportstore.wake()).
// Returns whether a worker of the database runs.
bool WakeDatabaseWorkers(Oid database, bool all);

// A worker with more work than one batch wakes one idle worker of its
// database (not itself), if there is one.
bool WakeIdleHelper(Oid database);

} // namespace reportstore::pg
