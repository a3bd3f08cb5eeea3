// report_offload(uuid) and report_fetch(uuid): the application-facing API.
//
// Each function is decode (PostgreSQL: arguments, SPI, detoast) -> compute (one
// guarded core call, no PostgreSQL calls) -> encode (PostgreSQL: result).
// Queries run through SPI as the calling user, so table privileges and
// row-level security on reports apply.
#include "pg/guard.hpp"
#include "pg/report_table.hpp"
#include "pg/s3_session.hpp"
#include "pg/settings.hpp"

#include <cstring>
#include <string>

#include "core/s3_client.hpp"
#include "core/uri.hpp"

extern "C" {
#include "utils/uuid.h"
}

using reportstore::pg::CallCore;

namespace {

// Downloaded bytes live in a C++ string owned by a memory-context reset
// callback, so an ERROR anywhere after the download still frees them.
struct DownloadBuffer {
	std::string bytes;
};

void FreeDownloadBuffer(void *arg) {
	delete static_cast<DownloadBuffer *>(arg);
}

DownloadBuffer *NewDownloadBuffer(MemoryContext owner) {
	auto *callback = static_cast<MemoryContextCallback *>(MemoryContextAllocZero(owner, sizeof(MemoryContextCallback)));
	DownloadBuffer *buffer = nullptr;
	CallCore([&] { buffer = new DownloadBuffer(); });
	callback->func = FreeDownloadBuffer;
	callback->arg = buffer;
	MemoryContextRegisterResetCallback(owner, callback);
	return buffer;
}

struct ReportErrorContext {
	const char *report_id;
	const char *path;
};

void ReportErrorContextCallback(void *arg) {
	auto *ctx = static_cast<ReportErrorContext *>(arg);
	if (ctx->path != nullptr)
		errcontext("report %s stored at %s", ctx->report_id, ctx->path);
	else
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
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	Datum report_uuid = PG_GETARG_DATUM(0);
	char *report_id = DatumGetCString(DirectFunctionCall1(uuid_out, report_uuid));

	if (RecoveryInProgress() || XactReadOnly)
		ereport(ERROR, (errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
		                errmsg("cannot offload report %s in a read-only transaction", report_id),
		                errhint("Call report_offload() on the primary, outside read-only transactions.")));

	MemoryContext caller_context = CurrentMemoryContext;
	pg::ReportRow row;
	pg::ReportTable table = pg::OpenReportTable(fcinfo);
	// The row lock lasts until the end of the transaction; SPI is closed while
	// the upload runs.
	SPI_connect();
	pg::LockReportRow(table, report_uuid, report_id, &row, caller_context);
	SPI_finish();

	if (row.minio_path != nullptr)
		PG_RETURN_TEXT_P(cstring_to_text(row.minio_path)); // already offloaded: idempotent
	if (row.report_data == nullptr)
		PG_RETURN_NULL();

	ReportErrorContext errctx = {report_id, nullptr};
	ErrorContextCallback errcallback = {error_context_stack, ReportErrorContextCallback, &errctx};
	error_context_stack = &errcallback;

	// One serialization of the JSONB value; the upload streams from it.
	Jsonb *jsonb = DatumGetJsonbP(PointerGetDatum(row.report_data));
	StringInfoData body;
	initStringInfo(&body);
	JsonbToCString(&body, &jsonb->root, VARSIZE(jsonb));

	const pg::Settings &settings = pg::g_settings;
	char *path = nullptr;
	std::size_t path_capacity = 0;
	pg::PrepareS3Session();
	// Room for "s3://" + bucket + "/" + key; checked again inside.
	path_capacity = 16 + std::strlen(settings.bucket) + 128;
	path = static_cast<char *>(palloc(path_capacity));
	const bool changed_here = row.changed_in_this_transaction;
	CallCore([&] {
		s3::Config config = pg::BuildS3Config(settings);
		s3::PutRequest put;
		put.bucket = settings.bucket;
		put.key = uri::ReportObjectKey(report_id, row.format);
		put.body = std::string_view(body.data, body.len);
		put.content_type = "application/json";
		s3::Client client(config, pg::ProcessEngine(settings));
		if (changed_here)
			RefuseToOverwriteCommittedObject(client, put, report_id);
		client.Put(put, pg::BackendInterruptProbe());
		std::string uri = uri::S3Location{put.bucket, put.key}.ToUri();
		if (uri.size() >= path_capacity)
			throw Error(ErrorKind::kInternal, "XX000", "object path too long");
		std::memcpy(path, uri.c_str(), uri.size() + 1);
	});
	errctx.path = path;

	SPI_connect();
	pg::RecordOffload(table, report_uuid, path, settings.keep_report_data);
	SPI_finish();
	error_context_stack = errcallback.previous;
	PG_RETURN_TEXT_P(cstring_to_text(path));
}

// report_fetch(report_id uuid) RETURNS jsonb
REPORTSTORE_FUNCTION(reportstore_report_fetch) {
	using namespace reportstore;
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	Datum report_uuid = PG_GETARG_DATUM(0);
	char *report_id = DatumGetCString(DirectFunctionCall1(uuid_out, report_uuid));
	MemoryContext caller_context = CurrentMemoryContext;

	pg::ReportRow row;
	pg::ReportTable table = pg::OpenReportTable(fcinfo);
	SPI_connect();
	pg::ReadReportRow(table, report_uuid, report_id, &row, caller_context);
	SPI_finish();
	if (row.report_data != nullptr)
		PG_RETURN_POINTER(row.report_data); // still in the database
	if (row.minio_path == nullptr)
		PG_RETURN_NULL();

	ReportErrorContext errctx = {report_id, row.minio_path};
	ErrorContextCallback errcallback = {error_context_stack, ReportErrorContextCallback, &errctx};
	error_context_stack = &errcallback;

	const pg::Settings &settings = pg::g_settings;
	DownloadBuffer *buffer = NewDownloadBuffer(caller_context);
	pg::PrepareS3Session();
	const char *minio_path = row.minio_path;
	CallCore([&] {
		uri::S3Location location;
		if (!uri::ParseS3Uri(minio_path, &location))
			throw Error(ErrorKind::kConfig, "22023",
			            std::string("report ") + report_id + " has an invalid minio_path \"" + minio_path + "\"", {},
			            "minio_path must look like s3://bucket/reports/{report_id}/report.{format}.");
		s3::Config config = pg::BuildS3Config(settings);
		s3::Client client(config, pg::ProcessEngine(settings));
		s3::ObjectRef ref{location.bucket, location.key, {}};
		client.Get(ref, &buffer->bytes, pg::BackendInterruptProbe());
	});

	Datum result = DirectFunctionCall1(jsonb_in, CStringGetDatum(buffer->bytes.c_str()));
	error_context_stack = errcallback.previous;
	PG_RETURN_DATUM(result);
}
