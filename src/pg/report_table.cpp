#include "pg/report_table.hpp"

#include <cstring>

#include "pg/spi_plans.hpp"

extern "C" {
#include "utils/array.h"
#include "utils/datum.h"
#include "utils/uuid.h"
}

namespace reportstore::pg {

namespace {

// reportstore's own minio_path writes of the statement in progress, sorted
// by report id for the trigger's lookups.
struct OwnWrite {
	pg_uuid_t report_id;
	const char *path;
};
OwnWrite *g_own_writes = nullptr;
int g_own_write_count = 0;

int CompareOwnWrites(const void *a, const void *b) {
	return std::memcmp(&static_cast<const OwnWrite *>(a)->report_id, &static_cast<const OwnWrite *>(b)->report_id,
	                   UUID_LEN);
}

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

int ReadReportRows(const ReportTable &table, Datum ids, ListedReport **rows, MemoryContext into) {
	char *sql = psprintf("SELECT r.report_id, r.format, r.minio_path, r.report_data "
	                     "FROM (SELECT i.id, pg_catalog.min(i.n) AS n "
	                     "      FROM pg_catalog.unnest($1::pg_catalog.uuid[]) WITH ORDINALITY AS i(id, n) "
	                     "      GROUP BY i.id) i "
	                     "JOIN %s r ON r.report_id OPERATOR(pg_catalog.=) i.id "
	                     "ORDER BY i.n",
	                     table.qualified_name);
	Oid types[1] = {UUIDARRAYOID};
	Datum values[1] = {ids};
	RunKeptPlan(sql, 1, types, values, nullptr, true, SPI_OK_SELECT);
	const int n = static_cast<int>(SPI_processed);
	auto *out = static_cast<ListedReport *>(MemoryContextAllocZero(into, sizeof(ListedReport) * Max(n, 1)));
	TupleDesc desc = SPI_tuptable->tupdesc;
	MemoryContext old = MemoryContextSwitchTo(into);
	for (int i = 0; i < n; i++) {
		HeapTuple tuple = SPI_tuptable->vals[i];
		bool isnull;
		out[i].report_uuid = datumCopy(SPI_getbinval(tuple, desc, 1, &isnull), false, UUID_LEN);
		out[i].report_id = DatumGetCString(DirectFunctionCall1(uuid_out, out[i].report_uuid));
		Datum format = SPI_getbinval(tuple, desc, 2, &isnull);
		out[i].format = isnull ? nullptr : FormatName(format, SPI_gettypeid(desc, 2));
		Datum path = SPI_getbinval(tuple, desc, 3, &isnull);
		out[i].minio_path = isnull ? nullptr : TextDatumGetCString(path);
		Datum data = SPI_getbinval(tuple, desc, 4, &isnull);
		out[i].has_data = !isnull;
		out[i].report_data = isnull ? (Datum)0 : datumCopy(data, false, -1);
	}
	MemoryContextSwitchTo(old);
	*rows = out;
	return n;
}

void RecordOffloads(const ReportTable &table, const Datum *report_uuids, const char *const *minio_paths, int n,
                    bool keep_report_data) {
	if (n == 0)
		return;
	char *sql =
	    psprintf("UPDATE %s r SET minio_path = v.path, updated_at = pg_catalog.now()%s "
	             "FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.uuid[]), pg_catalog.unnest($2::pg_catalog.text[])) "
	             "AS v(id, path) "
	             "WHERE r.report_id OPERATOR(pg_catalog.=) v.id",
	             table.qualified_name, keep_report_data ? "" : ", report_data = NULL");
	auto *writes = static_cast<OwnWrite *>(palloc(sizeof(OwnWrite) * n));
	Datum *paths = static_cast<Datum *>(palloc(sizeof(Datum) * n));
	for (int i = 0; i < n; i++) {
		std::memcpy(&writes[i].report_id, DatumGetUUIDP(report_uuids[i]), UUID_LEN);
		writes[i].path = minio_paths[i];
		paths[i] = CStringGetTextDatum(minio_paths[i]);
	}
	qsort(writes, n, sizeof(OwnWrite), CompareOwnWrites);
	Oid types[2] = {UUIDARRAYOID, TEXTARRAYOID};
	Datum values[2] = {UuidArray(report_uuids, n), TextArray(paths, n)};
	g_own_writes = writes;
	g_own_write_count = n;
	PG_TRY();
	{ RunKeptPlan(sql, 2, types, values, nullptr, false, SPI_OK_UPDATE); }
	PG_FINALLY();
	{
		g_own_writes = nullptr;
		g_own_write_count = 0;
	}
	PG_END_TRY();
	if (SPI_processed != static_cast<uint64>(n))
		ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR), errmsg("could not record the offload of %d reports", n),
		                errdetail("The UPDATE of %s changed %lu rows instead of %d.", table.qualified_name,
		                          static_cast<unsigned long>(SPI_processed), n)));
}

bool IsOwnOffloadWrite(Datum report_uuid, const char *path) {
	if (g_own_write_count == 0)
		return false;
	OwnWrite key;
	std::memcpy(&key.report_id, DatumGetUUIDP(report_uuid), UUID_LEN);
	auto *found = static_cast<const OwnWrite *>(
	    bsearch(&key, g_own_writes, g_own_write_count, sizeof(OwnWrite), CompareOwnWrites));
	return found != nullptr && std::strcmp(found->path, path) == 0;
}

} // namespace reportstore::pg
