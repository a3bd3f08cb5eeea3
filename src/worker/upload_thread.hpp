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

namespace reportstore::pg {

// Starts the upload thread on the process's S3 client (ERROR when the
// settings are unusable or the thread cannot start).
s3::UploadPipeline *StartUploadThread(const s3::UploadPipeline::Options &options);

// Stops and joins the active upload thread, if any. Never raises.
void StopUploadThread() noexcept;

} // namespace reportstore::pg
