#include "pg/progress.hpp"

#include <cerrno>
#include <csignal>

#include "pg/shared_state.hpp"

extern "C" {
#include "pgstat.h"
#include "storage/ipc.h"
}

namespace reportstore::pg {

namespace {

constexpr long kNoticeEveryMs = 5000;

ProgressSlot *g_my_progress = nullptr;

void ReleaseAtExit(int code, Datum arg) {
	ProgressEnd();
}

// An ERROR ends the operation without reaching its ProgressEnd().
void ReleaseAtAbort(XactEvent event, void *arg) {
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		ProgressEnd();
}

void ReleaseAtSubAbort(SubXactEvent event, SubTransactionId sub, SubTransactionId parent, void *arg) {
	if (event == SUBXACT_EVENT_ABORT_SUB)
		ProgressEnd();
}

} // namespace

void ProgressBegin(const char *command, int64 total) {
	SharedState *shared = Shared();
	if (shared == nullptr)
		return;
	static bool callbacks = false;
	if (!callbacks) {
		before_shmem_exit(ReleaseAtExit, (Datum)0);
		RegisterXactCallback(ReleaseAtAbort, nullptr);
		RegisterSubXactCallback(ReleaseAtSubAbort, nullptr);
		callbacks = true;
	}
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	if (g_my_progress == nullptr) {
		for (int i = 0; i < kProgressSlots; i++) {
			ProgressSlot &slot = shared->progress[i];
			// Free, or left behind by a backend that ended abruptly.
			if (slot.pid == 0 || slot.pid == MyProcPid || (kill(slot.pid, 0) != 0 && errno == ESRCH)) {
				g_my_progress = &slot;
				break;
			}
		}
	}
	if (g_my_progress != nullptr) {
		g_my_progress->pid = MyProcPid;
		strlcpy(g_my_progress->command, command, sizeof(g_my_progress->command));
		g_my_progress->started = g_my_progress->updated = GetCurrentTimestamp();
		g_my_progress->done = 0;
		g_my_progress->total = total;
		g_my_progress->found = 0;
	}
	LWLockRelease(shared->lock);
}

void ProgressUpdate(int64 done, int64 total, int64 found) {
	SharedState *shared = Shared();
	if (shared == nullptr || g_my_progress == nullptr)
		return;
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	g_my_progress->done = done;
	g_my_progress->total = total;
	g_my_progress->found = found;
	g_my_progress->updated = GetCurrentTimestamp();
	LWLockRelease(shared->lock);
}

void ProgressEnd() {
	SharedState *shared = Shared();
	if (shared == nullptr || g_my_progress == nullptr)
		return;
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	g_my_progress->pid = 0;
	LWLockRelease(shared->lock);
	g_my_progress = nullptr;
}

void ProgressStart(Progress *p, const char *what, int64 total) {
	p->what = what;
	p->started = p->last = GetCurrentTimestamp();
	ProgressBegin(what, total);
}

void ProgressTick(Progress *p, int64 done, int64 total, int64 found) {
	ProgressUpdate(done, total, found);
	TimestampTz now = GetCurrentTimestamp();
	if (TimestampDifferenceMilliseconds(p->last, now) < kNoticeEveryMs)
		return;
	p->last = now;
	double secs = TimestampDifferenceMilliseconds(p->started, now) / 1000.0;
	char *msg = total >= 0
	                ? psprintf("reportstore %s: %lld of %lld done (%.1f/s), %lld problems", p->what,
	                           static_cast<long long>(done), static_cast<long long>(total),
	                           secs > 0 ? done / secs : 0.0, static_cast<long long>(found))
	                : psprintf("reportstore %s: %lld done (%.1f/s), %lld found", p->what, static_cast<long long>(done),
	                           secs > 0 ? done / secs : 0.0, static_cast<long long>(found));
	pgstat_report_activity(STATE_RUNNING, msg);
	ereport(NOTICE, (errmsg_internal("%s", msg)));
}

} // namespace reportstore::pg
