#include "pg/shared_state.hpp"

#include <cerrno>
#include <csignal>
#include <cstring>

extern "C" {
#include "access/xact.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "storage/shmem.h"
}

namespace reportstore::pg {

namespace {

SharedState *g_shared = nullptr;
shmem_request_hook_type g_prev_shmem_request = nullptr;
shmem_startup_hook_type g_prev_shmem_startup = nullptr;
bool g_wake_registered = false; // this transaction already asked for a wake

constexpr const char *kTrancheName = "reportstore";

void ShmemRequest(void) {
	if (g_prev_shmem_request)
		g_prev_shmem_request();
	RequestAddinShmemSpace(MAXALIGN(sizeof(SharedState)));
	RequestNamedLWLockTranche(kTrancheName, 1);
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
		g_shared->state = WorkerState::kStopped;
		g_shared->stats_reset = GetCurrentTimestamp();
		for (int i = 0; i < kCounterCount; i++)
			pg_atomic_init_u64(&g_shared->counters[i], 0);
	}
	LWLockRelease(AddinShmemInitLock);
}

void WakeAtCommitCallback(XactEvent event, void *arg) {
	switch (event) {
	case XACT_EVENT_COMMIT:
	case XACT_EVENT_PARALLEL_COMMIT:
		if (g_wake_registered)
			WakeWorker();
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

void RequestSharedState() {
	g_prev_shmem_request = shmem_request_hook;
	shmem_request_hook = ShmemRequest;
}

void InstallSharedStateHooks() {
	g_prev_shmem_startup = shmem_startup_hook;
	shmem_startup_hook = ShmemStartup;
}

void CountAdd(Counter counter, uint64 value) {
	if (g_shared != nullptr)
		pg_atomic_fetch_add_u64(&g_shared->counters[counter], value);
}

void RecordUpload(uint64 bytes, double seconds) {
	CountAdd(kUploads, 1);
	CountAdd(kUploadBytes, bytes);
	if (g_shared == nullptr)
		return;
	LWLockAcquire(g_shared->lock, LW_EXCLUSIVE);
	UploadSample &sample = g_shared->ring[g_shared->ring_next];
	sample.at = GetCurrentTimestamp();
	sample.bytes = bytes;
	double us = seconds * 1e6;
	sample.latency_us = us > 4e9 ? 4000000000u : static_cast<uint32>(us);
	g_shared->ring_next = (g_shared->ring_next + 1) % kUploadRingSize;
	if (g_shared->ring_count < kUploadRingSize)
		g_shared->ring_count++;
	LWLockRelease(g_shared->lock);
}

void SetWorkerState(WorkerState state, const char *detail) {
	if (g_shared == nullptr)
		return;
	LWLockAcquire(g_shared->lock, LW_EXCLUSIVE);
	g_shared->state = state;
	strlcpy(g_shared->state_detail, detail ? detail : "", sizeof(g_shared->state_detail));
	LWLockRelease(g_shared->lock);
}

void SetLastError(const char *message) {
	if (g_shared == nullptr)
		return;
	LWLockAcquire(g_shared->lock, LW_EXCLUSIVE);
	strlcpy(g_shared->last_error, message ? message : "", sizeof(g_shared->last_error));
	g_shared->last_error_at = GetCurrentTimestamp();
	LWLockRelease(g_shared->lock);
}

void WakeWorker() {
	if (g_shared == nullptr)
		return;
	LWLockAcquire(g_shared->lock, LW_SHARED);
	Latch *latch = g_shared->worker_latch;
	if (latch != nullptr)
		SetLatch(latch);
	LWLockRelease(g_shared->lock);
}

void WakeWorkerAtCommit() {
	static bool callback_registered = false;
	if (!callback_registered) {
		RegisterXactCallback(WakeAtCommitCallback, nullptr);
		callback_registered = true;
	}
	g_wake_registered = true;
}

} // namespace reportstore::pg
