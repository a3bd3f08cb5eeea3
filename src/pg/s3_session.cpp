#include "pg/s3_session.hpp"

#include "pg/guard.hpp"

extern "C" {
#include "storage/ipc.h"
}

namespace reportstore::pg {

namespace {

// A plain pointer, not a global object: no destructor may run from exit().
http::Engine *g_engine = nullptr;
s3::Client *g_client = nullptr;
bool g_exit_callback_registered = false;

bool SameConfig(const s3::Config &a, const s3::Config &b) {
	return a.endpoint.Origin() == b.endpoint.Origin() && a.region == b.region && a.url_style == b.url_style &&
	       a.credentials.access_key_id == b.credentials.access_key_id &&
	       a.credentials.secret_access_key == b.credentials.secret_access_key &&
	       a.credentials.session_token == b.credentials.session_token &&
	       a.timeouts.connect_ms == b.timeouts.connect_ms && a.timeouts.request_ms == b.timeouts.request_ms &&
	       a.timeouts.per_mib_ms == b.timeouts.per_mib_ms;
}

void FreeEngine(int code, Datum arg) {
	delete g_client;
	g_client = nullptr;
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

const s3::Client &ProcessClient(const Settings &settings) {
	s3::Config config = BuildS3Config(settings);
	http::Engine &engine = ProcessEngine(settings);
	if (g_client == nullptr || !SameConfig(g_client->config(), config)) {
		auto *fresh = new s3::Client(std::move(config), engine);
		delete g_client;
		g_client = fresh;
	}
	return *g_client;
}

http::InterruptProbe BackendInterruptProbe() {
	return [] { return InterruptRequested(); };
}

} // namespace reportstore::pg
