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
-- src/worker/wake.cpp), so the application's table carries no trigger.

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
f AS (SELECT count(*) AS failing FROM reportstore.offload_state),
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
