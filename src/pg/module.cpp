// Module entry point: configuration parameters and, when preloaded, shared
// memory, the hooks and the launcher of the workers.
#include "pg/pg_prelude.hpp"

#include "pg/credentials.hpp"
#include "pg/settings.hpp"
#include "pg/shared_state.hpp"

#include "worker/launcher.hpp"

namespace reportstore::pg {
void InstallHooks(); // hooks.cpp
} // namespace reportstore::pg

extern "C" {
PG_MODULE_MAGIC;

void _PG_init(void);
}

void _PG_init(void) {
	// pg_upgrade loads libraries in binary-upgrade mode; start nothing then.
	if (IsBinaryUpgrade)
		return;
	reportstore::pg::DefineSettings();
	MarkGUCPrefixReserved("reportstore");
	// Shared memory and the worker need shared_preload_libraries; without it
	// report_offload() and report_fetch() still work, uncounted.
	if (!process_shared_preload_libraries_in_progress)
		return;
	reportstore::pg::RequestSharedState();
	reportstore::pg::InstallSharedStateHooks();
	reportstore::pg::RequestCredentialCache();
	reportstore::pg::InstallCredentialCacheHooks();
	reportstore::pg::InstallHooks();
	reportstore::pg::RegisterLauncher();
}
