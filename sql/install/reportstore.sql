-- reportstore: keep reports.report_data in S3-compatible object storage.
--
-- The application owns the reports table (in the schema this extension is
-- installed into). This script only adds the seed's Phase 1 column and index
-- when they are missing; it never rewrites the table, and DROP EXTENSION
-- leaves the table, its columns and its data alone.

\echo Use "CREATE EXTENSION reportstore" to load this file. \quit

DO $phase1$
DECLARE
    reports_table regclass := to_regclass(format('%I.reports', '@extschema@'));
    missing text;
BEGIN
    IF reports_table IS NULL AND current_setting('row_security') = 'off' THEN
        -- pg_dump scripts set row_security = off (sessions default to on) and
        -- create extensions before tables: the restored table brings its own
        -- minio_path column and index.
        RAISE NOTICE 'table "@extschema@.reports" does not exist yet; assuming a restore from pg_dump';
        RETURN;
    END IF;
    IF reports_table IS NULL THEN
        RAISE EXCEPTION 'table "@extschema@.reports" does not exist'
            USING ERRCODE = 'undefined_table',
                  DETAIL = 'reportstore offloads the report_data column of the application''s reports table.',
                  HINT = 'Create the reports table first, or install the extension into the schema that holds it: CREATE EXTENSION reportstore SCHEMA <schema>.';
    END IF;

    -- Columns reportstore reads or writes, with the types it relies on.
    SELECT string_agg(rtrim(format('%s %s', c.name, c.type)), ', ')
      INTO missing
      FROM (VALUES ('report_id', 'uuid'), ('format', NULL), ('report_data', 'jsonb'),
                   ('updated_at', NULL)) AS c(name, type)
     WHERE NOT EXISTS (
           SELECT 1 FROM pg_attribute a
            WHERE a.attrelid = reports_table AND a.attname = c.name
              AND NOT a.attisdropped AND a.attnum > 0
              AND (c.type IS NULL OR a.atttypid = c.type::regtype));
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'table % lacks columns reportstore needs: %', reports_table, missing
            USING ERRCODE = 'undefined_column',
                  HINT = 'reportstore expects the reports table of the MinIO integration design: report_id uuid, format, report_data jsonb, updated_at.';
    END IF;

    -- Phase 1: the new column. ADD COLUMN of a nullable column without a
    -- default does not rewrite the table.
    IF NOT EXISTS (SELECT 1 FROM pg_attribute
                    WHERE attrelid = reports_table AND attname = 'minio_path'
                      AND NOT attisdropped) THEN
        EXECUTE format('ALTER TABLE %s ADD COLUMN minio_path varchar(500)', reports_table);
    END IF;
END
$phase1$;

-- The partial index of the seed. An index is not an extension member: it
-- depends on the application's table only, so DROP EXTENSION keeps it.
DO $index$
DECLARE
    reports_table regclass := to_regclass(format('%I.reports', '@extschema@'));
BEGIN
    IF reports_table IS NOT NULL AND to_regclass(format('%I.idx_reports_minio_path', '@extschema@')) IS NULL THEN
        EXECUTE format('CREATE INDEX idx_reports_minio_path ON %s (minio_path) WHERE minio_path IS NOT NULL',
                       reports_table);
    END IF;
END
$index$;

CREATE SCHEMA reportstore;
COMMENT ON SCHEMA reportstore IS 'reportstore administration: status, worker control and DBA tools';

-- What was uploaded for each offloaded report. report_fetch() checks the
-- bytes it downloads against sha256 (and reads version_id when the bucket is
-- versioned). Dumped by pg_dump with the database, so a restored database
-- still knows its checksums.
CREATE TABLE reportstore.objects (
    report_id   uuid PRIMARY KEY,
    path        text NOT NULL,
    size        bigint NOT NULL,
    sha256      text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    etag        text,
    version_id  text,
    uploaded_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE reportstore.objects IS 'objects uploaded for offloaded reports: path, size, SHA-256, ETag, version';

-- Reports whose offload failed: attempts, last error and the time of the next
-- try (exponential backoff with jitter). A row disappears on success.
CREATE TABLE reportstore.offload_state (
    report_id       uuid PRIMARY KEY,
    attempts        integer NOT NULL,
    last_error_kind text,
    last_error      text,
    last_attempt_at timestamptz,
    next_attempt_at timestamptz NOT NULL
);
COMMENT ON TABLE reportstore.offload_state IS 'per-report offload failures and retry schedule';

SELECT pg_catalog.pg_extension_config_dump('reportstore.objects', '');
SELECT pg_catalog.pg_extension_config_dump('reportstore.offload_state', '');
REVOKE ALL ON reportstore.objects, reportstore.offload_state FROM PUBLIC;

CREATE FUNCTION report_offload(report_id uuid) RETURNS text
    LANGUAGE c VOLATILE STRICT
    AS 'MODULE_PATHNAME', 'reportstore_report_offload';
COMMENT ON FUNCTION report_offload(uuid) IS
    'upload a report''s report_data to object storage, verify it, set minio_path and return it';

CREATE FUNCTION report_fetch(report_id uuid) RETURNS jsonb
    LANGUAGE c STABLE STRICT
    AS 'MODULE_PATHNAME', 'reportstore_report_fetch';
COMMENT ON FUNCTION report_fetch(uuid) IS
    'return a report''s content, from report_data or from its verified object in object storage';

-- Background worker ----------------------------------------------------------

-- New reports wake the worker at commit through an executor hook (see
-- src/pg/wake_hooks.cpp), so the application's table carries no trigger.

CREATE FUNCTION reportstore.pause() RETURNS void
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'reportstore_pause';
COMMENT ON FUNCTION reportstore.pause() IS 'pause the background worker (until reportstore.resume() or a restart)';
CREATE FUNCTION reportstore.resume() RETURNS void
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'reportstore_resume';
COMMENT ON FUNCTION reportstore.resume() IS 'resume the background worker';
CREATE FUNCTION reportstore.wake() RETURNS boolean
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'reportstore_wake';
COMMENT ON FUNCTION reportstore.wake() IS 'wake the background worker now; false if it is not running';
CREATE FUNCTION reportstore.run_once() RETURNS bigint
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'reportstore_run_once';
COMMENT ON FUNCTION reportstore.run_once() IS
    'offload every pending report now, in this transaction, batch by batch; returns how many were offloaded';

CREATE FUNCTION reportstore.worker_info(
    OUT state text, OUT detail text, OUT pid integer, OUT paused boolean,
    OUT last_error text, OUT last_error_at timestamptz, OUT last_batch_at timestamptz,
    OUT uploads_last_minute integer, OUT uploads_per_second float8, OUT mib_per_second float8,
    OUT latency_p50_ms float8, OUT latency_p99_ms float8)
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'reportstore_worker_info';
COMMENT ON FUNCTION reportstore.worker_info() IS 'background worker state and upload figures over the last minute';

CREATE FUNCTION reportstore.stats(
    OUT uploads bigint, OUT upload_bytes bigint,
    OUT upload_failures_transient bigint, OUT upload_failures_systemic bigint,
    OUT upload_failures_integrity bigint, OUT upload_failures_other bigint,
    OUT retries bigint, OUT fetches bigint, OUT fetch_bytes bigint, OUT fetch_failures bigint,
    OUT stats_reset timestamptz)
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'reportstore_stats';
COMMENT ON FUNCTION reportstore.stats() IS 'cumulative upload and fetch counters since the last reset';
CREATE FUNCTION reportstore.stats_reset() RETURNS void
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'reportstore_stats_reset';
COMMENT ON FUNCTION reportstore.stats_reset() IS 'reset the counters of reportstore.stats()';

-- Counts over the reports table, computed with dynamic SQL so that no
-- extension object depends on the application's table (pg_dump creates
-- extensions before tables).
CREATE FUNCTION reportstore.report_counts(
    OUT offloaded bigint, OUT in_database bigint, OUT in_database_bytes bigint, OUT offloaded_bytes bigint)
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
    AS $fn$
BEGIN
    EXECUTE format($q$
        SELECT count(*) FILTER (WHERE r.minio_path IS NOT NULL),
               count(*) FILTER (WHERE r.minio_path IS NULL AND r.report_data IS NOT NULL),
               coalesce(sum(pg_column_size(r.report_data)) FILTER (WHERE r.minio_path IS NULL), 0)::bigint,
               coalesce(sum(o.size) FILTER (WHERE r.minio_path = o.path), 0)::bigint
          FROM %s r LEFT JOIN reportstore.objects o ON o.report_id = r.report_id$q$,
        format('%I.reports', '@extschema@'))
      INTO offloaded, in_database, in_database_bytes, offloaded_bytes;
END
$fn$;

CREATE VIEW reportstore.status AS
WITH r AS (SELECT * FROM reportstore.report_counts()),
f AS (SELECT count(*) AS failing FROM reportstore.offload_state WHERE last_error_kind IS DISTINCT FROM 'recalled'),
w AS (SELECT * FROM reportstore.worker_info())
SELECT r.offloaded AS reports_offloaded,
       r.offloaded_bytes AS bytes_offloaded,
       r.in_database AS reports_in_database,
       r.in_database_bytes AS bytes_in_database,
       f.failing AS reports_failing,
       round(100.0 * r.offloaded / nullif(r.offloaded + r.in_database, 0), 1) AS percent_migrated,
       CASE WHEN r.in_database = 0 THEN interval '0'
            WHEN w.uploads_per_second > 0 THEN make_interval(secs => r.in_database / w.uploads_per_second)
       END AS eta,
       w.state AS worker_state,
       w.detail AS worker_detail,
       w.last_error,
       w.last_error_at,
       round(w.uploads_per_second::numeric, 2) AS uploads_per_second,
       round(w.mib_per_second::numeric, 2) AS mib_per_second,
       round(w.latency_p50_ms::numeric, 1) AS latency_p50_ms,
       round(w.latency_p99_ms::numeric, 1) AS latency_p99_ms
  FROM r, f, w;
COMMENT ON VIEW reportstore.status IS 'migration progress, worker state and upload performance';

-- DBA functions are not for PUBLIC: grant them to a monitoring or admin role.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA reportstore FROM PUBLIC;
REVOKE ALL ON reportstore.status FROM PUBLIC;

-- Lifecycle and consistency (1.1) ---------------------------------------------

-- Objects of deleted reports, deleted by the worker once not_before has
-- passed (reportstore.delete_delay after the DELETE committed, so that a
-- point-in-time restore of the database still finds its objects).
CREATE TABLE reportstore.delete_queue (
    id          bigserial PRIMARY KEY,
    report_id   uuid NOT NULL,
    path        text NOT NULL,
    version_id  text,
    enqueued_at timestamptz NOT NULL DEFAULT now(),
    not_before  timestamptz NOT NULL,
    attempts    integer NOT NULL DEFAULT 0,
    last_error  text
);
CREATE INDEX delete_queue_not_before ON reportstore.delete_queue (not_before);
COMMENT ON TABLE reportstore.delete_queue IS 'objects to delete after reportstore.delete_delay (deleted or recalled reports)';
SELECT pg_catalog.pg_extension_config_dump('reportstore.delete_queue', '');
SELECT pg_catalog.pg_extension_config_dump('reportstore.delete_queue_id_seq', '');

-- Sizes of the reports table when reportstore was installed, for the Phase 3
-- report (what the migration saved).
CREATE TABLE reportstore.size_baseline (
    captured_at  timestamptz NOT NULL DEFAULT now(),
    reports      bigint NOT NULL,
    heap_bytes   bigint NOT NULL,
    toast_bytes  bigint NOT NULL,
    index_bytes  bigint NOT NULL
);
COMMENT ON TABLE reportstore.size_baseline IS 'sizes of the reports table before the migration (see reportstore.phase3_report())';
SELECT pg_catalog.pg_extension_config_dump('reportstore.size_baseline', '');

CREATE FUNCTION reportstore.capture_size_baseline() RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    t regclass := to_regclass(format('%I.reports', '@extschema@'));
BEGIN
    IF t IS NULL THEN
        RETURN;
    END IF;
    DELETE FROM reportstore.size_baseline;
    EXECUTE format('INSERT INTO reportstore.size_baseline (reports, heap_bytes, toast_bytes, index_bytes)
                    SELECT (SELECT count(*) FROM %s), pg_relation_size(%L::regclass),
                           coalesce(pg_relation_size(NULLIF(c.reltoastrelid, 0)), 0)
                             + coalesce((SELECT sum(pg_relation_size(i.indexrelid)) FROM pg_index i
                                          WHERE i.indrelid = NULLIF(c.reltoastrelid, 0)), 0),
                           pg_indexes_size(%L::regclass)
                      FROM pg_class c WHERE c.oid = %L::regclass', t, t, t, t);
END
$fn$;
COMMENT ON FUNCTION reportstore.capture_size_baseline() IS 'record the current sizes of the reports table as the Phase 3 baseline';
SELECT reportstore.capture_size_baseline();

CREATE FUNCTION reportstore.wake_at_commit() RETURNS void
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'reportstore_wake_at_commit';
COMMENT ON FUNCTION reportstore.wake_at_commit() IS 'wake the background worker when this transaction commits';

-- Keeps reports and objects consistent under the application's writes:
-- * new content wins: updating report_data of an offloaded report clears
--   minio_path in the same transaction, and the worker offloads it again;
-- * minio_path may only be set to this report's own path
--   (s3://{bucket}/reports/{report_id}/report.{format}), and never cleared
--   while the content lives only in the object store;
-- * deleting a report queues its object for deletion after delete_delay
--   (a rolled-back DELETE queues nothing: the queue is transactional).
CREATE FUNCTION reportstore.reports_guard() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.minio_path IS NOT NULL THEN
            INSERT INTO reportstore.delete_queue (report_id, path, version_id, not_before)
            SELECT OLD.report_id, OLD.minio_path,
                   (SELECT o.version_id FROM reportstore.objects o
                     WHERE o.report_id = OLD.report_id AND o.path = OLD.minio_path),
                   now() + coalesce(current_setting('reportstore.delete_delay', true), '7d')::interval;
            PERFORM reportstore.wake_at_commit();
        END IF;
        DELETE FROM reportstore.offload_state WHERE report_id = OLD.report_id;
        RETURN OLD;
    END IF;

    IF TG_OP = 'UPDATE' AND OLD.minio_path IS NOT NULL
       AND NEW.report_data IS NOT NULL
       AND NEW.report_data IS DISTINCT FROM OLD.report_data
       AND NEW.minio_path IS NOT DISTINCT FROM OLD.minio_path THEN
        NEW.minio_path := NULL;
    END IF;

    IF NEW.minio_path IS NOT NULL
       AND (TG_OP = 'INSERT' OR NEW.minio_path IS DISTINCT FROM OLD.minio_path)
       AND NEW.minio_path !~ ('^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/reports/' || NEW.report_id::text
                              || '/report\.' || lower(NEW.format::text) || '$') THEN
        RAISE EXCEPTION 'invalid minio_path for report %', NEW.report_id
            USING ERRCODE = 'check_violation',
                  DETAIL = format('minio_path must be s3://{bucket}/reports/%s/report.%s.', NEW.report_id,
                                  lower(NEW.format::text)),
                  HINT = 'Let report_offload() or the background worker set minio_path.';
    END IF;

    IF TG_OP = 'UPDATE' AND OLD.minio_path IS NOT NULL AND NEW.minio_path IS NULL
       AND NEW.report_data IS NULL THEN
        RAISE EXCEPTION 'report % would lose its content', NEW.report_id
            USING ERRCODE = 'check_violation',
                  DETAIL = 'Its content is only in the object store, at ' || OLD.minio_path || '.',
                  HINT = 'Use reportstore.recall() to bring the report back into report_data first.';
    END IF;
    RETURN NEW;
END
$fn$;
COMMENT ON FUNCTION reportstore.reports_guard() IS 'trigger keeping reports and their objects consistent';

DO $guard$
BEGIN
    IF to_regclass(format('%I.reports', '@extschema@')) IS NOT NULL THEN
        EXECUTE format('CREATE TRIGGER reportstore_guard BEFORE INSERT OR UPDATE OR DELETE ON %I.reports
                        FOR EACH ROW EXECUTE FUNCTION reportstore.reports_guard()', '@extschema@');
    END IF;
END
$guard$;

CREATE FUNCTION reportstore.verify(full boolean DEFAULT false,
    OUT report_id uuid, OUT minio_path text, OUT problem text, OUT detail text)
    RETURNS SETOF record
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'reportstore_verify';
COMMENT ON FUNCTION reportstore.verify(boolean) IS
    'check every offloaded report''s object (HEAD: exists, size, checksum metadata; full: GET and SHA-256); one row per problem';

CREATE FUNCTION reportstore.orphans(delete boolean DEFAULT false, min_age interval DEFAULT '1 day',
    page_size integer DEFAULT 1000, OUT key text, OUT size bigint, OUT last_modified text, OUT action text)
    RETURNS SETOF record
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'reportstore_orphans';
COMMENT ON FUNCTION reportstore.orphans(boolean, interval, integer) IS
    'objects under reports/ that no report points to (ListObjectsV2, page by page); delete => true deletes those older than min_age';

CREATE FUNCTION reportstore.recall(report_id uuid, delete_object boolean DEFAULT false) RETURNS boolean
    LANGUAGE c VOLATILE STRICT AS 'MODULE_PATHNAME', 'reportstore_recall';
COMMENT ON FUNCTION reportstore.recall(uuid, boolean) IS
    'bring an offloaded report back into report_data (verified); optionally queue its object for deletion';
CREATE FUNCTION reportstore.recall_many(report_ids uuid[], delete_objects boolean DEFAULT false) RETURNS bigint
    LANGUAGE c VOLATILE STRICT AS 'MODULE_PATHNAME', 'reportstore_recall_many';
COMMENT ON FUNCTION reportstore.recall_many(uuid[], boolean) IS
    'recall a set of reports, e.g. reportstore.recall_many(ARRAY(SELECT report_id FROM reports WHERE ...))';

CREATE FUNCTION reportstore.phase3_report(
    OUT reports bigint, OUT reports_offloaded bigint, OUT reports_in_database bigint,
    OUT all_offloaded boolean, OUT heap_bytes bigint, OUT toast_bytes bigint, OUT index_bytes bigint,
    OUT baseline_heap_bytes bigint, OUT baseline_toast_bytes bigint, OUT baseline_index_bytes bigint,
    OUT bytes_in_store bigint, OUT advice text)
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    t regclass := format('%I.reports', '@extschema@')::regclass;
    toast oid;
BEGIN
    SELECT c.reltoastrelid INTO toast FROM pg_class c WHERE c.oid = t;
    SELECT s.offloaded + s.in_database, s.offloaded, s.in_database, s.offloaded_bytes
      INTO reports, reports_offloaded, reports_in_database, bytes_in_store
      FROM reportstore.report_counts() s;
    all_offloaded := reports_in_database = 0;
    heap_bytes := pg_relation_size(t);
    toast_bytes := CASE WHEN toast = 0 THEN 0 ELSE pg_total_relation_size(toast) END;
    index_bytes := pg_indexes_size(t);
    SELECT b.heap_bytes, b.toast_bytes, b.index_bytes
      INTO baseline_heap_bytes, baseline_toast_bytes, baseline_index_bytes
      FROM reportstore.size_baseline b ORDER BY b.captured_at DESC LIMIT 1;
    advice := CASE
        WHEN NOT all_offloaded THEN
            format('%s reports still hold report_data; keep report_data until reportstore.status shows 100 %%', reports_in_database)
        ELSE
            'every report is offloaded. VACUUM reclaims the space of cleared report_data; VACUUM FULL (or pg_repack) '
            'returns it to the operating system. Dropping the report_data column is optional and irreversible: '
            'take a backup and run reportstore.verify(true) first; reportstore never drops it'
    END;
    RETURN;
END
$fn$;
COMMENT ON FUNCTION reportstore.phase3_report() IS 'Phase 3 helper: space saved by the migration and whether every report is offloaded';

CREATE FUNCTION report_url(report_id uuid, expires interval DEFAULT '15 minutes') RETURNS text
    LANGUAGE c VOLATILE STRICT AS 'MODULE_PATHNAME', 'reportstore_report_url';
COMMENT ON FUNCTION report_url(uuid, interval) IS
    'presigned GET URL of an offloaded report (NULL while it is in the database); needs SELECT on the row';

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA reportstore FROM PUBLIC;
