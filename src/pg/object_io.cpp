#include "pg/object_io.hpp"

#include <cstdint>
#include <string>
#include <vector>

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

// FetchReportObjects holds at most this many GETs per max_concurrency, and
// this many expected bytes, at once (at least one object).
constexpr int kFetchWindowFactor = 4;
constexpr std::uint64_t kFetchWindowBytes = 64u << 20;

// What an object counts against the window: its recorded size, or a guess
// for objects reportstore.objects does not know.
std::uint64_t WindowBytes(const ObjectRecord &object) {
	return object.found && object.size > 0 ? static_cast<std::uint64_t>(object.size) : (1u << 20);
}

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

namespace {

// Core zone: the GET of a report's object and what its bytes must be. The
// checksum recorded at upload wins; objects that reportstore.objects does not
// know are checked against their metadata.
s3::GetRequest ObjectGet(const char *minio_path, const ObjectRecord &object) {
	uri::S3Location location;
	if (!uri::ParseS3Uri(minio_path, &location))
		throw Error(ErrorKind::kInternal, "XX000", "unchecked minio_path");
	s3::GetRequest get{{location.bucket, location.key, {}}, {}, -1};
	if (object.found) {
		get.expected_sha256_hex = object.sha256;
		get.expected_size = object.size;
		if (object.version_id != nullptr)
			get.ref.version_id = object.version_id;
	}
	return get;
}

// Core zone: verified stored bytes to the report's text. Old and new objects
// carry their own encoding.
void DecodeObject(const char *minio_path, const s3::GetRequest &get, const s3::ObjectInfo &info, std::string *bytes) {
	if (get.expected_sha256_hex.empty() && info.Meta(s3::kSha256MetaKey) == nullptr)
		throw Error(ErrorKind::kIntegrity, "XX001", std::string("object \"") + minio_path + "\" cannot be verified",
		            "It has no SHA-256 in its metadata and none was recorded at upload, so its content "
		            "could have changed unnoticed.",
		            "Recall the report from a trusted copy, or offload it again with report_offload().");
	compression::Codec codec = compression::CodecFromContentEncoding(info.content_encoding);
	if (codec != compression::Codec::kNone) {
		std::string text = compression::Decompress(codec, *bytes, kMaxReportBytes);
		bytes->swap(text); // the compressed bytes go now, not at the end
	}
}

// Parsed as jsonb_in would, interruptibly, the downloaded text freed before
// the binary form is built.
Datum DecodedToJsonb(DownloadBuffer *buffer, MemoryContext into) {
	CountAdd(kFetches, 1);
	CountAdd(kFetchBytes, buffer->bytes.size());
	return JsonbPGetDatum(TextToJsonb(buffer->bytes.data(), buffer->bytes.size(), ReleaseDownload, buffer, into));
}

} // namespace

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
		    const s3::GetRequest get = ObjectGet(minio_path, object);
		    const s3::ObjectInfo info = ProcessClient(settings).Get(get.ref, &buffer->bytes, BackendInterruptProbe(),
		                                                            get.expected_sha256_hex, get.expected_size);
		    DecodeObject(minio_path, get, info, &buffer->bytes);
	    },
	    &failure);
	if (!fetched) {
		CountAdd(kFetchFailures, 1);
		RaiseCaptured(&failure);
	}
	Datum result = DecodedToJsonb(buffer, into);
	error_context_stack = errcallback.previous;
	return result;
}

// The downloads of one FetchReportObjects call, owned by a memory context.
struct BatchDownloads {
	std::vector<s3::GetRequest> gets;
	std::vector<s3::GetOutcome> outcomes;
	DownloadBuffer current;
};

void FetchReportObjects(const FetchItem *items, int n, FetchSink sink, void *sink_arg) {
	const Settings &settings = g_settings;
	BatchDownloads *downloads = NewOwnedByContext<BatchDownloads>(CurrentMemoryContext);
	const int concurrency = Max(settings.max_concurrency, 1);
	// Each report's jsonb lives only until the sink has stored it.
	MemoryContext row_context =
	    AllocSetContextCreate(CurrentMemoryContext, "reportstore fetched report", ALLOCSET_DEFAULT_SIZES);
	PrepareS3Session();
	for (int first = 0; first < n;) {
		// A window of GETs: enough to keep max_concurrency of them in flight
		// most of the time, few enough bytes to hold at once.
		int end = first;
		std::uint64_t bytes = 0;
		while (end < n && end - first < kFetchWindowFactor * concurrency &&
		       (end == first || bytes + WindowBytes(items[end].object) <= kFetchWindowBytes)) {
			bytes += WindowBytes(items[end].object);
			end++;
		}
		CapturedError failure;
		bool fetched = TryCore(
		    [&] {
			    downloads->gets.clear();
			    downloads->outcomes.clear();
			    for (int i = first; i < end; i++)
				    downloads->gets.push_back(ObjectGet(items[i].minio_path, items[i].object));
			    downloads->outcomes =
			        ProcessClient(settings).GetMany(downloads->gets, concurrency, BackendInterruptProbe());
		    },
		    &failure);
		if (!fetched)
			RaiseCaptured(&failure);
		for (int i = first; i < end; i++) {
			FetchErrorContext errctx = {items[i].report_id, items[i].minio_path};
			ErrorContextCallback errcallback = {error_context_stack, FetchErrorContextCallback, &errctx};
			error_context_stack = &errcallback;
			bool decoded = TryCore(
			    [&] {
				    s3::GetOutcome &outcome = downloads->outcomes[i - first];
				    if (outcome.error)
					    throw *outcome.error;
				    if (!outcome.info) // not started after an earlier failure: cannot be, that one raised
					    throw Error(ErrorKind::kInternal, "XX000", "download not started");
				    downloads->current.bytes.swap(outcome.body);
				    DecodeObject(items[i].minio_path, downloads->gets[i - first], *outcome.info,
				                 &downloads->current.bytes);
			    },
			    &failure);
			if (!decoded) {
				CountAdd(kFetchFailures, 1);
				RaiseCaptured(&failure);
			}
			MemoryContext outer = MemoryContextSwitchTo(row_context);
			sink(i, DecodedToJsonb(&downloads->current, row_context), sink_arg);
			MemoryContextSwitchTo(outer);
			MemoryContextReset(row_context);
			error_context_stack = errcallback.previous;
		}
		first = end;
	}
	MemoryContextDelete(row_context);
}

} // namespace reportstore::pg
