-- Phase 1 of the seed: CREATE EXTENSION on both schema shapes.
\set VERBOSITY default
\set SHOW_CONTEXT never
SET client_min_messages = warning;

-- No reports table: a clear error with a hint.
CREATE EXTENSION reportstore;

-- The seed's "Before" shape: no minio_path, no index.
\i test/fixtures/seed_schema_before.sql
INSERT INTO assessments VALUES ('a0000000-0000-4000-8000-000000000001', 'a');
INSERT INTO reports (report_id, assessment_id, report_type, title, format, report_data, status, generated_at)
VALUES ('10000000-0000-4000-8000-000000000001', 'a0000000-0000-4000-8000-000000000001',
        'compliance', 'before', 'json', '{"k": "v"}', 'completed', '2024-01-01');
SELECT relfilenode AS before_relfilenode FROM pg_class WHERE oid = 'reports'::regclass \gset

CREATE EXTENSION reportstore;

-- The column and the partial index now exist, and the table was not rewritten.
SELECT format_type(atttypid, atttypmod) FROM pg_attribute
 WHERE attrelid = 'reports'::regclass AND attname = 'minio_path';
SELECT indexdef FROM pg_indexes WHERE indexname = 'idx_reports_minio_path';
-- And the partial index on the reports still to offload, which the worker reads.
SELECT indexdef FROM pg_indexes WHERE indexname = 'idx_reports_offload_pending';
SELECT relfilenode = :before_relfilenode AS not_rewritten FROM pg_class WHERE oid = 'reports'::regclass;

-- API functions in the installation schema, DBA objects in schema reportstore.
SELECT p.oid::regprocedure, n.nspname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE p.proname IN ('report_offload', 'report_fetch') ORDER BY 1::text;
SELECT nspname FROM pg_namespace WHERE nspname = 'reportstore';

-- DROP EXTENSION keeps the table, the column, the index and the data.
DROP EXTENSION reportstore;
SELECT count(*) AS reports, count(report_data) AS with_data FROM reports;
SELECT attname FROM pg_attribute WHERE attrelid = 'reports'::regclass AND attname = 'minio_path';
SELECT indexname FROM pg_indexes WHERE indexname = 'idx_reports_minio_path';

-- Installing again finds both in place and leaves them alone.
CREATE EXTENSION reportstore;
SELECT indexname FROM pg_indexes WHERE tablename = 'reports' AND indexname LIKE 'idx_reports_%' ORDER BY 1;
DROP EXTENSION reportstore;
DROP TABLE reports;
DROP TABLE assessments;
DROP TYPE report_type, report_format, report_status;

-- The seed's "After" shape, in its own schema: column and index exist already.
CREATE SCHEMA app;
SET search_path = app;
\i test/fixtures/seed_schema_after.sql
SELECT relfilenode AS after_relfilenode FROM pg_class WHERE oid = 'app.reports'::regclass \gset
CREATE EXTENSION reportstore SCHEMA app;
SELECT relfilenode = :after_relfilenode AS not_rewritten FROM pg_class WHERE oid = 'app.reports'::regclass;
SELECT indexname FROM pg_indexes
 WHERE schemaname = 'app' AND tablename = 'reports' AND indexname LIKE 'idx_reports_%' ORDER BY 1;
SELECT p.oid::regprocedure FROM pg_proc p WHERE p.proname = 'report_offload';
DROP EXTENSION reportstore;
SELECT count(*) AS app_reports_kept FROM pg_class WHERE oid = 'app.reports'::regclass;
RESET search_path;
DROP SCHEMA app CASCADE;

-- A reports table that lacks the columns reportstore needs.
CREATE TABLE reports (report_id uuid PRIMARY KEY, body text);
CREATE EXTENSION reportstore;
DROP TABLE reports;
