// report_url(uuid, interval): a presigned GET URL of an offloaded report, for
// applications that hand large reports to a browser directly. Runs with the
// caller's rights: privileges and row-level security on reports apply.
#include "pg/catalog.hpp"
#include "pg/credentials.hpp"
#include "pg/guard.hpp"
#include "pg/object_io.hpp"
#include "pg/report_table.hpp"
#include "pg/run_as.hpp"
#include "pg/s3_session.hpp"
#include "pg/settings.hpp"

#include <chrono>
#include <string>

#include "core/s3/client.hpp"

extern "C" {
#include "utils/timestamp.h"
#include "utils/uuid.h"
}

using namespace reportstore;
using namespace reportstore::pg;

// report_url(report_id uuid, expires interval) RETURNS text
REPORTSTORE_FUNCTION(reportstore_report_url) {
	Datum report_uuid = PG_GETARG_DATUM(0);
	Interval *expires = PG_GETARG_INTERVAL_P(1);
	char *report_id = DatumGetCString(DirectFunctionCall1(uuid_out, report_uuid));
	double seconds =
	    DatumGetFloat8(DirectFunctionCall2(interval_part, CStringGetTextDatum("epoch"), PointerGetDatum(expires)));
	if (!(seconds >= 1 && seconds <= 7 * 24 * 3600))
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("expires must be between 1 second and 7 days"),
		                errhint("S3 presigned URLs are valid for at most 7 days.")));
	MemoryContext caller = CurrentMemoryContext;
	const ReportTable &table = RequireReportTable(100);
	RoleScope scope;
	BeginCaller(table, &scope);
	ReportRow row;
	ObjectRecord object;
	object.found = false;
	SPI_connect();
	ReadReportRow(table, report_uuid, report_id, &row, caller);
	if (row.minio_path != nullptr)
		LookupObject(table, report_uuid, row.minio_path, &object, caller);
	SPI_finish();
	EndRole(&scope);
	if (row.minio_path == nullptr)
		PG_RETURN_NULL(); // still in the database: no object to link to

	const Settings &settings = g_settings;
	PrepareS3Session();
	auto *url = NewOwnedByContext<std::string>(CurrentMemoryContext);
	const char *version = object.found ? object.version_id : nullptr;
	CallCore([&] {
		uri::S3Location loc = CheckedReportLocation(report_id, row.format, row.minio_path);
		*url = ProcessClient(settings).PresignGet(s3::ObjectRef{loc.bucket, loc.key, version ? version : ""},
		                                          std::chrono::seconds(static_cast<long>(seconds)));
	});
	// A URL signed with temporary credentials stops working when they expire.
	CredentialsInfo credentials;
	GetCredentialsInfo(&credentials);
	if (credentials.expires_at != 0 &&
	    TimestampTzPlusMilliseconds(GetCurrentTimestamp(), static_cast<int64>(seconds * 1000)) > credentials.expires_at)
		ereport(NOTICE, (errmsg("the presigned URL stops working at %s, when the temporary S3 credentials it is "
		                        "signed with expire",
		                        timestamptz_to_str(credentials.expires_at)),
		                 errhint("Ask for a shorter lifetime, or sign with long-lived keys.")));
	PG_RETURN_TEXT_P(cstring_to_text_with_len(url->data(), static_cast<int>(url->size())));
}
