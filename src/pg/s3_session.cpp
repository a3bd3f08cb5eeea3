#include "pg/s3_session.hpp"

#include "pg/credentials.hpp"
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
	       a.credentials_provider == b.credentials_provider &&
	       a.timeouts.connect_ms == b.timeouts.connect_ms && a.timeouts.request_ms == b.timeouts.request_ms &&
	       a.timeouts.per_mib_ms == b.timeouts.per_mib_ms && a.multipart_threshold == b.multipart_threshold &&
	       a.part_size == b.part_size && a.part_concurrency == b.part_concurrency;
}

void FreeEngine(int code, Datum arg) {
	delete g_client;
	g_client = nullptr;
	delete g_engine;
	g_engine = nullptr;
}

} // namespace

void PrepareS3Session() {
	PrepareCredentials();
	if (!g_exit_callback_registered) {
		on_proc_exit(FreeEngine, (Datum)0);
		g_exit_callback_registered = true;
	}
	// Say so once each time this process starts using https without
	// certificate verification.
	static bool warned = false;
	bool insecure = !g_settings.verify_tls && g_settings.endpoint != nullptr &&
	                pg_strncasecmp(g_settings.endpoint, "https:", 6) == 0;
	if (insecure && !warned)
		ereport(WARNING, (errcode(ERRCODE_WARNING), errmsg("TLS certificate verification is off for the S3 endpoint"),
		                  errdetail("reportstore.verify_tls = off: anyone on the network path can impersonate the "
		                            "object store and read or alter reports."),
		                  errhint("Set reportstore.ca_file to the CA that signed the endpoint's certificate and turn "
		                          "reportstore.verify_tls back on.")));
	warned = insecure;
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
	// Temporary credentials: the client signs each request with the ones
	// current at signing time. Asking now obtains them (or refreshes them
	// when they fall due) before any request, so a failure stops the
	// operation before it starts.
	config.credentials_provider = ProcessCredentials(settings);
	if (config.credentials_provider)
		config.credentials_provider->Current();
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
