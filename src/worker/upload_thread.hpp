// The upload thread of a batch (s3::UploadPipeline) seen from PostgreSQL.
//
// The thread reads report bodies that live in the batch's memory context.
// Whatever ends the batch - its normal end, an ERROR or a FATAL thrown while
// the next report is serialized - the thread must have stopped before that
// memory can go: so at most one pipeline is active per process, and the
// (sub)transaction abort callbacks stop and join it, before PostgreSQL frees
// the memory of the aborted work. PostgreSQL zone.
#pragma once

#include "pg/pg_prelude.hpp"

#include "core/s3/upload_pipeline.hpp"
#include "pg/guard.hpp"

namespace reportstore::pg {

// Starts the upload thread on the process's S3 client. Never raises for the
// client's failures: when the settings are unusable, temporary credentials
// cannot be obtained or the thread cannot start, returns nullptr with the
// failure in *error, so that the batch reports it as what it is (systemic, not
// the fault of the reports it has locked) instead of an ERROR that would be
// taken for a database error of those reports.
s3::UploadPipeline *StartUploadThread(const s3::UploadPipeline::Options &options, CapturedError *error);

// Stops and joins the active upload thread, if any. Never raises.
void StopUploadThread() noexcept;

} // namespace reportstore::pg
