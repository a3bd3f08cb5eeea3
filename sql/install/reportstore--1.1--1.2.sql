-- reportstore 1.1 -> 1.2: nobody's code runs with more rights than theirs;
-- no report can stop the others.
--
-- * the reportstore_guard trigger is C code running with the rights of the
--   writer (no SECURITY DEFINER): minio_path may only name the report's own
--   key in reportstore.bucket or reportstore.allowed_buckets, and only
--   reportstore itself (or the table's owner, for imports) may set it;
-- * reportstore.delete_queue also keeps objects that must survive a
--   point-in-time restore without being deleted (recall without
--   delete_object); reportstore.objects holds the current object of each
--   offloaded report only;
-- * the worker, run_once, recall, verify, orphans and the status counts work
--   on the reports table as its owner (see src/pg/run_as.hpp);
-- * every function runs with a fixed search_path, every name is qualified;
-- * a partial index on the reports still to offload, so that a batch reads
--   only what it moves.
--
-- A fresh install of 1.2 runs 1.0, 1.0--1.1 and this file (the Makefile
-- concatenates them), so upgraded and fresh databases are the same.

\echo Use "ALTER EXTENSION reportstore UPDATE TO '1.2'" to load this file. \quit

-- Deletions and keeps -----------------------------------------------------------

ALTER TABLE reportstore.delete_queue ADD COLUMN delete_object boolean NOT NULL DEFAULT true;
COMMENT ON COLUMN reportstore.delete_queue.delete_object IS
    'true: delete the object after not_before; false: only keep it safe from orphans() until then';
CREATE INDEX delete_queue_path ON reportstore.delete_queue (path);
CREATE INDEX objects_path ON reportstore.objects (path);
COMMENT ON TABLE reportstore.delete_queue IS
    'objects no report points to any more (deleted, changed or recalled reports), deleted or kept until not_before';
COMMENT ON TABLE reportstore.objects IS
    'the object of each offloaded report: path, size, SHA-256, ETag, version';

-- 1.1 kept the rows of objects that no report points to any more (recalled
-- reports, new content): they become entries of the queue, which keep the
-- object for delete_delay unless a deletion is queued already.
DO $backfill$
DECLARE
    reports_table regclass := pg_catalog.to_regclass(pg_catalog.format('%I.reports', '@extschema@'));
BEGIN
    IF reports_table IS NULL THEN
        RETURN;
    END IF;
    EXECUTE pg_catalog.format($q$
        WITH released AS (
            DELETE FROM reportstore.objects o
             WHERE NOT EXISTS (SELECT 1 FROM %s r
                                WHERE r.report_id OPERATOR(pg_catalog.=) o.report_id
                                  AND r.minio_path::pg_catalog.text OPERATOR(pg_catalog.=) o.path)
            RETURNING o.report_id, o.path, o.version_id)
        INSERT INTO reportstore.delete_queue (report_id, path, version_id, not_before, delete_object)
        SELECT d.report_id, d.path, d.version_id,
               pg_catalog.now() OPERATOR(pg_catalog.+)
                 COALESCE(pg_catalog.current_setting('reportstore.delete_delay', true), '7d')::pg_catalog.interval,
               false
          FROM released d
         WHERE NOT EXISTS (SELECT 1 FROM reportstore.delete_queue q WHERE q.path OPERATOR(pg_catalog.=) d.path)$q$,
        reports_table);
END
$backfill$;

-- The reports still to offload, oldest first: what the worker reads. Like
-- idx_reports_minio_path it belongs to the application's table, so DROP
-- EXTENSION keeps it and pg_dump restores it with the table.
DO $index$
DECLARE
    reports_table regclass := pg_catalog.to_regclass(pg_catalog.format('%I.reports', '@extschema@'));
BEGIN
    IF reports_table IS NOT NULL
       AND pg_catalog.to_regclass(pg_catalog.format('%I.idx_reports_offload_pending', '@extschema@')) IS NULL THEN
        EXECUTE pg_catalog.format('CREATE INDEX idx_reports_offload_pending ON %s (created_at, report_id) '
                                  'WHERE minio_path IS NULL AND report_data IS NOT NULL', reports_table);
    END IF;
END
$index$;

-- The guard, in C, with the writer's rights -----------------------------------

CREATE OR REPLACE FUNCTION reportstore.reports_guard() RETURNS trigger
    LANGUAGE c SECURITY INVOKER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'reportstore_reports_guard';
COMMENT ON FUNCTION reportstore.reports_guard() IS 'trigger keeping reports and their objects consistent';

-- The 1.1 guard called it; the C guard wakes the worker itself.
DROP FUNCTION reportstore.wake_at_commit();

-- Counts as the table's owner, for roles granted reportstore.status --------------

CREATE OR REPLACE FUNCTION reportstore.report_counts(
    OUT offloaded bigint, OUT in_database bigint, OUT in_database_bytes bigint, OUT offloaded_bytes bigint)
    LANGUAGE c STABLE SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'reportstore_report_counts';
COMMENT ON FUNCTION reportstore.report_counts() IS
    'counts and sizes of offloaded and in-database reports (for reportstore.status), read as the table''s owner';

-- Reads only catalogs and reportstore's tables: safe to run as the extension's
-- owner, so that roles granted it need no privilege on those.
CREATE OR REPLACE FUNCTION reportstore.phase3_report(
    OUT reports bigint, OUT reports_offloaded bigint, OUT reports_in_database bigint,
    OUT all_offloaded boolean, OUT heap_bytes bigint, OUT toast_bytes bigint, OUT index_bytes bigint,
    OUT baseline_heap_bytes bigint, OUT baseline_toast_bytes bigint, OUT baseline_index_bytes bigint,
    OUT bytes_in_store bigint, OUT advice text)
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    t pg_catalog.regclass := pg_catalog.format('%I.reports', '@extschema@')::pg_catalog.regclass;
    toast pg_catalog.oid;
BEGIN
    SELECT c.reltoastrelid INTO toast FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) t;
    SELECT s.offloaded OPERATOR(pg_catalog.+) s.in_database, s.offloaded, s.in_database, s.offloaded_bytes
      INTO reports, reports_offloaded, reports_in_database, bytes_in_store
      FROM reportstore.report_counts() s;
    all_offloaded := reports_in_database OPERATOR(pg_catalog.=) 0;
    heap_bytes := pg_catalog.pg_relation_size(t);
    toast_bytes := CASE WHEN toast OPERATOR(pg_catalog.=) 0 THEN 0 ELSE pg_catalog.pg_total_relation_size(toast) END;
    index_bytes := pg_catalog.pg_indexes_size(t);
    SELECT b.heap_bytes, b.toast_bytes, b.index_bytes
      INTO baseline_heap_bytes, baseline_toast_bytes, baseline_index_bytes
      FROM reportstore.size_baseline b ORDER BY b.captured_at DESC LIMIT 1;
    advice := CASE
        WHEN NOT all_offloaded THEN
            pg_catalog.format('%s reports still hold report_data; keep report_data until reportstore.status shows 100 %%',
                              reports_in_database)
        ELSE
            'every report is offloaded. VACUUM reclaims the space of cleared report_data; VACUUM FULL (or pg_repack) '
            'returns it to the operating system. Dropping the report_data column is optional and irreversible: '
            'take a backup and run reportstore.verify(true) first; reportstore never drops it'
    END;
    RETURN;
END
$fn$;

CREATE OR REPLACE FUNCTION reportstore.capture_size_baseline() RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    t pg_catalog.regclass := pg_catalog.to_regclass(pg_catalog.format('%I.reports', '@extschema@'));
BEGIN
    IF t IS NULL THEN
        RETURN;
    END IF;
    DELETE FROM reportstore.size_baseline;
    EXECUTE pg_catalog.format(
        'INSERT INTO reportstore.size_baseline (reports, heap_bytes, toast_bytes, index_bytes)
         SELECT (SELECT pg_catalog.count(*) FROM %s), pg_catalog.pg_relation_size(%L::pg_catalog.regclass),
                COALESCE(pg_catalog.pg_relation_size(NULLIF(c.reltoastrelid, 0)), 0)
                  OPERATOR(pg_catalog.+) COALESCE((SELECT pg_catalog.sum(pg_catalog.pg_relation_size(i.indexrelid))
                                           FROM pg_catalog.pg_index i
                                          WHERE i.indrelid OPERATOR(pg_catalog.=) NULLIF(c.reltoastrelid, 0)), 0),
                pg_catalog.pg_indexes_size(%L::pg_catalog.regclass)
           FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) %L::pg_catalog.regclass', t, t, t, t);
END
$fn$;

-- Several workers per database, every database ---------------------------------

DROP VIEW reportstore.status;
DROP FUNCTION reportstore.worker_info();
CREATE FUNCTION reportstore.worker_info(
    OUT state text, OUT detail text, OUT pid integer, OUT paused boolean,
    OUT last_error text, OUT last_error_at timestamptz, OUT last_batch_at timestamptz,
    OUT uploads_last_minute integer, OUT uploads_per_second float8, OUT mib_per_second float8,
    OUT latency_p50_ms float8, OUT latency_p99_ms float8, OUT workers integer)
    LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'reportstore_worker_info';
COMMENT ON FUNCTION reportstore.worker_info() IS
    'state of the workers of this database and their upload figures over the last minute';

-- Temporary credentials (STS, web identity, instance roles) ------------------

CREATE FUNCTION reportstore.credentials_info(
    OUT source text, OUT expires_at timestamptz, OUT obtained_at timestamptz, OUT refreshing boolean,
    OUT last_error text, OUT last_error_at timestamptz)
    LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'reportstore_credentials_info';
COMMENT ON FUNCTION reportstore.credentials_info() IS
    'where the S3 credentials come from, when the temporary ones expire and the last failed refresh (never a secret)';

CREATE VIEW reportstore.status AS
WITH r AS (SELECT * FROM reportstore.report_counts()),
f AS (SELECT pg_catalog.count(*) AS failing FROM reportstore.offload_state s
       WHERE s.last_error_kind IS DISTINCT FROM 'recalled'),
w AS (SELECT * FROM reportstore.worker_info()),
c AS (SELECT * FROM reportstore.credentials_info())
SELECT r.offloaded AS reports_offloaded,
       r.offloaded_bytes AS bytes_offloaded,
       r.in_database AS reports_in_database,
       r.in_database_bytes AS bytes_in_database,
       f.failing AS reports_failing,
       pg_catalog.round(100.0 OPERATOR(pg_catalog.*) r.offloaded OPERATOR(pg_catalog./)
                        NULLIF(r.offloaded OPERATOR(pg_catalog.+) r.in_database, 0), 1) AS percent_migrated,
       CASE WHEN r.in_database OPERATOR(pg_catalog.=) 0 THEN interval '0'
            WHEN w.uploads_per_second OPERATOR(pg_catalog.>) 0
            THEN pg_catalog.make_interval(secs => r.in_database OPERATOR(pg_catalog./) w.uploads_per_second)
       END AS eta,
       w.state AS worker_state,
       w.detail AS worker_detail,
       w.workers,
       -- the worker's last error, or a failed refresh of the credentials if that came later
       CASE WHEN c.last_error_at OPERATOR(pg_catalog.>) w.last_error_at OR w.last_error_at IS NULL
            THEN COALESCE(c.last_error, w.last_error) ELSE w.last_error END AS last_error,
       GREATEST(w.last_error_at, c.last_error_at) AS last_error_at,
       c.source AS credential_source,
       c.expires_at AS credentials_expire_at,
       pg_catalog.round(w.uploads_per_second::pg_catalog.numeric, 2) AS uploads_per_second,
       pg_catalog.round(w.mib_per_second::pg_catalog.numeric, 2) AS mib_per_second,
       pg_catalog.round(w.latency_p50_ms::pg_catalog.numeric, 1) AS latency_p50_ms,
       pg_catalog.round(w.latency_p99_ms::pg_catalog.numeric, 1) AS latency_p99_ms
  FROM r, f, w, c;
COMMENT ON VIEW reportstore.status IS 'migration progress, worker state and upload performance of this database';
REVOKE ALL ON reportstore.status FROM PUBLIC;

-- Lifecycle rules also abort multipart uploads left incomplete ---------------------

DROP FUNCTION reportstore.lifecycle();
CREATE FUNCTION reportstore.lifecycle(OUT rule_id text, OUT prefix text, OUT status text,
    OUT expiration_days integer, OUT abort_incomplete_days integer)
    RETURNS SETOF record
    LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'reportstore_lifecycle';
COMMENT ON FUNCTION reportstore.lifecycle() IS 'lifecycle rules of the bucket';
DROP FUNCTION reportstore.set_lifecycle(integer, boolean);
CREATE FUNCTION reportstore.set_lifecycle(expire_after_days integer, confirm boolean DEFAULT false,
    OUT rule_id text, OUT prefix text, OUT status text, OUT expiration_days integer,
    OUT abort_incomplete_days integer)
    RETURNS SETOF record
    LANGUAGE c VOLATILE STRICT SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'reportstore_set_lifecycle';
COMMENT ON FUNCTION reportstore.set_lifecycle(integer, boolean) IS
    'install an expiry rule for objects under reports/ that also aborts incomplete multipart uploads (replaces the bucket''s lifecycle configuration; needs confirm => true)';
COMMENT ON FUNCTION reportstore.orphans(boolean, interval, integer) IS
    'objects under reports/ that no report points to and reportstore keeps for no restore, and incomplete multipart uploads (page by page); delete => true deletes or aborts those older than min_age';

-- Reads in bulk -------------------------------------------------------------------

CREATE FUNCTION @extschema@.report_fetch_many(report_ids uuid[])
    RETURNS TABLE (report_id uuid, report_data jsonb)
    LANGUAGE c STABLE STRICT SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'reportstore_report_fetch_many';
COMMENT ON FUNCTION @extschema@.report_fetch_many(uuid[]) IS
    'the content of many reports, in the order of the ids given (each once), objects fetched concurrently and verified; ids that do not exist or that the caller cannot see are left out';

-- Every function runs with a fixed search_path ----------------------------------

ALTER FUNCTION @extschema@.report_offload(uuid) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.report_fetch(uuid) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION @extschema@.report_url(uuid, interval) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION reportstore.pause() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION reportstore.resume() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION reportstore.wake() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION reportstore.run_once() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION reportstore.stats() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION reportstore.stats_reset() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION reportstore.verify(boolean) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION reportstore.orphans(boolean, interval, integer) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION reportstore.recall(uuid, boolean) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION reportstore.recall_many(uuid[], boolean) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION reportstore.release_kept_data() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION reportstore.progress() SET search_path = pg_catalog, pg_temp;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA reportstore FROM PUBLIC;
