-- report_offload / report_fetch round trips against the local S3 server.
SET client_min_messages = warning;
\i test/fixtures/seed_schema_before.sql
CREATE EXTENSION reportstore;
\i test/fixtures/regress_helpers.sql

INSERT INTO assessments VALUES ('a0000000-0000-4000-8000-000000000001', 'a');
INSERT INTO reports (report_id, assessment_id, report_type, title, format, report_data, status, generated_at, updated_at)
VALUES
  ('20000000-0000-4000-8000-000000000001', 'a0000000-0000-4000-8000-000000000001', 'compliance', 'small', 'json',
   '{"score": 97.5, "ok": true, "tags": ["a", "b"], "nested": {"x": null}}', 'completed', '2024-01-01', '2024-01-01'),
  ('20000000-0000-4000-8000-000000000002', 'a0000000-0000-4000-8000-000000000001', 'executive', 'unicode', 'pdf',
   '{"title": "Résumé — 日本語 ✓", "quote": "\"x\"\\n", "emoji": "🙂"}', 'completed', '2024-01-01', '2024-01-01'),
  ('20000000-0000-4000-8000-000000000003', 'a0000000-0000-4000-8000-000000000001', 'risk_analysis', 'large', 'html',
   (SELECT jsonb_build_object('rows', jsonb_agg(jsonb_build_object('i', g, 'h', md5(g::text))))
      FROM generate_series(1, 40000) g), 'completed', '2024-01-01', '2024-01-01'),
  ('20000000-0000-4000-8000-000000000004', 'a0000000-0000-4000-8000-000000000001', 'compliance', 'no data', 'csv',
   NULL, 'pending', '2024-01-01', '2024-01-01'),
  ('20000000-0000-4000-8000-000000000005', 'a0000000-0000-4000-8000-000000000001', 'compliance', 'kept', 'xlsx',
   '[1, 2, 3]', 'completed', '2024-01-01', '2024-01-01');
CREATE TEMP TABLE originals AS SELECT report_id, report_data FROM reports;
SELECT pg_column_size(report_data) > 100000 AS large_is_large FROM reports WHERE title = 'large';

-- Offload: the path follows s3://{bucket}/reports/{report_id}/report.{format}.
SELECT title, report_offload(report_id) FROM reports WHERE title IN ('small', 'unicode', 'large') ORDER BY title;
SELECT title, minio_path, report_data IS NULL AS data_cleared, updated_at > '2024-01-02' AS updated
  FROM reports ORDER BY title;

-- Fetch returns exactly what was offloaded.
SELECT r.title, report_fetch(r.report_id) = o.report_data AS same
  FROM reports r JOIN originals o USING (report_id) WHERE r.report_data IS NULL AND r.minio_path IS NOT NULL
 ORDER BY r.title;
SELECT report_fetch('20000000-0000-4000-8000-000000000002') ->> 'title' AS title;

-- Idempotent: an offloaded report returns its path again.
SELECT report_offload('20000000-0000-4000-8000-000000000001');

-- Neither data nor path: NULL. NULL argument: NULL.
SELECT report_offload('20000000-0000-4000-8000-000000000004') IS NULL AS offload_null,
       report_fetch('20000000-0000-4000-8000-000000000004') IS NULL AS fetch_null,
       report_offload(NULL) IS NULL AS null_arg, report_fetch(NULL) IS NULL AS null_arg_fetch;

-- Unknown report: P0002 (no_data_found).
SELECT pg_temp.try($$SELECT report_offload('99999999-0000-4000-8000-000000000000')$$);
SELECT pg_temp.try($$SELECT report_fetch('99999999-0000-4000-8000-000000000000')$$);

-- A report still in the database is returned from report_data.
SELECT report_fetch('20000000-0000-4000-8000-000000000005');

-- keep_report_data keeps the data beside the object, for cautious roll-outs.
SET reportstore.keep_report_data = on;
SELECT report_offload('20000000-0000-4000-8000-000000000005');
SELECT report_data, minio_path FROM reports WHERE title = 'kept';
RESET reportstore.keep_report_data;

-- A transaction that changed an offloaded report may not overwrite its object:
-- a rollback would leave the committed path naming other content.
BEGIN;
UPDATE reports SET report_data = '{"v": 2}', minio_path = NULL WHERE title = 'kept';
SELECT pg_temp.try($$SELECT report_offload('20000000-0000-4000-8000-000000000005')$$);
ROLLBACK;
SELECT report_data, minio_path IS NOT NULL AS has_path FROM reports WHERE title = 'kept';
-- The object still holds the committed content.
BEGIN;
UPDATE reports SET report_data = NULL WHERE title = 'kept';
SELECT report_fetch('20000000-0000-4000-8000-000000000005') AS object_content;
ROLLBACK;

-- A report inserted and offloaded in one transaction (a fresh id, so no
-- object from an earlier run exists).
SELECT gen_random_uuid() AS fresh_id \gset
BEGIN;
INSERT INTO reports (report_id, assessment_id, report_type, title, format, report_data, status, generated_at)
VALUES (:'fresh_id', 'a0000000-0000-4000-8000-000000000001', 'compliance', 'same txn',
        'json', '{"new": true}', 'completed', now());
SELECT report_offload(:'fresh_id') = format('s3://reports/reports/%s/report.json', :'fresh_id') AS offloaded;
COMMIT;
SELECT report_fetch(:'fresh_id'), report_data IS NULL AS data_cleared FROM reports WHERE title = 'same txn';

-- A path whose object does not exist: an error naming the report and the path.
UPDATE reports SET minio_path = 's3://reports/reports/20000000-0000-4000-8000-000000000004/report.csv',
                   report_data = NULL WHERE title = 'no data';
SELECT pg_temp.try($$SELECT report_fetch('20000000-0000-4000-8000-000000000004')$$);
\set VERBOSITY terse
\set SHOW_CONTEXT always
SELECT report_fetch('20000000-0000-4000-8000-000000000004');
\set VERBOSITY default
\set SHOW_CONTEXT errors
-- A malformed path is refused by the reportstore_guard trigger; with the
-- trigger bypassed, report_fetch still refuses it clearly.
SELECT pg_temp.try($$UPDATE reports SET minio_path = 'not-a-path' WHERE title = 'no data'$$);
ALTER TABLE reports DISABLE TRIGGER reportstore_guard;
UPDATE reports SET minio_path = 'not-a-path' WHERE title = 'no data';
ALTER TABLE reports ENABLE TRIGGER reportstore_guard;
SELECT pg_temp.try($$SELECT report_fetch('20000000-0000-4000-8000-000000000004')$$);
