#include "worker/upload_thread.hpp"

#include "pg/guard.hpp"
#include "pg/s3_session.hpp"
#include "pg/settings.hpp"

namespace reportstore::pg {

namespace {

s3::UploadPipeline *g_active = nullptr;

void StopAtAbort(XactEvent event, void *arg) {
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		StopUploadThread();
}

void StopAtSubAbort(SubXactEvent event, SubTransactionId sub, SubTransactionId parent, void *arg) {
	if (event == SUBXACT_EVENT_ABORT_SUB)
		StopUploadThread();
}

} // namespace

s3::UploadPipeline *StartUploadThread(const s3::UploadPipeline::Options &options, CapturedError *error) {
	static bool callbacks = false;
	if (!callbacks) {
		RegisterXactCallback(StopAtAbort, nullptr);
		RegisterSubXactCallback(StopAtSubAbort, nullptr);
		callbacks = true;
	}
	StopUploadThread();
	PrepareS3Session();
	const Settings &settings = g_settings;
	// ProcessClient obtains temporary credentials (or refreshes them): it
	// throws when they cannot be had.
	if (!TryCore([&] { g_active = new s3::UploadPipeline(ProcessClient(settings), options); }, error))
		return nullptr;
	return g_active;
}

void StopUploadThread() noexcept {
	s3::UploadPipeline *pipeline = g_active;
	g_active = nullptr;
	try {
		delete pipeline; // stops the transfers, joins the thread
	} catch (...) {
	}
}

} // namespace reportstore::pg
