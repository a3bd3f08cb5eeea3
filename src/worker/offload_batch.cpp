#include "worker/offload_batch.hpp"

#include <cstring>
#include <deque>
#include <string>
#include <vector>

#include "core/compression.hpp"
#include "core/s3/client.hpp"
#include "core/uri.hpp"
#include "pg/catalog.hpp"
#include "pg/jsonb_text.hpp"
#include "pg/report_table.hpp"
#include "pg/run_as.hpp"
#include "pg/s3_session.hpp"
#include "pg/settings.hpp"
#include "pg/shared_state.hpp"
#include "pg/spi_plans.hpp"
#include "worker/upload_thread.hpp"

extern "C" {
#include "access/detoast.h"
#include "common/pg_prng.h"
#include "utils/array.h"
#include "utils/datum.h"
#include "utils/timestamp.h"
}

namespace reportstore::pg {

namespace {

struct Candidate {
	Datum report_uuid; // in the batch context
	char report_id[37];
	int attempts;
	int64 raw_size; // uncompressed jsonb size, from the TOAST header
	bool locked;
	char *format;
	Datum report_data; // as read under the row lock (SPI memory)
	TextBuffer body;
	bool has_body;
	char path[600]; // s3://bucket/key, once the request is built
};

void CountFailure(ErrorKind kind) {
	switch (kind) {
	case ErrorKind::kTransient:
		CountAdd(kUploadFailuresTransient, 1);
		break;
	case ErrorKind::kSystemic:
	case ErrorKind::kConfig:
		CountAdd(kUploadFailuresSystemic, 1);
		break;
	case ErrorKind::kIntegrity:
		CountAdd(kUploadFailuresIntegrity, 1);
		break;
	default:
		CountAdd(kUploadFailuresOther, 1);
		break;
	}
}

void AdvanceCursor(BatchCursor *cursor, Datum created_at, Datum report_uuid) {
	MemoryContext old = MemoryContextSwitchTo(cursor->context);
	cursor->created_at = datumCopy(created_at, cursor->created_at_byval, cursor->created_at_len);
	MemoryContextSwitchTo(old);
	std::memcpy(&cursor->report_id, DatumGetUUIDP(report_uuid), sizeof(pg_uuid_t));
	cursor->started = true;
}

// The next pending reports after the cursor, oldest first (as the table's
// owner). Nothing is locked: the rows are only candidates.
void ScanPending(const ReportTable &table, const BatchOptions &options, BatchCursor *cursor, int limit) {
	Oid types[4];
	Datum values[4];
	int n = 0;
	types[n] = INT4OID;
	values[n++] = Int32GetDatum(limit);
	char *delay = pstrdup("");
	if (options.offload_delay_s > 0) {
		types[n] = TIMESTAMPTZOID;
		values[n++] = TimestampTzGetDatum(
		    TimestampTzPlusMilliseconds(GetCurrentTransactionStartTimestamp(), -1000LL * options.offload_delay_s));
		delay = psprintf(" AND r.updated_at OPERATOR(pg_catalog.<=) $%d", n);
	}
	char *after = pstrdup("");
	if (cursor->started) {
		types[n] = cursor->created_at_type;
		values[n++] = cursor->created_at;
		types[n] = UUIDOID;
		values[n++] = UUIDPGetDatum(&cursor->report_id);
		after = psprintf(" AND (r.created_at, r.report_id) OPERATOR(pg_catalog.>) ($%d, $%d)", n - 1, n);
	}
	char *sql = psprintf("SELECT r.report_id, r.created_at, r.report_data FROM %s r "
	                     "WHERE r.minio_path IS NULL AND r.report_data IS NOT NULL%s%s "
	                     "ORDER BY r.created_at, r.report_id LIMIT $1",
	                     table.qualified_name, delay, after);
	RoleScope scope;
	BeginTableOwner(table, &scope);
	RunKeptPlan(sql, n, types, values, nullptr, true, SPI_OK_SELECT);
	EndRole(&scope);
	if (!cursor->started && SPI_processed > 0) {
		cursor->created_at_type = SPI_gettypeid(SPI_tuptable->tupdesc, 2);
		get_typlenbyval(cursor->created_at_type, &cursor->created_at_len, &cursor->created_at_byval);
	}
}

// Retry state of these reports (as the extension's owner): attempts so far,
// and whether their next try is still in the future.
void ReadRetryState(const ReportTable &table, Datum *ids, int n, int *attempts, bool *waiting) {
	static const char *sql =
	    "SELECT s.report_id, s.attempts, s.next_attempt_at OPERATOR(pg_catalog.>) pg_catalog.now() "
	    "FROM reportstore.offload_state s WHERE s.report_id OPERATOR(pg_catalog.=) ANY ($1)";
	Oid types[1] = {UUIDARRAYOID};
	Datum values[1] = {UuidArray(ids, n)};
	RoleScope scope;
	BeginExtensionOwner(table, &scope);
	RunKeptPlan(sql, 1, types, values, nullptr, true, SPI_OK_SELECT);
	EndRole(&scope);
	for (int i = 0; i < n; i++) {
		attempts[i] = 0;
		waiting[i] = false;
	}
	for (uint64 r = 0; r < SPI_processed; r++) {
		bool isnull;
		HeapTuple tup = SPI_tuptable->vals[r];
		Datum id = SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull);
		for (int i = 0; i < n; i++) {
			if (std::memcmp(DatumGetUUIDP(ids[i]), DatumGetUUIDP(id), UUID_LEN) != 0)
				continue;
			attempts[i] = DatumGetInt32(SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull));
			waiting[i] = DatumGetBool(SPI_getbinval(tup, SPI_tuptable->tupdesc, 3, &isnull));
		}
	}
}

// Step 1: the batch, chosen by count and byte budget from the cursor on.
int ChooseCandidates(const ReportTable &table, const BatchOptions &options, BatchCursor *cursor,
                     MemoryContext batch_context, Candidate **out) {
	Candidate *chosen =
	    static_cast<Candidate *>(MemoryContextAllocZero(batch_context, sizeof(Candidate) * (options.batch_size + 1)));
	int count = 0;
	int64 bytes = 0;
	const int limit = Max(options.batch_size, 64);
	bool full = false;
	while (!full) {
		ScanPending(table, options, cursor, limit);
		SPITupleTable *rows = SPI_tuptable;
		int n = static_cast<int>(SPI_processed);
		if (n == 0) {
			cursor->at_end = true;
			break;
		}
		Datum *ids = static_cast<Datum *>(palloc(sizeof(Datum) * n));
		bool isnull;
		for (int i = 0; i < n; i++)
			ids[i] = SPI_getbinval(rows->vals[i], rows->tupdesc, 1, &isnull);
		int *attempts = static_cast<int *>(palloc(sizeof(int) * n));
		bool *waiting = static_cast<bool *>(palloc(sizeof(bool) * n));
		ReadRetryState(table, ids, n, attempts, waiting);
		int i = 0;
		for (; i < n && !full; i++) {
			Datum created_at = SPI_getbinval(rows->vals[i], rows->tupdesc, 2, &isnull);
			if (!waiting[i]) {
				// The uncompressed size, read from the TOAST header without
				// fetching or decompressing the value. A report larger than
				// the budget goes alone.
				int64 size =
				    static_cast<int64>(toast_raw_datum_size(SPI_getbinval(rows->vals[i], rows->tupdesc, 3, &isnull)));
				if (count > 0 && bytes + size > options.byte_budget) {
					full = true; // this one starts the next batch
					break;
				}
				Candidate &c = chosen[count++];
				MemoryContext old = MemoryContextSwitchTo(batch_context);
				c.report_uuid = datumCopy(ids[i], false, UUID_LEN);
				MemoryContextSwitchTo(old);
				strlcpy(c.report_id, DatumGetCString(DirectFunctionCall1(uuid_out, ids[i])), sizeof(c.report_id));
				c.attempts = attempts[i];
				c.raw_size = size;
				bytes += size;
				full = count >= options.batch_size;
			}
			AdvanceCursor(cursor, created_at, ids[i]);
		}
		if (!full && n < limit) {
			cursor->at_end = true;
			break;
		}
	}
	*out = chosen;
	return count;
}

// Step 2: locks the chosen rows that are still pending and not locked by
// anyone else (as the table's owner), and reads them under the lock: a
// READ COMMITTED row lock returns the newest version of the row.
int LockCandidates(const ReportTable &table, const BatchOptions &options, Candidate *candidates, int count) {
	char *sql = psprintf("SELECT r.report_id, r.format, r.report_data FROM %s r "
	                     "WHERE r.report_id OPERATOR(pg_catalog.=) ANY ($1) "
	                     "AND r.minio_path IS NULL AND r.report_data IS NOT NULL%s "
	                     "FOR UPDATE OF r SKIP LOCKED",
	                     table.qualified_name,
	                     options.offload_delay_s > 0 ? " AND r.updated_at OPERATOR(pg_catalog.<=) $2" : "");
	Datum *ids = static_cast<Datum *>(palloc(sizeof(Datum) * count));
	for (int i = 0; i < count; i++)
		ids[i] = candidates[i].report_uuid;
	Oid types[2] = {UUIDARRAYOID, TIMESTAMPTZOID};
	Datum values[2] = {UuidArray(ids, count),
	                   TimestampTzGetDatum(TimestampTzPlusMilliseconds(GetCurrentTransactionStartTimestamp(),
	                                                                   -1000LL * options.offload_delay_s))};
	RoleScope scope;
	BeginTableOwner(table, &scope);
	RunKeptPlan(sql, options.offload_delay_s > 0 ? 2 : 1, types, values, nullptr, false, SPI_OK_SELECT);
	EndRole(&scope);
	SPITupleTable *rows = SPI_tuptable;
	for (uint64 r = 0; r < SPI_processed; r++) {
		bool isnull;
		Datum id = SPI_getbinval(rows->vals[r], rows->tupdesc, 1, &isnull);
		for (int i = 0; i < count; i++) {
			Candidate &c = candidates[i];
			if (std::memcmp(DatumGetUUIDP(c.report_uuid), DatumGetUUIDP(id), UUID_LEN) != 0)
				continue;
			c.locked = true;
			Datum format = SPI_getbinval(rows->vals[r], rows->tupdesc, 2, &isnull);
			c.format = isnull ? nullptr : FormatName(format, SPI_gettypeid(rows->tupdesc, 2));
			c.report_data = SPI_getbinval(rows->vals[r], rows->tupdesc, 3, &isnull);
		}
	}
	// Keep the locked ones, in order.
	int locked = 0;
	for (int i = 0; i < count; i++)
		if (candidates[i].locked)
			candidates[locked++] = candidates[i];
	return locked;
}

// Step 3: the text of one report, in the batch context. A text that cannot
// exist (over 1 GB) or memory that cannot be had fails this report only.
void Serialize(Candidate *c, MemoryContext batch_context, CapturedError *error) {
	MemoryContext old = MemoryContextSwitchTo(batch_context);
	Jsonb *jsonb = DatumGetJsonbP(c->report_data);
	// A text that may not fit is measured first, so that a report whose text
	// cannot exist fails without a gigabyte allocated for nothing.
	TextBuffer measure;
	InitTextCounter(&measure, kMaxReportTextBytes);
	const bool fits = !TextMayExceed(VARSIZE(jsonb), kMaxReportTextBytes) || JsonbToText(jsonb, &measure);
	// The text is usually a little larger than the binary form.
	InitTextBuffer(
	    &c->body, fits ? (measure.len > 0 ? measure.len : static_cast<size_t>(c->raw_size) + c->raw_size / 8 + 64) : 64,
	    kMaxReportTextBytes);
	c->body.exceeded = !fits;
	c->has_body = fits && JsonbToText(jsonb, &c->body);
	if (reinterpret_cast<Pointer>(jsonb) != DatumGetPointer(c->report_data))
		pfree(jsonb);
	MemoryContextSwitchTo(old);
	if (c->has_body)
		return;
	if (c->body.data != nullptr)
		pfree(c->body.data);
	c->body.data = nullptr;
	if (c->body.out_of_memory)
		CaptureMessage(ErrorKind::kTransient, "53200", "out of memory while serializing the report", error);
	else {
		CaptureMessage(ErrorKind::kTooLarge, "54000",
		               "the text form of report_data is larger than 1 GB, PostgreSQL's limit for a text value", error);
		strlcpy(error->hint,
		        "The report stays in report_data; reportstore does not retry it. Split or shrink the report, then "
		        "call report_offload() or let the worker try again after the next change of the report.",
		        sizeof(error->hint));
	}
}

// What the upload thread said of one report, kept in plain memory until the
// PostgreSQL zone reads it.
struct Ended {
	int index;
	bool ok;
};

// Core zone: the outcomes the thread returned, into uploaded/errors.
int CollectEnded(s3::UploadPipeline::Finished finished, Candidate *candidates, UploadedObject *uploaded,
                 CapturedError *errors, bool *not_sent, Ended *ended) {
	int n = 0;
	for (auto &f : finished) {
		const int i = static_cast<int>(f.first);
		const s3::PutOutcome &outcome = f.second;
		ended[n++] = {i, !outcome.error};
		if (outcome.error) {
			CaptureError(*outcome.error, &errors[i]);
			not_sent[i] = outcome.not_sent;
			continue;
		}
		try {
			FillUploadedObject(candidates[i].path, *outcome.result, &uploaded[i]);
		} catch (const Error &e) {
			CaptureError(e, &errors[i]);
		}
	}
	return n;
}

// Steps 3 and 4: each report is serialized here while the upload thread
// hashes, compresses and uploads the ones before it; a body is freed as soon
// as its upload has ended, so memory is bounded by the thread's window, not
// by the batch. The row locks stay: a report's object key is fixed, and the
// lock is what keeps two writers of different content from racing on it.
void UploadAll(const BatchOptions &options, Candidate *candidates, int count, MemoryContext batch_context,
               UploadedObject *uploaded, CapturedError *errors, bool *not_sent, const ReportTable &table) {
	const Settings &settings = g_settings;
	int64 largest = 0;
	for (int i = 0; i < count; i++)
		largest = Max(largest, candidates[i].raw_size);
	s3::UploadPipeline::Options pipeline_options;
	pipeline_options.max_concurrency = options.max_concurrency;
	pipeline_options.window_bytes = static_cast<std::uint64_t>(
	    Min(Max(2 * options.max_concurrency * largest, static_cast<int64>(1) << 20), Max(options.byte_budget, 1)));
	pipeline_options.codec = static_cast<compression::Codec>(settings.compression);
	CapturedError start_failure;
	s3::UploadPipeline *pipeline = StartUploadThread(pipeline_options, &start_failure);
	if (pipeline == nullptr) {
		// No S3 client (credentials that cannot be obtained, unusable
		// settings): nothing was sent, and it is no report's fault. Every
		// report of the batch carries the failure as a systemic one, so the
		// worker backs off and no attempt is charged.
		if (start_failure.kind != ErrorKind::kInterrupted)
			start_failure.kind = ErrorKind::kSystemic;
		for (int i = 0; i < count; i++)
			errors[i] = start_failure;
		return;
	}
	bool (*interrupted)() = options.interrupted;
	const auto stop_asked = [interrupted] { return interrupted(); };
	auto *ended = static_cast<Ended *>(MemoryContextAlloc(batch_context, sizeof(Ended) * (count + 1)));

	// The bodies of the uploads that ended: freed here, in the PostgreSQL zone.
	auto free_bodies = [&](int n) {
		for (int k = 0; k < n; k++) {
			Candidate &c = candidates[ended[k].index];
			if (c.body.data != nullptr) {
				pfree(c.body.data);
				c.body.data = nullptr;
			}
		}
	};
	bool stopped = false;
	for (int i = 0; i < count && !stopped; i++) {
		Candidate &c = candidates[i];
		if (!TryCore(
		        [&] {
			        std::string uri =
			            uri::S3Location{settings.bucket, uri::ReportObjectKey(c.report_id, c.format ? c.format : "")}
			                .ToUri();
			        if (uri.size() >= sizeof(c.path))
				        throw Error(ErrorKind::kInternal, "XX000", "object path too long");
			        std::memcpy(c.path, uri.c_str(), uri.size() + 1);
		        },
		        &errors[i]))
			continue;
		// A pending deletion of this path is obsolete: the object is about to
		// be written again. This waits for a delete batch that holds it, so
		// that its DELETE cannot land after our PUT.
		CancelQueuedDeletions(table, c.path);
		Serialize(&c, batch_context, &errors[i]);
		if (!c.has_body)
			continue;
		bool queued = false;
		int n = 0;
		TryCore(
		    [&] {
			    s3::PutRequest put;
			    uri::S3Location location;
			    if (!uri::ParseS3Uri(c.path, &location))
				    throw Error(ErrorKind::kInternal, "XX000", "invalid object path");
			    put.bucket = location.bucket;
			    put.key = location.key;
			    put.body = std::string_view(c.body.data, c.body.len);
			    put.content_type = "application/json";
			    ApplyObjectSettings(settings, &put);
			    queued = pipeline->Submit(static_cast<std::size_t>(i), std::move(put), stop_asked);
			    n = CollectEnded(pipeline->Take(), candidates, uploaded, errors, not_sent, ended);
		    },
		    &errors[i]);
		free_bodies(n);
		stopped = !queued && !errors[i].failed;
	}
	CapturedError failure;
	int n = 0;
	if (!TryCore([&] { n = CollectEnded(pipeline->Finish(stop_asked), candidates, uploaded, errors, not_sent, ended); },
	             &failure)) {
		for (int i = 0; i < count; i++)
			if (!uploaded[i].ok && !errors[i].failed)
				errors[i] = failure;
	}
	StopUploadThread();
	free_bodies(n);
	if (stopped)
		for (int i = 0; i < count; i++)
			if (!uploaded[i].ok && !errors[i].failed)
				CaptureMessage(ErrorKind::kInterrupted, "57014", "the batch was interrupted", &errors[i]);
}

} // namespace

void InitBatchCursor(BatchCursor *cursor, MemoryContext parent) {
	std::memset(cursor, 0, sizeof(*cursor));
	cursor->context = AllocSetContextCreate(parent, "reportstore batch cursor", ALLOCSET_SMALL_SIZES);
}

void RestartBatchCursor(BatchCursor *cursor) {
	MemoryContextReset(cursor->context);
	cursor->started = false;
	cursor->at_end = false;
}

bool IsSystemic(ErrorKind kind) {
	return kind == ErrorKind::kSystemic || kind == ErrorKind::kConfig;
}

int64 RetryDelayMs(const BatchOptions &options, int attempts) {
	double delay = options.retry_base_delay_ms;
	for (int i = 0; i < attempts && delay < options.retry_max_delay_ms; i++)
		delay *= 2;
	if (delay > options.retry_max_delay_ms)
		delay = options.retry_max_delay_ms;
	// Full jitter on the upper half spreads retries of reports that failed together.
	double jitter = 0.5 + 0.5 * pg_prng_double(&pg_global_prng_state);
	return static_cast<int64>(delay * jitter);
}

BatchOptions BatchOptionsFromSettings(bool (*interrupted)()) {
	const Settings &s = g_settings;
	BatchOptions options;
	options.batch_size = s.batch_size;
	options.byte_budget = static_cast<int64>(s.batch_bytes_kb) * 1024;
	// Under reportstore.max_rate a batch holds about one second's worth, so that
	// the throttle between batches spreads the uploads instead of letting a
	// whole batch_bytes go at full speed first (a batch always takes one report).
	if (s.max_rate_kb > 0)
		options.byte_budget = Min(options.byte_budget, Max(static_cast<int64>(s.max_rate_kb) * 1024, 64 * 1024));
	options.max_concurrency = s.max_concurrency;
	options.offload_delay_s = s.offload_delay_s;
	options.keep_report_data = s.keep_report_data;
	options.retry_base_delay_ms = s.retry_base_delay_ms;
	options.retry_max_delay_ms = s.retry_max_delay_ms;
	options.interrupted = interrupted;
	return options;
}

void RunOffloadBatch(const ReportTable &table, const BatchOptions &options, BatchCursor *cursor, BatchResult *result) {
	std::memset(result, 0, sizeof(*result));
	MemoryContext batch_context =
	    AllocSetContextCreate(CurrentMemoryContext, "reportstore batch", ALLOCSET_DEFAULT_SIZES);
	MemoryContext old_context = MemoryContextSwitchTo(batch_context);

	SPI_connect();
	Candidate *candidates = nullptr;
	int count = ChooseCandidates(table, options, cursor, batch_context, &candidates);
	if (count > 0)
		count = LockCandidates(table, options, candidates, count);
	result->selected = count;
	if (count > 0) {
		result->locked_any = true;
		std::memcpy(&result->first_locked, DatumGetUUIDP(candidates[0].report_uuid), sizeof(pg_uuid_t));
	}
	if (count == 0) {
		SPI_finish();
		MemoryContextSwitchTo(old_context);
		MemoryContextDelete(batch_context);
		return;
	}

	auto *uploaded =
	    static_cast<UploadedObject *>(MemoryContextAllocZero(batch_context, sizeof(UploadedObject) * count));
	auto *errors = static_cast<CapturedError *>(MemoryContextAllocZero(batch_context, sizeof(CapturedError) * count));
	auto *not_sent = static_cast<bool *>(MemoryContextAllocZero(batch_context, sizeof(bool) * count));
	UploadAll(options, candidates, count, batch_context, uploaded, errors, not_sent, table);

	// When no upload got an answer at all (timeouts, refused or lost
	// connections), the endpoint is down, not the reports: nobody is charged.
	int answered = 0, unanswered = 0;
	for (int i = 0; i < count; i++) {
		if (uploaded[i].ok)
			answered++;
		else if (errors[i].failed && errors[i].kind != ErrorKind::kInterrupted && !not_sent[i] &&
		         candidates[i].has_body)
			(errors[i].no_answer ? unanswered : answered)++;
	}
	const bool endpoint_down = answered == 0 && unanswered > 0;

	// 5. The results: the uploads in one UPDATE and one INSERT, then each failure.
	auto *done_ids = static_cast<Datum *>(palloc(sizeof(Datum) * count));
	auto *done_paths = static_cast<const char **>(palloc(sizeof(char *) * count));
	auto *done_objects = static_cast<const UploadedObject **>(palloc(sizeof(UploadedObject *) * count));
	int done = 0;
	for (int i = 0; i < count; i++) {
		if (!uploaded[i].ok)
			continue;
		done_ids[done] = candidates[i].report_uuid;
		done_paths[done] = uploaded[i].path;
		done_objects[done] = &uploaded[i];
		done++;
		RecordUpload(uploaded[i].size, uploaded[i].seconds);
		if (candidates[i].attempts > 0)
			CountAdd(kRetries, 1);
		result->offloaded++;
		result->bytes += uploaded[i].size;
	}
	RoleScope owner;
	BeginTableOwner(table, &owner); // the owner's triggers run with the owner's rights
	RecordOffloads(table, done_ids, done_paths, done, options.keep_report_data);
	EndRole(&owner);
	RecordObjects(table, done_ids, done_objects, done);
	for (int i = 0; i < count; i++) {
		Candidate &c = candidates[i];
		if (uploaded[i].ok)
			continue;
		CapturedError &e = errors[i];
		if (!e.failed)
			continue;
		if (not_sent[i] && !endpoint_down)
			continue; // never tried: it stays pending, uncharged
		if (e.kind == ErrorKind::kInterrupted) {
			result->interrupted = true;
			continue;
		}
		CountFailure(e.kind);
		if (IsSystemic(e.kind) || (endpoint_down && e.no_answer)) {
			// Not this report's fault: no attempt is charged to it.
			if (!result->systemic)
				result->systemic_error = e;
			result->systemic = true;
			continue;
		}
		char *message =
		    psprintf("%s%s%s%s%s", e.message, e.detail[0] ? ": " : "", e.detail, e.hint[0] ? " Hint: " : "", e.hint);
		int64 delay = e.kind == ErrorKind::kTooLarge ? -1 : RetryDelayMs(options, c.attempts);
		if (e.kind != ErrorKind::kTransient && e.kind != ErrorKind::kIntegrity && e.kind != ErrorKind::kTooLarge &&
		    c.attempts + 1 >= g_settings.max_attempts)
			delay = -1; // retrying will not fix it: stop until the report changes or report_offload()
		RecordFailure(table, c.report_uuid, ErrorKindName(e.kind), message, delay);
		if (result->failed++ == 0) {
			result->first_failure = e;
			strlcpy(result->first_failure_id, c.report_id, sizeof(result->first_failure_id));
		}
	}
	SPI_finish();
	MemoryContextSwitchTo(old_context);
	MemoryContextDelete(batch_context);
}

} // namespace reportstore::pg
