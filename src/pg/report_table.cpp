#include "pg/report_table.hpp"

#include <cstring>

#include "pg/spi_plans.hpp"

extern "C" {
#include "utils/uuid.h"
}

namespace reportstore::pg {

namespace {

// reportstore's own minio_path write of the statement in progress.
struct OwnWrite {
	bool active;
	pg_uuid_t report_id;
	char path[600];
};
OwnWrite g_own_write = {false, {}, ""};

void RaiseUnknownReport(const char *report_id) {
	ereport(ERROR, (errcode(ERRCODE_NO_DATA_FOUND), errmsg("report %s does not exist", report_id),
	                errhint("Check the report_id, and that you are allowed to see this row.")));
}

char *CopyText(int column, MemoryContext into) {
	bool isnull;
	Datum value = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, column, &isnull);
	if (isnull)
		return nullptr;
	MemoryContext old = MemoryContextSwitchTo(into);
	char *copy = TextDatumGetCString(value);
	MemoryContextSwitchTo(old);
	return copy;
}

char *CopyFormat(int column, MemoryContext into) {
	bool isnull;
	Datum value = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, column, &isnull);
	if (isnull)
		return nullptr;
	MemoryContext old = MemoryContextSwitchTo(into);
	char *name = FormatName(value, SPI_gettypeid(SPI_tuptable->tupdesc, column));
	MemoryContextSwitchTo(old);
	return name;
}

struct varlena *CopyDetoasted(int column, MemoryContext into) {
	bool isnull;
	Datum value = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, column, &isnull);
	if (isnull)
		return nullptr;
	MemoryContext old = MemoryContextSwitchTo(into);
	struct varlena *copy = PG_DETOAST_DATUM_COPY(value);
	MemoryContextSwitchTo(old);
	return copy;
}

} // namespace

char *FormatName(Datum value, Oid type) {
	Oid output;
	bool varlena;
	getTypeOutputInfo(type, &output, &varlena);
	char *name = OidOutputFunctionCall(output, value);
	for (char *c = name; *c; c++)
		if (*c >= 'A' && *c <= 'Z')
			*c = static_cast<char>(*c - 'A' + 'a');
	return name;
}

void LockReportRow(const ReportTable &table, Datum report_uuid, const char *report_id, ReportRow *row,
                   MemoryContext into) {
	char *sql = psprintf("SELECT r.format, r.report_data, r.minio_path, r.xmin FROM %s r "
	                     "WHERE r.report_id OPERATOR(pg_catalog.=) $1 FOR UPDATE OF r",
	                     table.qualified_name);
	Oid types[1] = {UUIDOID};
	Datum values[1] = {report_uuid};
	RunKeptPlan(sql, 1, types, values, nullptr, false, SPI_OK_SELECT);
	if (SPI_processed == 0)
		RaiseUnknownReport(report_id);
	row->format = CopyFormat(1, into);
	row->report_data = CopyDetoasted(2, into);
	row->minio_path = CopyText(3, into);
	bool isnull;
	Datum xmin = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4, &isnull);
	row->changed_in_this_transaction = !isnull && TransactionIdIsCurrentTransactionId(DatumGetTransactionId(xmin));
}

void ReadReportRow(const ReportTable &table, Datum report_uuid, const char *report_id, ReportRow *row,
                   MemoryContext into) {
	char *sql = psprintf("SELECT r.report_data, r.minio_path, r.format FROM %s r "
	                     "WHERE r.report_id OPERATOR(pg_catalog.=) $1",
	                     table.qualified_name);
	Oid types[1] = {UUIDOID};
	Datum values[1] = {report_uuid};
	RunKeptPlan(sql, 1, types, values, nullptr, true, SPI_OK_SELECT);
	if (SPI_processed == 0)
		RaiseUnknownReport(report_id);
	row->changed_in_this_transaction = false;
	row->report_data = CopyDetoasted(1, into);
	row->minio_path = CopyText(2, into);
	row->format = CopyFormat(3, into);
}

void RecordOffload(const ReportTable &table, Datum report_uuid, const char *minio_path, bool keep_report_data) {
	char *sql = psprintf("UPDATE %s r SET minio_path = $2, updated_at = pg_catalog.now()%s "
	                     "WHERE r.report_id OPERATOR(pg_catalog.=) $1",
	                     table.qualified_name, keep_report_data ? "" : ", report_data = NULL");
	Oid types[2] = {UUIDOID, TEXTOID};
	Datum values[2] = {report_uuid, CStringGetTextDatum(minio_path)};
	g_own_write.active = true;
	std::memcpy(&g_own_write.report_id, DatumGetUUIDP(report_uuid), sizeof(pg_uuid_t));
	strlcpy(g_own_write.path, minio_path, sizeof(g_own_write.path));
	PG_TRY();
	{
		RunKeptPlan(sql, 2, types, values, nullptr, false, SPI_OK_UPDATE);
	}
	PG_FINALLY();
	{
		g_own_write.active = false;
	}
	PG_END_TRY();
	if (SPI_processed != 1)
		ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR), errmsg("could not record the offload of a report"),
		                errdetail("The UPDATE of %s changed %lu rows instead of 1.", table.qualified_name,
		                          static_cast<unsigned long>(SPI_processed))));
}

bool IsOwnOffloadWrite(Datum report_uuid, const char *path) {
	return g_own_write.active &&
	       std::memcmp(&g_own_write.report_id, DatumGetUUIDP(report_uuid), sizeof(pg_uuid_t)) == 0 &&
	       std::strcmp(g_own_write.path, path) == 0;
}

} // namespace reportstore::pg
