#include "pg/report_table.hpp"

#include "pg/spi_plans.hpp"

extern "C" {
#include "utils/fmgrprotos.h"
}

namespace reportstore::pg {

namespace {


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

struct varlena *CopyDetoasted(int column, MemoryContext into) {
	bool isnull;
	Datum value = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, column, &isnull);
	if (isnull)
		return nullptr;
	MemoryContext old = MemoryContextSwitchTo(into);
	struct varlena *raw = reinterpret_cast<struct varlena *>(DatumGetPointer(value));
	struct varlena *copy = PG_DETOAST_DATUM_COPY(PointerGetDatum(raw));
	MemoryContextSwitchTo(old);
	return copy;
}

} // namespace

ReportTable OpenReportTable(FunctionCallInfo fcinfo) {
	Oid namespace_oid = get_func_namespace(fcinfo->flinfo->fn_oid);
	char *namespace_name = get_namespace_name(namespace_oid);
	if (namespace_name == nullptr)
		ereport(ERROR, (errcode(ERRCODE_UNDEFINED_SCHEMA), errmsg("schema of reportstore functions not found")));
	ReportTable table;
	table.qualified_name = quote_qualified_identifier(namespace_name, "reports");
	table.has_delete_queue = false;
	return table;
}

ReportTable ExtensionReportTable(MemoryContext into) {
	ReportTable table = {nullptr, false};
	// The library may be newer than the installed SQL (before ALTER EXTENSION
	// UPDATE): features check for their objects.
	int rc = SPI_execute("SELECT n.nspname, to_regclass('reportstore.delete_queue') IS NOT NULL "
	                     "FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
	                     "WHERE e.extname = 'reportstore'",
	                     true, 1);
	if (rc == SPI_OK_SELECT && SPI_processed == 1) {
		char *nsp = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		bool isnull;
		table.has_delete_queue = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
		MemoryContext old = MemoryContextSwitchTo(into);
		table.qualified_name = pstrdup(quote_qualified_identifier(nsp, "reports"));
		MemoryContextSwitchTo(old);
	}
	return table;
}

ReportTable RequireExtensionReportTable() {
	SPI_connect();
	ReportTable table = ExtensionReportTable(TopTransactionContext);
	SPI_finish();
	if (table.qualified_name == nullptr)
		ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT), errmsg("extension reportstore is not installed")));
	return table;
}

void LockReportRow(const ReportTable &table, Datum report_uuid, const char *report_id, ReportRow *row,
                   MemoryContext into) {
	char *sql =
	    psprintf("SELECT lower(format::text), report_data, minio_path, xmin FROM %s WHERE report_id = $1 FOR UPDATE",
	             table.qualified_name);
	Oid types[1] = {UUIDOID};
	Datum values[1] = {report_uuid};
	RunKeptPlan(sql, 1, types, values, nullptr, false, SPI_OK_SELECT);
	if (SPI_processed == 0)
		RaiseUnknownReport(report_id);
	row->format = CopyText(1, into);
	row->report_data = CopyDetoasted(2, into);
	row->minio_path = CopyText(3, into);
	bool isnull;
	Datum xmin = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4, &isnull);
	row->changed_in_this_transaction = !isnull && TransactionIdIsCurrentTransactionId(DatumGetTransactionId(xmin));
}

void ReadReportRow(const ReportTable &table, Datum report_uuid, const char *report_id, ReportRow *row,
                   MemoryContext into) {
	char *sql = psprintf("SELECT report_data, minio_path FROM %s WHERE report_id = $1", table.qualified_name);
	Oid types[1] = {UUIDOID};
	Datum values[1] = {report_uuid};
	RunKeptPlan(sql, 1, types, values, nullptr, true, SPI_OK_SELECT);
	if (SPI_processed == 0)
		RaiseUnknownReport(report_id);
	row->format = nullptr;
	row->changed_in_this_transaction = false;
	row->report_data = CopyDetoasted(1, into);
	row->minio_path = CopyText(2, into);
}

void RecordOffload(const ReportTable &table, Datum report_uuid, const char *minio_path, bool keep_report_data) {
	char *sql = psprintf("UPDATE %s SET minio_path = $2, updated_at = now()%s WHERE report_id = $1",
	                     table.qualified_name, keep_report_data ? "" : ", report_data = NULL");
	Oid types[2] = {UUIDOID, TEXTOID};
	Datum values[2] = {report_uuid, CStringGetTextDatum(minio_path)};
	RunKeptPlan(sql, 2, types, values, nullptr, false, SPI_OK_UPDATE);
	if (SPI_processed != 1)
		ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR), errmsg("could not record the offload of a report"),
		                errdetail("The UPDATE of %s changed %lu rows instead of 1.", table.qualified_name,
		                          static_cast<unsigned long>(SPI_processed))));
}

} // namespace reportstore::pg
