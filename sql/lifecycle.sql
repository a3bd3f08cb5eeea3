-- Consistency under application writes, deletion queue, recall, presigned
-- URLs and the Phase 3 helper.
SET client_min_messages = warning;
\i test/fixtures/regress_helpers.sql
INSERT INTO reports (report_id, assessment_id, report_type, title, format, report_data, status, generated_at)
VALUES ('50000000-0000-4000-8000-000000000001', 'a0000000-0000-4000-8000-000000000001', 'compliance', 'life 1',
        'json', '{"v": 1}', 'completed', '2024-01-01'),
       ('50000000-0000-4000-8000-000000000002', 'a0000000-0000-4000-8000-000000000001', 'compliance', 'life 2',
        'pdf', '{"v": 2}', 'completed', '2024-01-01');
SELECT report_offload(report_id) IS NOT NULL AS offloaded FROM reports WHERE title LIKE 'life %' ORDER BY title;

-- UPDATE of report_data on an offloaded report: the new content wins and
-- minio_path is cleared in the same transaction.
UPDATE reports SET report_data = '{"v": 10}' WHERE title = 'life 1';
SELECT report_data, minio_path FROM reports WHERE title = 'life 1';
SELECT report_fetch('50000000-0000-4000-8000-000000000001');
-- ... and the next pass offloads it again, with the new content.
SELECT reportstore.run_once() >= 1 AS reoffloaded;
SELECT report_data IS NULL AS data_cleared, minio_path FROM reports WHERE title = 'life 1';
SELECT report_fetch('50000000-0000-4000-8000-000000000001');

-- minio_path may only name this report's own object in reportstore.bucket or
-- reportstore.allowed_buckets, and may not be cleared while the content lives
-- only in the object store.
SELECT pg_temp.try($$UPDATE reports SET minio_path = 's3://reports/reports/50000000-0000-4000-8000-000000000002/report.pdf'
                      WHERE title = 'life 1'$$);
SELECT pg_temp.try($$UPDATE reports SET minio_path = 's3://reports/../etc/passwd' WHERE title = 'life 1'$$);
SELECT pg_temp.try($$UPDATE reports SET minio_path = NULL WHERE title = 'life 1'$$);
SELECT pg_temp.try($$UPDATE reports SET minio_path = 's3://other-bucket/reports/50000000-0000-4000-8000-000000000001/report.json'
                      WHERE title = 'life 1'$$);
-- Migrated data may live in further buckets; their names are checked like reportstore.bucket.
SET reportstore.allowed_buckets = 'a..b';
SET reportstore.allowed_buckets = '127.0.0.1';
BEGIN;
SET LOCAL reportstore.allowed_buckets = 'old-reports, other-bucket';
SELECT pg_temp.try($$UPDATE reports SET minio_path = 's3://other-bucket/reports/50000000-0000-4000-8000-000000000001/report.json'
                      WHERE title = 'life 1'$$);
-- The object the report pointed at before is queued: nothing may claim it now.
SELECT pg_temp.try($$UPDATE reports SET minio_path = 's3://reports/reports/50000000-0000-4000-8000-000000000001/report.json'
                      WHERE title = 'life 1'$$);
ROLLBACK;
UPDATE reports SET minio_path = 's3://reports/reports/50000000-0000-4000-8000-000000000001/report.json'
 WHERE title = 'life 1';
SELECT minio_path FROM reports WHERE title = 'life 1';

-- DELETE queues the object for deletion after delete_delay; a rollback
-- queues nothing.
BEGIN;
DELETE FROM reports WHERE title = 'life 2';
SELECT count(*) AS queued_in_transaction FROM reportstore.delete_queue WHERE report_id = '50000000-0000-4000-8000-000000000002';
ROLLBACK;
SELECT count(*) AS queued_after_rollback FROM reportstore.delete_queue WHERE report_id = '50000000-0000-4000-8000-000000000002';
DELETE FROM reports WHERE title = 'life 2';
SELECT path, not_before - enqueued_at AS delay FROM reportstore.delete_queue
 WHERE report_id = '50000000-0000-4000-8000-000000000002';
-- Not yet due: a pass keeps it.
SELECT reportstore.run_once() IS NOT NULL AS ran;
SELECT count(*) AS still_queued FROM reportstore.delete_queue WHERE report_id = '50000000-0000-4000-8000-000000000002';
-- Once due, the object is deleted. (A report pointing at it again would show
-- it missing.)
UPDATE reportstore.delete_queue SET not_before = now() WHERE report_id = '50000000-0000-4000-8000-000000000002';
SELECT reportstore.run_once() IS NOT NULL AS ran;
SELECT count(*) AS still_queued FROM reportstore.delete_queue WHERE report_id = '50000000-0000-4000-8000-000000000002';
INSERT INTO reports (report_id, assessment_id, report_type, title, format, minio_path, status, generated_at)
VALUES ('50000000-0000-4000-8000-000000000002', 'a0000000-0000-4000-8000-000000000001', 'compliance', 'life 2',
        'pdf', 's3://reports/reports/50000000-0000-4000-8000-000000000002/report.pdf', 'completed', '2024-01-01');
SELECT pg_temp.try($$SELECT report_fetch('50000000-0000-4000-8000-000000000002')$$);
-- verify() reports it.
SELECT report_id, problem FROM reportstore.verify() WHERE report_id::text LIKE '50000000%';
DELETE FROM reports WHERE title = 'life 2';
DELETE FROM reportstore.delete_queue WHERE report_id = '50000000-0000-4000-8000-000000000002';

-- delete_delay = 0: due at once.
SET reportstore.delete_delay = 0;
INSERT INTO reports (report_id, assessment_id, report_type, title, format, report_data, status, generated_at)
VALUES ('50000000-0000-4000-8000-000000000003', 'a0000000-0000-4000-8000-000000000001', 'compliance', 'life 3',
        'csv', '{"v": 3}', 'completed', '2024-01-01');
SELECT report_offload('50000000-0000-4000-8000-000000000003') IS NOT NULL AS offloaded;
DELETE FROM reports WHERE title = 'life 3';
SELECT not_before <= now() AS due FROM reportstore.delete_queue WHERE report_id = '50000000-0000-4000-8000-000000000003';
SELECT reportstore.run_once() IS NOT NULL AS ran;
SELECT count(*) AS still_queued FROM reportstore.delete_queue WHERE report_id = '50000000-0000-4000-8000-000000000003';
RESET reportstore.delete_delay;

-- Cascade from assessments queues the objects of every deleted report.
INSERT INTO assessments VALUES ('a0000000-0000-4000-8000-000000000009', 'to be deleted');
INSERT INTO reports (report_id, assessment_id, report_type, title, format, report_data, status, generated_at)
SELECT format('5000000%s-0000-4000-8000-000000000009', g)::uuid, 'a0000000-0000-4000-8000-000000000009',
       'compliance', 'cascade', 'json', jsonb_build_object('g', g), 'completed', '2024-01-01'
  FROM generate_series(1, 3) g;
SELECT count(report_offload(report_id)) AS offloaded FROM reports WHERE title = 'cascade';
DELETE FROM assessments WHERE assessment_id = 'a0000000-0000-4000-8000-000000000009';
SELECT count(*) AS queued_by_cascade FROM reportstore.delete_queue WHERE report_id::text LIKE '5000000_-0000-4000-8000-000000000009';
DELETE FROM reportstore.delete_queue WHERE report_id::text LIKE '5000000_-0000-4000-8000-000000000009';

-- Recall: back into report_data, verified; pinned so that the worker does
-- not offload it again; report_offload() offloads it again on request.
SELECT reportstore.recall('50000000-0000-4000-8000-000000000001');
SELECT report_data, minio_path FROM reports WHERE title = 'life 1';
SELECT last_error_kind, next_attempt_at FROM reportstore.offload_state WHERE report_id = '50000000-0000-4000-8000-000000000001';
SELECT reportstore.run_once() IS NOT NULL AS ran;
SELECT minio_path IS NULL AS still_recalled FROM reports WHERE title = 'life 1';
SELECT reportstore.recall('50000000-0000-4000-8000-000000000001') AS recalled_twice;
SELECT report_offload('50000000-0000-4000-8000-000000000001') IS NOT NULL AS offloaded_again;
SELECT count(*) AS pins FROM reportstore.offload_state WHERE report_id = '50000000-0000-4000-8000-000000000001';
-- A filtered set, deleting the objects after delete_delay. While it runs, the
-- progress view shows it: a trigger on reports (fired by the recall's UPDATE)
-- keeps what the view says at that moment.
CREATE TABLE progress_seen (command text, done bigint, total bigint, percent numeric, this_session boolean);
CREATE FUNCTION public.capture_progress() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO public.progress_seen
    SELECT p.command, p.done, p.total, p.percent, p.pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid()
      FROM reportstore.progress p;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER capture_progress AFTER UPDATE ON reports FOR EACH ROW EXECUTE FUNCTION public.capture_progress();
SELECT reportstore.recall_many(ARRAY(SELECT report_id FROM reports WHERE title = 'life 1'), true) AS recalled;
DROP TRIGGER capture_progress ON reports;
SELECT * FROM progress_seen;
SELECT count(*) AS queued FROM reportstore.delete_queue WHERE report_id = '50000000-0000-4000-8000-000000000001';
SELECT pg_temp.try($$SELECT reportstore.recall('99999999-0000-4000-8000-000000000000')$$);

-- Presigned URLs: NULL while the report is in the database.
SELECT report_url('50000000-0000-4000-8000-000000000001') IS NULL AS in_database;
SELECT report_offload('50000000-0000-4000-8000-000000000001') IS NOT NULL AS offloaded;
SELECT report_url('50000000-0000-4000-8000-000000000001', '1 hour')
       ~ '/reports/reports/50000000-0000-4000-8000-000000000001/report\.json\?X-Amz-Algorithm=AWS4-HMAC-SHA256&.*X-Amz-Expires=3600&.*X-Amz-Signature=[0-9a-f]{64}$'
       AS presigned;
SELECT pg_temp.try($$SELECT report_url('50000000-0000-4000-8000-000000000001', '8 days')$$);
SELECT pg_temp.try($$SELECT report_url('99999999-0000-4000-8000-000000000000')$$);

-- After a cautious roll-out (keep_report_data), release_kept_data() compares
-- each object with report_data before clearing it.
SET reportstore.keep_report_data = on;
INSERT INTO reports (report_id, assessment_id, report_type, title, format, report_data, status, generated_at)
VALUES ('50000000-0000-4000-8000-000000000004', 'a0000000-0000-4000-8000-000000000001', 'compliance', 'life 4',
        'json', '{"v": 4}', 'completed', '2024-01-01');
SELECT report_offload('50000000-0000-4000-8000-000000000004') IS NOT NULL AS offloaded;
RESET reportstore.keep_report_data;
SELECT report_data IS NOT NULL AS kept FROM reports WHERE title = 'life 4';
SELECT reportstore.release_kept_data() >= 1 AS released;
SELECT report_data IS NULL AS released, report_fetch(report_id) FROM reports WHERE title = 'life 4';

-- The Phase 3 helper and the status view: their counts are the table's (one
-- report still in the database, the others offloaded).
INSERT INTO reports (report_id, assessment_id, report_type, title, format, report_data, status, generated_at)
VALUES ('50000000-0000-4000-8000-000000000005', 'a0000000-0000-4000-8000-000000000001', 'compliance', 'life 5',
        'json', '{"v": 5}', 'completed', '2024-01-01');
CREATE TEMP VIEW actual AS
SELECT count(*) AS reports, count(*) FILTER (WHERE minio_path IS NOT NULL) AS offloaded,
       count(*) FILTER (WHERE minio_path IS NULL AND report_data IS NOT NULL) AS in_database
  FROM reports;
SELECT * FROM actual;
SELECT p.reports = a.reports AS reports, p.reports_offloaded = a.offloaded AS offloaded,
       p.reports_in_database = a.in_database AS in_database, p.all_offloaded = (a.in_database = 0) AS all_offloaded,
       heap_bytes > 0 AS heap, baseline_heap_bytes IS NOT NULL AS has_baseline,
       advice LIKE CASE WHEN a.in_database > 0 THEN a.in_database || ' reports still hold report_data%'
                        ELSE 'every report is offloaded%' END AS advice
  FROM reportstore.phase3_report() p, actual a;
-- No worker runs in this database (reportstore.worker_enabled is off).
SELECT s.reports_offloaded = a.offloaded AS offloaded, s.reports_in_database = a.in_database AS in_database,
       s.worker_state
  FROM reportstore.status s, actual a;
-- Nothing in progress once the operations are over.
SELECT count(*) AS operations_in_progress FROM reportstore.progress;
