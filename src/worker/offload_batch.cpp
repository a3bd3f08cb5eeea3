#include "worker/offload_batch.hpp"

#include <cstring>
#include <string>

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
#include "worker/batch_choice.hpp"
#include "worker/upload_thread.hpp"

extern "C" {
#include "common/pg_prng.h"
}

namespace reportstore::pg {

namespace {

// Uploads that ended are recorded once this many wait, or this many bytes:
// the UPDATE then runs while the next uploads are in flight.
constexpr int kRecordEvery = 64;
constexpr int64 kRecordEveryBytes = 16 << 20;

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

// Bodies whose uploads have ended, kept to hold the next texts: a fresh
// buffer of some MiB costs a page fault per 4 KiB, which in a VM costs
// about as much as writing the text.
struct SpareBodies {
	static constexpr int kMax = 2;
	char *data[kMax];
	size_t capacity[kMax];
	int n;
};

void KeepSpare(SpareBodies *spares, TextBuffer *body) {
	if (body->data == nullptr)
		return;
	int slot = spares->n < SpareBodies::kMax ? spares->n++ : -1;
	if (slot < 0) {
		// Full: replace the smallest, if this one is larger.
		slot = 0;
		for (int k = 1; k < SpareBodies::kMax; k++)
			if (spares->capacity[k] < spares->capacity[slot])
				slot = k;
		if (spares->capacity[slot] >= body->capacity) {
			pfree(body->data);
			body->data = nullptr;
			return;
		}
		pfree(spares->data[slot]);
	}
	spares->data[slot] = body->data;
	spares->capacity[slot] = body->capacity;
	body->data = nullptr;
}

// A spare with room for `expected` bytes into *body, the smallest that fits.
bool TakeSpare(SpareBodies *spares, size_t expected, size_t limit, TextBuffer *body) {
	int best = -1;
	for (int k = 0; k < spares->n; k++)
		if (spares->capacity[k] >= expected && (best < 0 || spares->capacity[k] < spares->capacity[best]))
			best = k;
	if (best < 0)
		return false;
	body->data = spares->data[best];
	body->capacity = spares->capacity[best];
	body->len = 0;
	body->limit = limit;
	body->exceeded = false;
	body->out_of_memory = false;
	spares->n--;
	spares->data[best] = spares->data[spares->n];
	spares->capacity[best] = spares->capacity[spares->n];
	return true;
}

// Everything one batch works on, in the batch's memory (trivially
// destructible: an ERROR may unwind through it).
struct Batch {
	const ReportTable *table;
	const BatchOptions *options;
	MemoryContext context;
	Candidate *candidates;
	int count;
	UploadedObject *uploaded;
	CapturedError *errors;
	bool *not_sent;
	int unrecorded; // uploads ended and verified, not recorded yet
	int64 unrecorded_bytes;
	SpareBodies spares;
};

// Step 3: the text of one report, in the batch context. A text that cannot
// exist (over 1 GB) or memory that cannot be had fails this report only.
void Serialize(Batch *batch, Candidate *c, CapturedError *error) {
	MemoryContext old = MemoryContextSwitchTo(batch->context);
	Jsonb *jsonb = DatumGetJsonbP(c->report_data);
	// A text that may not fit is measured first, so that a report whose text
	// cannot exist fails without a gigabyte allocated for nothing.
	TextBuffer measure;
	InitTextCounter(&measure, kMaxReportTextBytes);
	const bool fits = !TextMayExceed(VARSIZE(jsonb), kMaxReportTextBytes) || JsonbToText(jsonb, &measure);
	// The text is usually a little larger than the binary form.
	const size_t expected =
	    fits ? (measure.len > 0 ? measure.len : static_cast<size_t>(c->raw_size) + c->raw_size / 8 + 64) : 64;
	if (!fits || !TakeSpare(&batch->spares, expected, kMaxReportTextBytes, &c->body))
		InitTextBuffer(&c->body, expected, kMaxReportTextBytes);
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

// Core zone: the outcomes the thread returned, into the batch. Returns how
// many ended; their indexes are in ended[].
int CollectEnded(s3::UploadPipeline::Finished finished, Batch *batch, int *ended) {
	int n = 0;
	for (auto &f : finished) {
		const int i = static_cast<int>(f.first);
		const s3::PutOutcome &outcome = f.second;
		ended[n++] = i;
		if (outcome.error) {
			CaptureError(*outcome.error, &batch->errors[i]);
			batch->not_sent[i] = outcome.not_sent;
			continue;
		}
		try {
			FillUploadedObject(batch->candidates[i].path, *outcome.result, &batch->uploaded[i]);
		} catch (const Error &e) {
			CaptureError(e, &batch->errors[i]);
		}
	}
	return n;
}

// Step 5 for the verified uploads not recorded yet: one UPDATE of the
// reports table (as its owner: the owner's triggers run with the owner's
// rights) and one INSERT into reportstore.objects.
void RecordUploaded(Batch *batch) {
	const int count = batch->count;
	auto *ids = static_cast<Datum *>(palloc(sizeof(Datum) * count));
	auto *paths = static_cast<const char **>(palloc(sizeof(char *) * count));
	auto *objects = static_cast<const UploadedObject **>(palloc(sizeof(UploadedObject *) * count));
	int n = 0;
	for (int i = 0; i < count; i++) {
		Candidate &c = batch->candidates[i];
		const UploadedObject &u = batch->uploaded[i];
		if (!u.ok || c.recorded)
			continue;
		c.recorded = true;
		ids[n] = c.report_uuid;
		paths[n] = u.path;
		objects[n] = &u;
		n++;
	}
	RoleScope owner;
	BeginTableOwner(*batch->table, &owner);
	RecordOffloads(*batch->table, ids, paths, n, batch->options->keep_report_data);
	EndRole(&owner);
	RecordObjects(*batch->table, ids, objects, n);
	pfree(ids);
	pfree(paths);
	pfree(objects);
	batch->unrecorded = 0;
	batch->unrecorded_bytes = 0;
}

// After uploads ended: keeps their bodies for the next texts, and records
// the verified ones once enough wait.
void AfterEnded(Batch *batch, const int *ended, int n, bool record_now) {
	for (int k = 0; k < n; k++) {
		const int i = ended[k];
		KeepSpare(&batch->spares, &batch->candidates[i].body);
		if (batch->uploaded[i].ok) {
			batch->unrecorded++;
			batch->unrecorded_bytes += batch->uploaded[i].size;
		}
	}
	if (batch->unrecorded > 0 &&
	    (record_now || batch->unrecorded >= kRecordEvery || batch->unrecorded_bytes >= kRecordEveryBytes))
		RecordUploaded(batch);
}

// The object path of each report; one that cannot have one fails alone.
// Then one statement cancels the queued deletions of them all.
void PlanPaths(Batch *batch) {
	const Settings &settings = g_settings;
	auto *paths = static_cast<const char **>(palloc(sizeof(char *) * batch->count));
	int n = 0;
	for (int i = 0; i < batch->count; i++) {
		Candidate &c = batch->candidates[i];
		c.path[0] = '\0';
		if (!TryCore(
		        [&] {
			        CopyObjectPath(settings.bucket, uri::ReportObjectKey(c.report_id, c.format ? c.format : ""),
			                       c.path);
		        },
		        &batch->errors[i]))
			continue;
		paths[n++] = c.path;
	}
	// A pending deletion of these paths is obsolete: the objects are about to
	// be written again. This waits for a delete batch that holds one, so
	// that its DELETE cannot land after our PUT.
	CancelQueuedDeletions(*batch->table, paths, n);
	pfree(paths);
}

// Steps 3 to 5: each report is serialized here while the upload thread
// hashes, compresses and uploads the ones before it, and the uploads that
// ended are recorded meanwhile. A body is reused or freed as soon as its
// upload has ended, so memory is bounded by the thread's window, not by the
// batch. The row locks stay until the batch commits: a report's object key
// is fixed, and the lock is what keeps two writers of different content
// from racing on it.
void UploadAll(Batch *batch) {
	const Settings &settings = g_settings;
	const BatchOptions &options = *batch->options;
	const int count = batch->count;
	int64 largest = 0;
	for (int i = 0; i < count; i++)
		largest = Max(largest, batch->candidates[i].raw_size);
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
			batch->errors[i] = start_failure;
		return;
	}
	bool (*interrupted)() = options.interrupted;
	const auto stop_asked = [interrupted] { return interrupted(); };
	auto *ended = static_cast<int *>(MemoryContextAlloc(batch->context, sizeof(int) * (count + 1)));
	bool stopped = false;
	for (int i = 0; i < count && !stopped; i++) {
		Candidate &c = batch->candidates[i];
		CapturedError &error = batch->errors[i];
		if (c.path[0] == '\0')
			continue;
		Serialize(batch, &c, &error);
		if (!c.has_body)
			continue;
		bool queued = false;
		int n = 0;
		TryCore(
		    [&] {
			    s3::PutRequest put;
			    put.bucket = settings.bucket;
			    put.key = c.path + std::strlen("s3://") + put.bucket.size() + 1;
			    put.body = std::string_view(c.body.data, c.body.len);
			    put.content_type = "application/json";
			    ApplyObjectSettings(settings, &put);
			    queued = pipeline->Submit(static_cast<std::size_t>(i), std::move(put), stop_asked);
			    n = CollectEnded(pipeline->Take(), batch, ended);
		    },
		    &error);
		AfterEnded(batch, ended, n, false);
		stopped = !queued && !error.failed;
	}
	CapturedError failure;
	int n = 0;
	if (!TryCore([&] { n = CollectEnded(pipeline->Finish(stop_asked), batch, ended); }, &failure)) {
		for (int i = 0; i < count; i++)
			if (!batch->uploaded[i].ok && !batch->errors[i].failed)
				batch->errors[i] = failure;
	}
	StopUploadThread();
	AfterEnded(batch, ended, n, true);
	if (stopped)
		for (int i = 0; i < count; i++)
			if (!batch->uploaded[i].ok && !batch->errors[i].failed)
				CaptureMessage(ErrorKind::kInterrupted, "57014", "the batch was interrupted", &batch->errors[i]);
}

} // namespace

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

	Batch batch;
	std::memset(&batch, 0, sizeof(batch));
	batch.table = &table;
	batch.options = &options;
	batch.context = batch_context;
	batch.candidates = candidates;
	batch.count = count;
	batch.uploaded =
	    static_cast<UploadedObject *>(MemoryContextAllocZero(batch_context, sizeof(UploadedObject) * count));
	batch.errors = static_cast<CapturedError *>(MemoryContextAllocZero(batch_context, sizeof(CapturedError) * count));
	batch.not_sent = static_cast<bool *>(MemoryContextAllocZero(batch_context, sizeof(bool) * count));
	PlanPaths(&batch);
	UploadAll(&batch);
	const UploadedObject *uploaded = batch.uploaded;
	const CapturedError *errors = batch.errors;
	const bool *not_sent = batch.not_sent;

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

	// Counted once the batch has got this far, not per recorded chunk: an
	// ERROR or a cancel before here rolls the records back, and the counters
	// (shared memory) must not keep them.
	for (int i = 0; i < count; i++) {
		if (!uploaded[i].ok)
			continue;
		RecordUpload(uploaded[i].size, uploaded[i].seconds);
		if (candidates[i].attempts > 0)
			CountAdd(kRetries, 1);
		result->offloaded++;
		result->bytes += uploaded[i].size;
	}

	// The failures, each on its own (the uploads are recorded already).
	for (int i = 0; i < count; i++) {
		Candidate &c = candidates[i];
		if (uploaded[i].ok)
			continue;
		const CapturedError &e = errors[i];
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
