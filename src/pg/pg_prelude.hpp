// The one place PostgreSQL's C headers enter C++ code. Include it first in
// every src/pg file; never include it from src/core.
#pragma once

extern "C" {
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
}

// Lets src/core headers assert they are compiled without PostgreSQL.
#define REPORTSTORE_PG_ZONE 1
