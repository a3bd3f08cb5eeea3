// Shared memory: the worker's control block, cumulative counters and a ring
// of recent uploads for rates and latency percentiles.
//
// Locking: `lock` (a named LWLock) protects the control fields, the last
// error and the ring. Counters are atomics and need no lock. Only plain data
// lives here: never a pointer to process-local memory such as a curl handle.
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

constexpr int kUploadRingSize = 8192;
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

struct SharedState {
	LWLock *lock;
	// Control (under lock).
	pid_t worker_pid;
	Latch *worker_latch;
	WorkerState state;
	bool paused;
	char state_detail[256];
	char last_error[512];
	TimestampTz last_error_at;
	TimestampTz backoff_until;
	TimestampTz last_batch_at;
	TimestampTz stats_reset;
	// Counters (atomics).
	pg_atomic_uint64 counters[kCounterCount];
	// Long operations (under lock).
	ProgressSlot progress[kProgressSlots];
	// Recent uploads (under lock).
	int ring_next;
	int ring_count;
	UploadSample ring[kUploadRingSize];
};

// Null when the library was not preloaded (then nothing is counted and the
// worker does not exist).
SharedState *Shared();

void RequestSharedState(); // from _PG_init, via shmem_request_hook
void InstallSharedStateHooks();

void CountAdd(Counter counter, uint64 value);
void RecordUpload(uint64 bytes, double seconds);
void SetWorkerState(WorkerState state, const char *detail);
void SetLastError(const char *message);
void WakeWorker();

// Wakes the worker when the current transaction commits (at most once per
// transaction). Called from the reports trigger.
void WakeWorkerAtCommit();

} // namespace reportstore::pg
