// report_offload(uuid) and report_fetch(uuid): the application-facing API.
//
// Each runs with the caller's rights (table privileges and row-level
// security on reports apply) under the fixed search_path; reportstore's own
// tables are read and written as the extension's owner (catalog.hpp).
// Network work runs in guarded core calls, with no PostgreSQL call inside.
#include "pg/catalog.hpp"
#include "pg/guard.hpp"
#include "pg/jsonb_text.hpp"
#include "pg/object_io.hpp"
#include "pg/report_table.hpp"
#include "pg/run_as.hpp"
#include "pg/s3_session.hpp"
#include "pg/settings.hpp"
#include "pg/shared_state.hpp"

#include <cstring>
#include <string>

#include "core/s3/client.hpp"
#include "core/uri.hpp"

extern "C" {
#include "utils/uuid.h"
}

using reportstore::pg::CallCore;

namespace {

struct ReportErrorContext {
	const char *report_id;
};

void ReportErrorContextCallback(void *arg) {
	auto *ctx = static_cast<ReportErrorContext *>(arg);
	errcontext("report %s", ctx->report_id);
}

// When this transaction changed the row, the committed version of the row may
// still point at the object under the same key; overwriting it and then rolling
// back would leave that committed path naming different bytes. Refuse instead.
void RefuseToOverwriteCommittedObject(const reportstore::s3::Client &client, const reportstore::s3::PutRequest &put,
                                      const char *report_id) {
	using namespace reportstore;
	try {
		client.Head(s3::ObjectRef{put.bucket, put.key, {}}, pg::BackendInterruptProbe());
	} catch (const Error &e) {
		if (e.kind() == ErrorKind::kNotFound)
			return;
		throw;
	}
	throw Error(ErrorKind::kClient, "55000",
	            std::string("report ") + report_id + " was changed in this transaction and its object already exists",
	            "Overwriting s3://" + put.bucket + "/" + put.key +
	                " before the change commits could leave the committed row pointing at other content.",
	            "Commit the change first, then call report_offload() (the background worker offloads it "
	            "automatically).");
}

} // namespace

// report_offload(report_id uuid) RETURNS text
REPORTSTORE_FUNCTION(reportstore_report_offload) {
	using namespace reportstore;
	Datum report_uuid = PG_GETARG_DATUM(0);
	char *report_id = DatumGetCString(DirectFunctionCall1(uuid_out, report_uuid));

	if (RecoveryInProgress() || XactReadOnly)
		ereport(ERROR, (errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
		                errmsg("cannot offload report %s in a read-only transaction", report_id),
		                errhint("Call report_offload() on the primary, outside read-only transactions.")));

	const pg::ReportTable &table = pg::RequireReportTable(pg::kSchemaVersion);
	MemoryContext caller_context = CurrentMemoryContext;
	pg::RoleScope scope;
	pg::BeginCaller(table, &scope);
	pg::ReportRow row;
	// The row lock lasts until the end of the transaction; SPI is closed while
	// the upload runs.
	SPI_connect();
	pg::LockReportRow(table, report_uuid, report_id, &row, caller_context);
	SPI_finish();

	if (row.minio_path != nullptr || row.report_data == nullptr) {
		pg::EndRole(&scope);
		if (row.minio_path != nullptr)
			PG_RETURN_TEXT_P(cstring_to_text(row.minio_path)); // already offloaded: idempotent
		PG_RETURN_NULL();
	}

	ReportErrorContext errctx = {report_id};
	ErrorContextCallback errcallback = {error_context_stack, ReportErrorContextCallback, &errctx};
	error_context_stack = &errcallback;

	// One serialization of the JSONB value, interruptible, in a buffer sized
	// for it; the upload reads from it. The binary value is freed once it is
	// serialized: memory stays near the size of the text.
	Jsonb *jsonb = DatumGetJsonbP(PointerGetDatum(row.report_data));
	pg::TextBuffer body;
	pg::TextBuffer measure; // a text that may not fit is measured before any memory is taken for it
	pg::InitTextCounter(&measure, pg::kMaxReportTextBytes);
	const bool fits = !pg::TextMayExceed(VARSIZE(jsonb), pg::kMaxReportTextBytes) || pg::JsonbToText(jsonb, &measure);
	pg::InitTextBuffer(&body, fits && measure.len > 0 ? measure.len : VARSIZE(jsonb) + VARSIZE(jsonb) / 8 + 64,
	                   pg::kMaxReportTextBytes);
	body.exceeded = !fits;
	if (!fits || !pg::JsonbToText(jsonb, &body))
		ereport(ERROR,
		        (errcode(body.out_of_memory ? ERRCODE_OUT_OF_MEMORY : ERRCODE_PROGRAM_LIMIT_EXCEEDED),
		         errmsg(body.out_of_memory ? "out of memory while serializing report %s"
		                                   : "the text form of report %s is larger than 1 GB",
		                report_id),
		         body.out_of_memory ? 0 : errdetail("PostgreSQL cannot hold a text value larger than 1 GB."),
		         errhint(body.out_of_memory ? "Retry when the server has more free memory."
		                                    : "The report stays in report_data. Split or shrink it to offload it.")));
	pfree(row.report_data);
	row.report_data = nullptr;

	const pg::Settings &settings = pg::g_settings;
	pg::PrepareS3Session();
	const bool changed_here = row.changed_in_this_transaction;
	auto *uploaded = static_cast<pg::UploadedObject *>(palloc0(sizeof(pg::UploadedObject)));
	auto *compressed = pg::NewOwnedByContext<std::string>(CurrentMemoryContext);
	auto *put = pg::NewOwnedByContext<s3::PutRequest>(CurrentMemoryContext);
	char path[pg::kObjectPathSize];
	CallCore([&] {
		put->bucket = settings.bucket;
		put->key = uri::ReportObjectKey(report_id, row.format ? row.format : "");
		put->body = std::string_view(body.data, body.len);
		put->content_type = "application/json";
		pg::ApplyUploadSettings(settings, put, compressed);
		pg::CopyObjectPath(put->bucket, put->key, path);
	});
	// A pending deletion of this path (report deleted and re-created,
	// recalled...) must not reach the store after our PUT.
	SPI_connect();
	const char *cancelled[1] = {path};
	pg::CancelQueuedDeletions(table, cancelled, 1);
	SPI_finish();
	CallCore([&] {
		const s3::Client &client = pg::ProcessClient(settings);
		if (changed_here)
			RefuseToOverwriteCommittedObject(client, *put, report_id);
		s3::PutResult result = client.Put(*put, pg::BackendInterruptProbe());
		pg::FillUploadedObject(*put, result, uploaded);
	});

	SPI_connect();
	const char *paths[1] = {uploaded->path};
	const pg::UploadedObject *objects[1] = {uploaded};
	pg::RecordOffloads(table, &report_uuid, paths, 1, settings.keep_report_data);
	pg::RecordObjects(table, &report_uuid, objects, 1);
	SPI_finish();
	pg::EndRole(&scope);
	pg::RecordUpload(uploaded->size, uploaded->seconds);
	error_context_stack = errcallback.previous;
	PG_RETURN_TEXT_P(cstring_to_text(uploaded->path));
}

// report_fetch(report_id uuid) RETURNS jsonb
REPORTSTORE_FUNCTION(reportstore_report_fetch) {
	using namespace reportstore;
	Datum report_uuid = PG_GETARG_DATUM(0);
	char *report_id = DatumGetCString(DirectFunctionCall1(uuid_out, report_uuid));
	MemoryContext caller_context = CurrentMemoryContext;

	// Reads work with every schema version since 1.0 (a new library before
	// ALTER EXTENSION UPDATE).
	const pg::ReportTable &table = pg::RequireReportTable(100);
	pg::RoleScope scope;
	pg::BeginCaller(table, &scope);
	pg::ReportRow row;
	pg::ObjectRecord object;
	object.found = false;
	SPI_connect();
	pg::ReadReportRow(table, report_uuid, report_id, &row, caller_context);
	if (row.report_data == nullptr && row.minio_path != nullptr)
		pg::LookupObject(table, report_uuid, row.minio_path, &object, caller_context);
	SPI_finish();
	pg::EndRole(&scope);
	if (row.report_data != nullptr)
		PG_RETURN_POINTER(row.report_data); // still in the database
	if (row.minio_path == nullptr)
		PG_RETURN_NULL();
	CallCore([&] { (void)pg::CheckedReportLocation(report_id, row.format, row.minio_path); });
	PG_RETURN_DATUM(pg::FetchReportObject(report_id, row.minio_path, object, caller_context));
}
