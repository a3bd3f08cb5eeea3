// The reportstore_guard trigger (reports_guard.cpp). PostgreSQL zone.
#pragma once

#include "pg/pg_prelude.hpp"

namespace reportstore::pg {

// Before DROP EXTENSION reportstore: drops the reportstore_guard triggers
// (a trigger cannot be an extension member and would make the DROP fail).
// If the DROP fails, the transaction rolls back and the triggers stay.
void DropGuardTriggers();

} // namespace reportstore::pg
