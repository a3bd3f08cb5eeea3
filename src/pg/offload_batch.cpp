#include "pg/offload_batch.hpp"

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/s3_client.hpp"
#include "core/uri.hpp"
#include "pg/catalog.hpp"
#include "pg/s3_session.hpp"
#include "pg/settings.hpp"
#include "pg/shared_state.hpp"

extern "C" {
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
};

// C++ state of a batch, owned by the batch's memory context.
struct BatchState {
	std::vector<s3::PutRequest> requests;
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
	                     "pg_column_size(r.report_data)::bigint, coalesce(s.attempts, 0) "
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
		ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR), errmsg("reportstore batch query failed: %s",
		                                                        SPI_result_code_string(rc))));
	uint64 rows = SPI_processed;
	SPITupleTable *tuptable = SPI_tuptable;
	Candidate *candidates = static_cast<Candidate *>(palloc0(sizeof(Candidate) * (rows + 1)));
	int count = 0;
	int64 bytes = 0;
	for (uint64 i = 0; i < rows; i++) {
		bool isnull;
		HeapTuple tuple = tuptable->vals[i];
		int64 size = DatumGetInt64(SPI_getbinval(tuple, tuptable->tupdesc, 4, &isnull));
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
		rc = SPI_execute_plan(plan, args, nullptr, true, 1);
		if (rc != SPI_OK_SELECT || SPI_processed != 1)
			ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR), errmsg("locked report %s vanished",
			                                                        candidates[i].report_id)));
		bool isnull;
		Datum body = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
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
	bool ran = TryCore(
	    [&] {
		    const s3::Client &client = ProcessClient(settings);
		    std::vector<int> index_of_request;
		    for (int i = 0; i < count; i++) {
			    try {
				    s3::PutRequest put;
				    put.bucket = settings.bucket;
				    put.key = uri::ReportObjectKey(candidates[i].report_id, candidates[i].format);
				    put.body = std::string_view(candidates[i].body, candidates[i].body_len);
				    state->requests.push_back(std::move(put));
				    index_of_request.push_back(i);
			    } catch (const Error &e) {
				    CaptureError(e, &errors[i]);
			    }
		    }
		    state->outcomes =
		        client.PutMany(state->requests, options.max_concurrency, [interrupted] { return interrupted(); });
		    for (std::size_t r = 0; r < state->outcomes.size(); r++) {
			    int i = index_of_request[r];
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

} // namespace reportstore::pg
