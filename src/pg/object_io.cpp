#include "pg/object_io.hpp"

#include <string>

#include "core/compression.hpp"
#include "core/s3/client.hpp"
#include "core/uri.hpp"
#include "pg/guard.hpp"
#include "pg/jsonb_text.hpp"
#include "pg/s3_session.hpp"
#include "pg/settings.hpp"
#include "pg/shared_state.hpp"

namespace reportstore::pg {

namespace {

// Downloaded bytes, owned by a memory context (see NewOwnedByContext).
struct DownloadBuffer {
	std::string bytes;
};

void ReleaseDownload(void *arg) {
	std::string().swap(static_cast<DownloadBuffer *>(arg)->bytes); // frees the bytes, cannot throw
}

// A jsonb value cannot be larger than this (PostgreSQL's MaxAllocSize).
constexpr std::size_t kMaxReportBytes = 0x3fffffff;

struct FetchErrorContext {
	const char *report_id;
	const char *path;
};

void FetchErrorContextCallback(void *arg) {
	auto *ctx = static_cast<FetchErrorContext *>(arg);
	errcontext("report %s stored at %s", ctx->report_id, ctx->path);
}

} // namespace

uri::S3Location CheckedReportLocation(const char *report_id, const char *format, const char *minio_path) {
	uri::S3Location location;
	const std::string what = std::string("report ") + report_id + " has an invalid minio_path \"" + minio_path + "\"";
	if (!uri::ParseS3Uri(minio_path, &location))
		throw Error(ErrorKind::kConfig, "22023", what, {},
		            "minio_path must look like s3://bucket/reports/{report_id}/report.{format}.");
	if (!IsAllowedBucket(g_settings, location.bucket))
		throw Error(ErrorKind::kConfig, "22023", what,
		            "Bucket \"" + location.bucket +
		                "\" is neither reportstore.bucket nor listed in reportstore.allowed_buckets.",
		            "If the bucket once was reportstore.bucket, add it to reportstore.allowed_buckets.");
	if (format == nullptr || location.key != uri::ReportObjectKey(report_id, format))
		throw Error(ErrorKind::kConfig, "22023", what,
		            "The key is not this report's key, reports/" + std::string(report_id) + "/report." +
		                (format ? format : "{format}") + ".",
		            "Recall the report from a trusted copy and offload it again.");
	return location;
}

Datum FetchReportObject(const char *report_id, const char *minio_path, const ObjectRecord &object, MemoryContext into) {
	FetchErrorContext errctx = {report_id, minio_path};
	ErrorContextCallback errcallback = {error_context_stack, FetchErrorContextCallback, &errctx};
	error_context_stack = &errcallback;

	const Settings &settings = g_settings;
	DownloadBuffer *buffer = NewOwnedByContext<DownloadBuffer>(CurrentMemoryContext);
	PrepareS3Session();
	CapturedError failure;
	bool fetched = TryCore(
	    [&] {
		    uri::S3Location location;
		    if (!uri::ParseS3Uri(minio_path, &location))
			    throw Error(ErrorKind::kInternal, "XX000", "unchecked minio_path");
		    const s3::Client &client = ProcessClient(settings);
		    // The checksum recorded at upload wins; objects that reportstore.objects
		    // does not know are checked against their metadata.
		    s3::ObjectRef ref{location.bucket, location.key, {}};
		    std::string expected_sha256;
		    std::int64_t expected_size = -1;
		    if (object.found) {
			    expected_sha256 = object.sha256;
			    expected_size = object.size;
			    if (object.version_id != nullptr)
				    ref.version_id = object.version_id;
		    }
		    s3::ObjectInfo info =
		        client.Get(ref, &buffer->bytes, BackendInterruptProbe(), expected_sha256, expected_size);
		    if (expected_sha256.empty() && info.Meta(s3::kSha256MetaKey) == nullptr)
			    throw Error(ErrorKind::kIntegrity, "XX001",
			                std::string("object \"") + minio_path + "\" cannot be verified",
			                "It has no SHA-256 in its metadata and none was recorded at upload, so its content "
			                "could have changed unnoticed.",
			                "Recall the report from a trusted copy, or offload it again with report_offload().");
		    // Verified stored bytes; old and new objects carry their own encoding.
		    compression::Codec codec = compression::CodecFromContentEncoding(info.content_encoding);
		    if (codec != compression::Codec::kNone) {
			    std::string text = compression::Decompress(codec, buffer->bytes, kMaxReportBytes);
			    buffer->bytes.swap(text); // the compressed bytes go now, not at the end
		    }
	    },
	    &failure);
	if (!fetched) {
		CountAdd(kFetchFailures, 1);
		RaiseCaptured(&failure);
	}
	CountAdd(kFetches, 1);
	CountAdd(kFetchBytes, buffer->bytes.size());

	// Parsed as jsonb_in would, interruptibly, the downloaded text freed
	// before the binary form is built.
	Jsonb *jsonb = TextToJsonb(buffer->bytes.data(), buffer->bytes.size(), ReleaseDownload, buffer, into);
	error_context_stack = errcallback.previous;
	return JsonbPGetDatum(jsonb);
}

} // namespace reportstore::pg
