#include "pg/offload_batch.hpp"

#include <cstring>
#include <deque>
#include <random>
#include <string>
#include <vector>

#include "core/s3/client.hpp"
#include "core/uri.hpp"
#include "pg/catalog.hpp"
#include "pg/s3_session.hpp"
#include "pg/settings.hpp"
#include "pg/shared_state.hpp"

extern "C" {
#include "access/detoast.h"
#include "common/pg_prng.h"
#include "utils/timestamp.h"
}

namespace reportstore::pg {

namespace {

struct Candidate {
	Datum report_uuid;
	char report_id[37];
	char *format;
	int attempts;
	const char *body; // report_data::text, in SPI memory until SPI_finish
	int64 body_len;
	char path[600]; // s3://bucket/key, once the request is built
};

// C++ state of a batch, owned by the batch's memory context.
struct BatchState {
	std::deque<std::string> compressed; // stable addresses: requests point into them
	std::vector<s3::PutRequest> requests;
	std::vector<int> index_of_request; // request -> candidate
	std::vector<s3::PutOutcome> outcomes;
};

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

bool IsSystemic(ErrorKind kind) {
	return kind == ErrorKind::kSystemic || kind == ErrorKind::kConfig;
}

int SelectCandidates(const ReportTable &table, const BatchOptions &options, Candidate **out) {
	char *sql = psprintf("SELECT r.report_id, r.report_id::text, lower(r.format::text), "
	                     "r.report_data, coalesce(s.attempts, 0) "
	                     "FROM %s r LEFT JOIN reportstore.offload_state s ON s.report_id = r.report_id "
	                     "WHERE r.minio_path IS NULL AND r.report_data IS NOT NULL "
	                     "AND (s.next_attempt_at IS NULL OR s.next_attempt_at <= now()) "
	                     "AND r.updated_at <= now() - make_interval(secs => $1) "
	                     "ORDER BY r.created_at, r.report_id LIMIT $2 FOR UPDATE OF r SKIP LOCKED",
	                     table.qualified_name);
	Oid types[2] = {INT4OID, INT4OID};
	Datum values[2] = {Int32GetDatum(options.offload_delay_s), Int32GetDatum(options.batch_size)};
	int rc = SPI_execute_with_args(sql, 2, types, values, nullptr, false, 0);
	if (rc != SPI_OK_SELECT)
		ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR),
		                errmsg("reportstore batch query failed: %s", SPI_result_code_string(rc))));
	uint64 rows = SPI_processed;
	SPITupleTable *tuptable = SPI_tuptable;
	Candidate *candidates = static_cast<Candidate *>(palloc0(sizeof(Candidate) * (rows + 1)));
	int count = 0;
	int64 bytes = 0;
	for (uint64 i = 0; i < rows; i++) {
		bool isnull;
		HeapTuple tuple = tuptable->vals[i];
		// The uncompressed size (what the upload will carry), read from the
		// TOAST header without fetching or decompressing the value.
		int64 size = static_cast<int64>(toast_raw_datum_size(SPI_getbinval(tuple, tuptable->tupdesc, 4, &isnull)));
		// The byte budget bounds memory; a report larger than the budget goes alone.
		if (count > 0 && bytes + size > options.byte_budget)
			break;
		bytes += size;
		Candidate &c = candidates[count++];
		c.report_uuid = SPI_getbinval(tuple, tuptable->tupdesc, 1, &isnull);
		strlcpy(c.report_id, SPI_getvalue(tuple, tuptable->tupdesc, 2), sizeof(c.report_id));
		c.format = SPI_getvalue(tuple, tuptable->tupdesc, 3);
		c.attempts = DatumGetInt32(SPI_getbinval(tuple, tuptable->tupdesc, 5, &isnull));
	}
	// The bodies: one serialization of each locked report's JSONB.
	char *body_sql = psprintf("SELECT report_data::text FROM %s WHERE report_id = $1", table.qualified_name);
	Oid body_types[1] = {UUIDOID};
	SPIPlanPtr plan = SPI_prepare(body_sql, 1, body_types);
	for (int i = 0; i < count; i++) {
		Datum args[1] = {candidates[i].report_uuid};
		// read_only = false: a fresh snapshot, which sees the version we just
		// locked. The batch's own (older) snapshot could still show a version
		// that a committed UPDATE has replaced since.
		rc = SPI_execute_plan(plan, args, nullptr, false, 1);
		if (rc != SPI_OK_SELECT || SPI_processed != 1)
			ereport(ERROR,
			        (errcode(ERRCODE_INTERNAL_ERROR), errmsg("locked report %s vanished", candidates[i].report_id)));
		bool isnull;
		Datum body = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (isnull)
			ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR),
			                errmsg("locked report %s has no report_data", candidates[i].report_id)));
		text *t = DatumGetTextPP(body);
		candidates[i].body = VARDATA_ANY(t);
		candidates[i].body_len = VARSIZE_ANY_EXHDR(t);
	}
	*out = candidates;
	return count;
}

} // namespace

BatchOptions BatchOptionsFromSettings(bool (*interrupted)()) {
	const Settings &s = g_settings;
	BatchOptions options;
	options.batch_size = s.batch_size;
	options.byte_budget = static_cast<int64>(s.batch_bytes_kb) * 1024;
	options.max_concurrency = s.max_concurrency;
	options.offload_delay_s = s.offload_delay_s;
	options.keep_report_data = s.keep_report_data;
	options.retry_base_delay_ms = s.retry_base_delay_ms;
	options.retry_max_delay_ms = s.retry_max_delay_ms;
	options.interrupted = interrupted;
	return options;
}

void RunOffloadBatch(const ReportTable &table, const BatchOptions &options, BatchResult *result) {
	std::memset(result, 0, sizeof(*result));
	MemoryContext batch_context =
	    AllocSetContextCreate(CurrentMemoryContext, "reportstore batch", ALLOCSET_DEFAULT_SIZES);
	MemoryContext old_context = MemoryContextSwitchTo(batch_context);

	SPI_connect();
	Candidate *candidates = nullptr;
	int count = SelectCandidates(table, options, &candidates);
	result->selected = count;
	if (count == 0) {
		SPI_finish();
		MemoryContextSwitchTo(old_context);
		MemoryContextDelete(batch_context);
		return;
	}

	BatchState *state = NewOwnedByContext<BatchState>(batch_context);
	auto *uploaded = static_cast<UploadedObject *>(palloc0(sizeof(UploadedObject) * count));
	CapturedError *errors = static_cast<CapturedError *>(palloc0(sizeof(CapturedError) * count));
	const Settings &settings = g_settings;
	PrepareS3Session();
	CapturedError batch_error;
	bool (*interrupted)() = options.interrupted;
	// 1. The requests (keys, compression), in core code.
	bool ran = TryCore(
	    [&] {
		    for (int i = 0; i < count; i++) {
			    try {
				    s3::PutRequest put;
				    put.bucket = settings.bucket;
				    put.key = uri::ReportObjectKey(candidates[i].report_id, candidates[i].format);
				    put.body = std::string_view(candidates[i].body, candidates[i].body_len);
				    state->compressed.emplace_back();
				    ApplyUploadSettings(settings, &put, &state->compressed.back());
				    std::string path = uri::S3Location{put.bucket, put.key}.ToUri();
				    if (path.size() >= sizeof(candidates[i].path))
					    throw Error(ErrorKind::kInternal, "XX000", "object path too long");
				    std::memcpy(candidates[i].path, path.c_str(), path.size() + 1);
				    state->requests.push_back(std::move(put));
				    state->index_of_request.push_back(i);
			    } catch (const Error &e) {
				    CaptureError(e, &errors[i]);
			    }
		    }
	    },
	    &batch_error);
	// 2. Pending deletions of these paths are obsolete: the objects are about
	// to be written again. This waits for a delete batch that holds them, so
	// its DELETE cannot land after our PUT.
	if (ran) {
		for (int i = 0; i < count; i++)
			if (!errors[i].failed)
				CancelQueuedDeletions(candidates[i].path);
	}
	// 3. The uploads, concurrently.
	if (ran)
		ran = TryCore(
		    [&] {
			    const s3::Client &client = ProcessClient(settings);
			    state->outcomes = client.PutMany(state->requests, options.max_concurrency,
			                                     [interrupted] { return interrupted(); });
			    for (std::size_t r = 0; r < state->outcomes.size(); r++) {
				    int i = state->index_of_request[r];
				    const s3::PutOutcome &outcome = state->outcomes[r];
				    if (outcome.error) {
					    CaptureError(*outcome.error, &errors[i]);
					    continue;
				    }
				    try {
					    FillUploadedObject(state->requests[r], *outcome.result, &uploaded[i]);
				    } catch (const Error &e) {
					    CaptureError(e, &errors[i]);
				    }
			    }
		    },
		    &batch_error);
	if (!ran) {
		// Nothing was uploaded or nothing can be trusted: the whole batch failed
		// the same way (configuration, resources).
		for (int i = 0; i < count; i++) {
			if (!uploaded[i].ok)
				errors[i] = batch_error;
		}
	}

	for (int i = 0; i < count; i++) {
		Candidate &c = candidates[i];
		if (uploaded[i].ok) {
			RecordOffload(table, c.report_uuid, uploaded[i].path, options.keep_report_data);
			RecordObject(c.report_uuid, uploaded[i]);
			RecordUpload(uploaded[i].size, uploaded[i].seconds);
			if (c.attempts > 0)
				CountAdd(kRetries, 1);
			result->offloaded++;
			result->bytes += uploaded[i].size;
			continue;
		}
		CapturedError &e = errors[i];
		if (!e.failed)
			continue;
		if (e.kind == ErrorKind::kInterrupted) {
			result->interrupted = true;
			continue;
		}
		CountFailure(e.kind);
		if (IsSystemic(e.kind)) {
			// Not this report's fault: no attempt is charged to it.
			if (!result->systemic)
				result->systemic_error = e;
			result->systemic = true;
			continue;
		}
		char *message = e.detail[0] ? psprintf("%s: %s", e.message, e.detail) : pstrdup(e.message);
		RecordFailure(c.report_uuid, ErrorKindName(e.kind), message, RetryDelayMs(options, c.attempts));
		result->failed++;
	}
	SPI_finish();
	MemoryContextSwitchTo(old_context);
	MemoryContextDelete(batch_context);
}

namespace {

struct DeleteItem {
	int64 id;
	char *path;
	char *version_id;
	int attempts;
	bool in_use;
};

} // namespace

void RunDeleteBatch(const ReportTable &table, const BatchOptions &options, DeleteResult *result) {
	std::memset(result, 0, sizeof(*result));
	SPI_connect();
	char *sql = psprintf("SELECT q.id, q.path, q.version_id, q.attempts, "
	                     // In use: a report points at this path again, and (for a
	                     // versioned object) at this very version.
	                     "EXISTS (SELECT 1 FROM %s r LEFT JOIN reportstore.objects o ON o.report_id = r.report_id "
	                     "        AND o.path = r.minio_path "
	                     "        WHERE r.minio_path = q.path "
	                     "          AND (q.version_id IS NULL OR o.version_id IS NULL OR o.version_id = q.version_id)) "
	                     "FROM reportstore.delete_queue q WHERE q.not_before <= now() "
	                     "ORDER BY q.not_before LIMIT $1 FOR UPDATE OF q SKIP LOCKED",
	                     table.qualified_name);
	Oid types[1] = {INT4OID};
	Datum values[1] = {Int32GetDatum(options.batch_size)};
	if (SPI_execute_with_args(sql, 1, types, values, nullptr, false, 0) != SPI_OK_SELECT)
		ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR), errmsg("reportstore delete queue query failed")));
	int n = static_cast<int>(SPI_processed);
	result->due = n;
	if (n == 0) {
		SPI_finish();
		return;
	}
	auto *items = static_cast<DeleteItem *>(palloc0(sizeof(DeleteItem) * n));
	auto *errors = static_cast<CapturedError *>(palloc0(sizeof(CapturedError) * n));
	for (int i = 0; i < n; i++) {
		bool isnull;
		HeapTuple tup = SPI_tuptable->vals[i];
		TupleDesc desc = SPI_tuptable->tupdesc;
		items[i].id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		items[i].path = SPI_getvalue(tup, desc, 2);
		items[i].version_id = SPI_getvalue(tup, desc, 3);
		items[i].attempts = DatumGetInt32(SPI_getbinval(tup, desc, 4, &isnull));
		items[i].in_use = DatumGetBool(SPI_getbinval(tup, desc, 5, &isnull));
	}
	const Settings &settings = g_settings;
	PrepareS3Session();
	bool (*interrupted)() = options.interrupted;
	CapturedError batch_error;
	if (!TryCore(
	        [&] {
		        const s3::Client &client = ProcessClient(settings);
		        for (int i = 0; i < n; i++) {
			        if (items[i].in_use)
				        continue;
			        try {
				        uri::S3Location loc;
				        if (!uri::ParseS3Uri(items[i].path, &loc))
					        throw Error(ErrorKind::kClient, "22023", "invalid path in the delete queue");
				        client.Delete(
				            s3::ObjectRef{loc.bucket, loc.key, items[i].version_id ? items[i].version_id : ""},
				            [interrupted] { return interrupted(); });
			        } catch (const Error &e) {
				        CaptureError(e, &errors[i]);
			        }
		        }
	        },
	        &batch_error)) {
		for (int i = 0; i < n; i++)
			if (!items[i].in_use && !errors[i].failed)
				errors[i] = batch_error;
	}

	SPIPlanPtr done_plan = nullptr;
	SPIPlanPtr retry_plan = nullptr;
	for (int i = 0; i < n; i++) {
		CapturedError &e = errors[i];
		if (e.failed) {
			if (e.kind == ErrorKind::kInterrupted) {
				result->interrupted = true;
				continue;
			}
			if (IsSystemic(e.kind)) {
				if (!result->systemic)
					result->systemic_error = e;
				result->systemic = true;
				continue;
			}
			if (retry_plan == nullptr) {
				Oid t[3] = {INT8OID, TEXTOID, INT8OID};
				retry_plan =
				    SPI_prepare("UPDATE reportstore.delete_queue SET attempts = attempts + 1, last_error = $2, "
				                "not_before = now() + $3 * interval '1 millisecond' WHERE id = $1",
				                3, t);
			}
			Datum v[3] = {Int64GetDatum(items[i].id), CStringGetTextDatum(e.message),
			              Int64GetDatum(RetryDelayMs(options, items[i].attempts))};
			SPI_execute_plan(retry_plan, v, nullptr, false, 0);
			result->failed++;
			continue;
		}
		if (done_plan == nullptr) {
			Oid t[3] = {INT8OID, TEXTOID, BOOLOID};
			// Forget the object too, unless a report points at this path again.
			done_plan =
			    SPI_prepare("WITH gone AS (DELETE FROM reportstore.delete_queue WHERE id = $1 RETURNING report_id) "
			                "DELETE FROM reportstore.objects o USING gone "
			                "WHERE o.report_id = gone.report_id AND o.path = $2 AND $3",
			                3, t);
		}
		Datum v[3] = {Int64GetDatum(items[i].id), CStringGetTextDatum(items[i].path), BoolGetDatum(!items[i].in_use)};
		SPI_execute_plan(done_plan, v, nullptr, false, 0);
		if (items[i].in_use)
			result->skipped++;
		else
			result->deleted++;
	}
	SPI_finish();
}

} // namespace reportstore::pg
