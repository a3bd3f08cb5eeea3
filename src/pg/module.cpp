// Module entry point: configuration parameters and, when preloaded, shared
// memory and the background worker.
#include "pg/pg_prelude.hpp"

#include "pg/settings.hpp"

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
}
