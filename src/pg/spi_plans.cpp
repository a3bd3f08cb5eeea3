#include "pg/spi_plans.hpp"

#include <cstring>

extern "C" {
#include "utils/array.h"
#include "utils/uuid.h"
}

namespace reportstore::pg {

namespace {

constexpr int kMaxKeptPlans = 64;

struct KeptPlanEntry {
	char *sql;
	SPIPlanPtr plan;
};

KeptPlanEntry g_plans[kMaxKeptPlans];
int g_plan_count = 0;

} // namespace

SPIPlanPtr KeptPlan(const char *sql, int nargs, Oid *types) {
	for (int i = 0; i < g_plan_count; i++)
		if (std::strcmp(g_plans[i].sql, sql) == 0)
			return g_plans[i].plan;
	SPIPlanPtr plan = SPI_prepare(sql, nargs, types);
	if (plan == nullptr)
		ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR),
		                errmsg("could not prepare a reportstore query: %s", SPI_result_code_string(SPI_result)),
		                errdetail_internal("%s", sql)));
	// Past the limit (many report tables?) plans are simply not kept.
	if (g_plan_count < kMaxKeptPlans && SPI_keepplan(plan) == 0) {
		g_plans[g_plan_count].sql = MemoryContextStrdup(TopMemoryContext, sql);
		g_plans[g_plan_count].plan = plan;
		g_plan_count++;
	}
	return plan;
}

void RunKeptPlan(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls, bool read_only,
                 int expected_rc) {
	int rc = SPI_execute_plan(KeptPlan(sql, nargs, types), values, nulls, read_only, 0);
	if (rc != expected_rc)
		ereport(ERROR,
		        (errcode(ERRCODE_INTERNAL_ERROR), errmsg("reportstore query failed: %s", SPI_result_code_string(rc)),
		         errdetail_internal("%s", sql)));
}

Datum UuidArray(const Datum *uuids, int n) {
	return PointerGetDatum(construct_array(const_cast<Datum *>(uuids), n, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR));
}

Datum TextArray(const Datum *texts, int n) {
	return PointerGetDatum(construct_array(const_cast<Datum *>(texts), n, TEXTOID, -1, false, TYPALIGN_INT));
}

} // namespace reportstore::pg
