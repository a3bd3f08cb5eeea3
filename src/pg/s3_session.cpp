#include "pg/s3_session.hpp"

#include "pg/guard.hpp"

extern "C" {
#include "storage/ipc.h"
}

namespace reportstore::pg {

namespace {

// A plain pointer, not a global object: no destructor may run from exit().
http::Engine *g_engine = nullptr;
bool g_exit_callback_registered = false;

void FreeEngine(int code, Datum arg) {
	delete g_engine;
	g_engine = nullptr;
}

} // namespace

void PrepareS3Session() {
	if (!g_exit_callback_registered) {
		on_proc_exit(FreeEngine, (Datum)0);
		g_exit_callback_registered = true;
	}
}

http::Engine &ProcessEngine(const Settings &settings) {
	if (g_engine == nullptr) {
		http::GlobalInit();
		g_engine = new http::Engine(BuildTlsOptions(settings));
	} else {
		g_engine->SetTls(BuildTlsOptions(settings));
	}
	return *g_engine;
}

http::InterruptProbe BackendInterruptProbe() {
	return [] { return InterruptRequested(); };
}

} // namespace reportstore::pg
