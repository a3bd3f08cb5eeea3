-- report_offload and report_fetch run as the caller: table privileges and
-- row-level security apply. Settings are superuser-only.
SET client_min_messages = warning;
\i test/fixtures/regress_helpers.sql
GRANT EXECUTE ON FUNCTION pg_temp.try(text) TO PUBLIC;

INSERT INTO reports (report_id, assessment_id, report_type, title, format, report_data, status, generated_at)
VALUES ('40000000-0000-4000-8000-000000000001', 'a0000000-0000-4000-8000-000000000001', 'compliance', 'tenant a',
        'json', '{"tenant": "a"}', 'completed', '2024-01-01'),
       ('40000000-0000-4000-8000-000000000002', 'a0000000-0000-4000-8000-000000000001', 'compliance', 'tenant b',
        'json', '{"tenant": "b"}', 'completed', '2024-01-01');

DROP ROLE IF EXISTS rs_nobody;
DROP ROLE IF EXISTS rs_reader;
DROP ROLE IF EXISTS rs_tenant_a;
CREATE ROLE rs_nobody;
CREATE ROLE rs_reader;
CREATE ROLE rs_tenant_a;
GRANT SELECT ON reports TO rs_reader;
GRANT SELECT, UPDATE ON reports TO rs_tenant_a;
-- No privilege on reports: neither fetch nor offload.
SET ROLE rs_nobody;
SELECT pg_temp.try($$SELECT report_fetch('40000000-0000-4000-8000-000000000001')$$);
SELECT pg_temp.try($$SELECT report_offload('40000000-0000-4000-8000-000000000001')$$);
RESET ROLE;

-- SELECT only: fetch works, offload (which updates the row) does not.
SET ROLE rs_reader;
SELECT report_fetch('40000000-0000-4000-8000-000000000001');
SELECT pg_temp.try($$SELECT report_offload('40000000-0000-4000-8000-000000000001')$$);
RESET ROLE;

ALTER TABLE reports ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_a ON reports TO rs_tenant_a USING (title = 'tenant a');
-- Row-level security: tenant a sees and offloads only its own report.
SET ROLE rs_tenant_a;
SELECT report_offload('40000000-0000-4000-8000-000000000001');
SELECT report_fetch('40000000-0000-4000-8000-000000000001');
SELECT pg_temp.try($$SELECT report_fetch('40000000-0000-4000-8000-000000000002')$$);
SELECT pg_temp.try($$SELECT report_offload('40000000-0000-4000-8000-000000000002')$$);
-- report_url follows the same rules: a link for its own report only.
SELECT report_url('40000000-0000-4000-8000-000000000001') LIKE '%X-Amz-Signature=%' AS own_link;
SELECT pg_temp.try($$SELECT report_url('40000000-0000-4000-8000-000000000002')$$);
RESET ROLE;
SET ROLE rs_nobody;
SELECT pg_temp.try($$SELECT report_url('40000000-0000-4000-8000-000000000001')$$);
-- DBA functions are not executable by PUBLIC.
SELECT pg_temp.try($$SELECT * FROM reportstore.verify()$$);
SELECT pg_temp.try($$SELECT reportstore.pause()$$);
SELECT pg_temp.try($$SELECT * FROM reportstore.status$$);
RESET ROLE;
-- Even with USAGE on the schema, the functions and views are not PUBLIC's.
GRANT USAGE ON SCHEMA reportstore TO rs_nobody;
SET ROLE rs_nobody;
SELECT pg_temp.try($$SELECT * FROM reportstore.verify()$$);
SELECT pg_temp.try($$SELECT reportstore.pause()$$);
SELECT pg_temp.try($$SELECT * FROM reportstore.status$$);
SELECT pg_temp.try($$SELECT * FROM reportstore.objects$$);
RESET ROLE;
REVOKE USAGE ON SCHEMA reportstore FROM rs_nobody;
SELECT title, minio_path IS NOT NULL AS offloaded FROM reports WHERE title LIKE 'tenant%' ORDER BY title;

-- Settings: non-superusers can neither see nor change the endpoint or the
-- credentials.
SET ROLE rs_reader;
SELECT pg_temp.try($$SHOW reportstore.secret_access_key$$);
SELECT pg_temp.try($$SHOW reportstore.endpoint$$);
SELECT count(*) AS visible_reportstore_settings FROM pg_settings WHERE name LIKE 'reportstore.%'
   AND name IN ('reportstore.secret_access_key', 'reportstore.access_key_id', 'reportstore.session_token',
                'reportstore.endpoint');
SELECT pg_temp.try($$SET reportstore.endpoint = 'http://evil.example:80'$$);
SELECT pg_temp.try($$SET reportstore.secret_access_key = 'x'$$);
SELECT pg_temp.try($$SELECT set_config('reportstore.bucket', 'other', false)$$);
RESET ROLE;
-- Credentials stay out of pg_settings and SHOW ALL even for superusers; a
-- superuser can SHOW them by name.
SELECT name FROM pg_settings WHERE name LIKE 'reportstore.%' ORDER BY name;
SELECT current_setting('reportstore.secret_access_key') = '' AS secret_from_environment;

ALTER TABLE reports DISABLE ROW LEVEL SECURITY;
DROP POLICY tenant_a ON reports;
REVOKE ALL ON reports FROM rs_reader, rs_tenant_a;
DROP ROLE rs_nobody;
DROP ROLE rs_reader;
DROP ROLE rs_tenant_a;

-- A credential set in a session shows only as a mask, never its value.
SET reportstore.secret_access_key = 'session-secret-not-shown';
SHOW reportstore.secret_access_key;
SELECT current_setting('reportstore.secret_access_key') = '********' AS masked;
RESET reportstore.secret_access_key;
SHOW reportstore.secret_access_key;
