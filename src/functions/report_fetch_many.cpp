// report_fetch_many(uuid[]): report_fetch for a list page, with the objects
// fetched concurrently instead of one GET after another.
//
// The rows are read once, as the caller (privileges and row-level security
// apply), in the order of the ids given; each offloaded report is verified as
// report_fetch verifies it. Results go to a tuplestore (spilled to disk past
// work_mem); at most one window of downloads and one decoded report are in
// memory at a time.
#include "pg/catalog.hpp"
#include "pg/guard.hpp"
#include "pg/object_io.hpp"
#include "pg/report_table.hpp"
#include "pg/run_as.hpp"

extern "C" {
#include "access/detoast.h"
#include "funcapi.h"
#include "utils/array.h"
}

namespace {

using namespace reportstore;

struct Emitter {
	ReturnSetInfo *rsinfo;
	const pg::ListedReport *rows;
	int n;
	int next;          // the first row not emitted yet
	const int *row_of; // fetched item -> row
	MemoryContext row_context;
};

void EmitRow(Emitter *e, int row, Datum report_data, bool isnull) {
	Datum values[2] = {e->rows[row].report_uuid, report_data};
	bool nulls[2] = {false, isnull};
	tuplestore_putvalues(e->rsinfo->setResult, e->rsinfo->setDesc, values, nulls);
}

// Rows before `until` that need no download: their report_data (detoasted
// one at a time), or NULL for a report with neither data nor object.
void EmitStoredRows(Emitter *e, int until) {
	for (; e->next < until; e->next++) {
		const pg::ListedReport &r = e->rows[e->next];
		if (!r.has_data) {
			EmitRow(e, e->next, (Datum)0, true);
			continue;
		}
		MemoryContext old = MemoryContextSwitchTo(e->row_context);
		auto *value = reinterpret_cast<struct varlena *>(DatumGetPointer(r.report_data));
		if (VARATT_IS_EXTERNAL(value))
			value = detoast_external_attr(value); // stays compressed when it was
		EmitRow(e, e->next, PointerGetDatum(value), false);
		MemoryContextSwitchTo(old);
		MemoryContextReset(e->row_context);
	}
}

void EmitFetched(int index, Datum jsonb, void *arg) {
	auto *e = static_cast<Emitter *>(arg);
	const int row = e->row_of[index];
	EmitStoredRows(e, row);
	EmitRow(e, row, jsonb, false);
	e->next = row + 1;
}

} // namespace

// report_fetch_many(report_ids uuid[]) RETURNS TABLE (report_id uuid, report_data jsonb)
REPORTSTORE_FUNCTION(reportstore_report_fetch_many) {
	Datum ids = PG_GETARG_DATUM(0);
	InitMaterializedSRF(fcinfo, 0);
	auto *rsinfo = reinterpret_cast<ReturnSetInfo *>(fcinfo->resultinfo);
	MemoryContext call_context = CurrentMemoryContext;

	// Reads work with every schema version that has this function (1.2).
	const pg::ReportTable &table = pg::RequireReportTable(100);
	pg::RoleScope scope;
	pg::BeginCaller(table, &scope);
	SPI_connect();
	pg::ListedReport *rows = nullptr;
	const int n = pg::ReadReportRows(table, ids, &rows, call_context);

	// The offloaded reports, in row order, with what reportstore.objects
	// recorded at their upload.
	auto *items = static_cast<pg::FetchItem *>(MemoryContextAllocZero(call_context, sizeof(pg::FetchItem) * Max(n, 1)));
	auto *row_of = static_cast<int *>(MemoryContextAlloc(call_context, sizeof(int) * Max(n, 1)));
	auto *uuids = static_cast<Datum *>(palloc(sizeof(Datum) * Max(n, 1)));
	auto *paths = static_cast<const char **>(palloc(sizeof(char *) * Max(n, 1)));
	auto *objects =
	    static_cast<pg::ObjectRecord *>(MemoryContextAlloc(call_context, sizeof(pg::ObjectRecord) * Max(n, 1)));
	int fetched = 0;
	for (int i = 0; i < n; i++) {
		if (rows[i].has_data || rows[i].minio_path == nullptr)
			continue;
		uuids[fetched] = rows[i].report_uuid;
		paths[fetched] = rows[i].minio_path;
		row_of[fetched++] = i;
	}
	pg::LookupObjects(table, uuids, paths, fetched, objects, call_context);
	SPI_finish();
	pg::EndRole(&scope);

	for (int k = 0; k < fetched; k++) {
		const pg::ListedReport &r = rows[row_of[k]];
		pg::CallCore([&] { (void)pg::CheckedReportLocation(r.report_id, r.format, r.minio_path); });
		items[k] = {r.report_id, r.minio_path, objects[k]};
	}

	Emitter emitter = {rsinfo, rows,
	                   n,      0,
	                   row_of, AllocSetContextCreate(call_context, "report_fetch_many row", ALLOCSET_DEFAULT_SIZES)};
	pg::FetchReportObjects(items, fetched, EmitFetched, &emitter);
	EmitStoredRows(&emitter, n);
	return (Datum)0;
}
