// Prepared SPI plans kept for the life of the process, so that statements
// run for every report (row locks, offload records, catalog updates) are
// planned once, not per call. PostgreSQL's plan cache invalidates them when
// the tables change. PostgreSQL zone, inside SPI.
#pragma once

#include "pg/pg_prelude.hpp"

namespace reportstore::pg {

// The plan of sql (same text, same argument types), prepared on first use.
SPIPlanPtr KeptPlan(const char *sql, int nargs, Oid *types);

// SPI_execute_plan of KeptPlan(sql); raises an ERROR unless it returns expected_rc.
void RunKeptPlan(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls, bool read_only,
                 int expected_rc);

// Array arguments of n uuid / text datums (pass-by-reference values).
Datum UuidArray(const Datum *uuids, int n);
Datum TextArray(const Datum *texts, int n);

} // namespace reportstore::pg
