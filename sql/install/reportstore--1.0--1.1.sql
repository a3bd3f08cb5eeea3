-- reportstore 1.0 -> 1.1: lifecycle and consistency.
--
-- * the reportstore_guard trigger on reports: new content wins, minio_path is
--   validated, content is never lost, deletes queue their objects;
-- * reportstore.delete_queue processed by the worker after delete_delay;
-- * verify(), orphans(), recall(), recall_many(), phase3_report(), report_url(),
--   lifecycle(), set_lifecycle();
-- * reportstore.status no longer counts recalled reports as failing.
--
-- A fresh install of 1.1 runs reportstore--1.0.sql and then this file (the
-- Makefile concatenates them), so upgraded and fresh databases are the same.

\echo Use "ALTER EXTENSION reportstore UPDATE TO '1.1'" to load this file. \quit

-- Recalled reports are pinned in offload_state; they are not failing.
CREATE OR REPLACE VIEW reportstore.status AS
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
DECLARE
    suffix text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        -- The object minio_path names, the last one uploaded for this report
        -- if that differs (e.g. the report was changed since and its new
        -- offload has not happened yet), and its key in the current bucket.
        INSERT INTO reportstore.delete_queue (report_id, path, version_id, not_before)
        SELECT OLD.report_id, p.path,
               (SELECT o.version_id FROM reportstore.objects o
                 WHERE o.report_id = OLD.report_id AND o.path = p.path),
               now() + coalesce(current_setting('reportstore.delete_delay', true), '7d')::interval
          FROM (SELECT OLD.minio_path AS path WHERE OLD.minio_path IS NOT NULL
                UNION
                SELECT o.path FROM reportstore.objects o WHERE o.report_id = OLD.report_id
                UNION
                -- An upload whose transaction never committed (a killed
                -- session, a crash) may have left an object at the report's
                -- key; deleting a missing object is harmless.
                SELECT format('s3://%s/reports/%s/report.%s',
                              coalesce(nullif(current_setting('reportstore.bucket', true), ''), 'reports'),
                              OLD.report_id, lower(OLD.format::text))
                 WHERE OLD.report_data IS NOT NULL AND lower(OLD.format::text) ~ '^[a-z0-9_]{1,32}$') p;
        IF FOUND THEN
            PERFORM reportstore.wake_at_commit();
        END IF;
        DELETE FROM reportstore.offload_state WHERE report_id = OLD.report_id;
        RETURN OLD;
    END IF;

    suffix := '/reports/' || NEW.report_id::text || '/report.' || lower(NEW.format::text);

    IF TG_OP = 'UPDATE' AND OLD.minio_path IS NOT NULL
       AND NEW.report_data IS NOT NULL
       AND NEW.report_data IS DISTINCT FROM OLD.report_data
       AND NEW.minio_path IS NOT DISTINCT FROM OLD.minio_path THEN
        NEW.minio_path := NULL;
    END IF;

    -- The old object is no longer referenced (new content, or recall): queue
    -- it. If the report is offloaded again to the same key first, the worker
    -- skips the deletion (for a versioned object it deletes only the old
    -- version).
    IF TG_OP = 'UPDATE' AND OLD.minio_path IS NOT NULL AND NEW.minio_path IS NULL THEN
        INSERT INTO reportstore.delete_queue (report_id, path, version_id, not_before)
        SELECT OLD.report_id, OLD.minio_path,
               (SELECT o.version_id FROM reportstore.objects o
                 WHERE o.report_id = OLD.report_id AND o.path = OLD.minio_path),
               now() + coalesce(current_setting('reportstore.delete_delay', true), '7d')::interval;
    END IF;

    -- s3://{bucket}/reports/{report_id}/report.{format}. The bucket is checked
    -- with a constant pattern (PostgreSQL caches its compiled form), the rest
    -- by comparison: a per-row pattern would be compiled for every row.
    IF NEW.minio_path IS NOT NULL
       AND (TG_OP = 'INSERT' OR NEW.minio_path IS DISTINCT FROM OLD.minio_path)
       AND NOT (left(NEW.minio_path, 5) = 's3://'
                AND right(NEW.minio_path, length(suffix)) = suffix
                AND substr(NEW.minio_path, 6, greatest(0, length(NEW.minio_path) - 5 - length(suffix)))
                    ~ '^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$') THEN
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

CREATE FUNCTION reportstore.release_kept_data() RETURNS bigint
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'reportstore_release_kept_data';
COMMENT ON FUNCTION reportstore.release_kept_data() IS
    'after a roll-out with keep_report_data: check each object against report_data, then clear report_data';

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

CREATE FUNCTION reportstore.lifecycle(OUT rule_id text, OUT prefix text, OUT status text, OUT expiration_days integer)
    RETURNS SETOF record
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'reportstore_lifecycle';
COMMENT ON FUNCTION reportstore.lifecycle() IS 'lifecycle rules of the bucket';
CREATE FUNCTION reportstore.set_lifecycle(expire_after_days integer, confirm boolean DEFAULT false,
    OUT rule_id text, OUT prefix text, OUT status text, OUT expiration_days integer)
    RETURNS SETOF record
    LANGUAGE c VOLATILE STRICT AS 'MODULE_PATHNAME', 'reportstore_set_lifecycle';
COMMENT ON FUNCTION reportstore.set_lifecycle(integer, boolean) IS
    'install an expiry rule for objects under reports/ (replaces the bucket''s lifecycle configuration; needs confirm => true)';

CREATE FUNCTION reportstore.progress(OUT pid integer, OUT command text, OUT started timestamptz,
    OUT done bigint, OUT total bigint, OUT found bigint, OUT updated timestamptz)
    RETURNS SETOF record
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'reportstore_progress';
COMMENT ON FUNCTION reportstore.progress() IS 'long reportstore operations in progress in any session';
CREATE VIEW reportstore.progress AS
SELECT p.pid, p.command, p.started, p.done, p.total,
       round(100.0 * p.done / nullif(p.total, 0), 1) AS percent,
       round(p.done / greatest(extract(epoch FROM p.updated - p.started), 0.001), 1) AS per_second,
       p.found, p.updated
  FROM reportstore.progress() p;
COMMENT ON VIEW reportstore.progress IS 'verify(), orphans(), recall_many() and run_once() in progress, with counts and rates';

CREATE FUNCTION report_url(report_id uuid, expires interval DEFAULT '15 minutes') RETURNS text
    LANGUAGE c VOLATILE STRICT AS 'MODULE_PATHNAME', 'reportstore_report_url';
COMMENT ON FUNCTION report_url(uuid, interval) IS
    'presigned GET URL of an offloaded report (NULL while it is in the database); needs SELECT on the row';

COMMENT ON FUNCTION reportstore.report_counts() IS 'counts and sizes of offloaded and in-database reports (for reportstore.status)';

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA reportstore FROM PUBLIC;
REVOKE ALL ON reportstore.progress FROM PUBLIC;
