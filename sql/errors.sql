-- Bad input: one clear error with a hint, and the report stays exactly as it
-- was (data in place, minio_path NULL).
SET client_min_messages = warning;
\i test/fixtures/regress_helpers.sql
CREATE FUNCTION pg_temp.unchanged() RETURNS text LANGUAGE sql AS $$
    SELECT format('data kept: %s, minio_path: %s', report_data = '{"e": 1}', coalesce(minio_path, 'NULL'))
      FROM reports WHERE report_id = '30000000-0000-4000-8000-000000000001' $$;
INSERT INTO reports (report_id, assessment_id, report_type, title, format, report_data, status, generated_at)
VALUES ('30000000-0000-4000-8000-000000000001', 'a0000000-0000-4000-8000-000000000001', 'compliance', 'errors',
        'json', '{"e": 1}', 'completed', '2024-01-01');

-- A wrong secret. The test S3 front knows the key id rstest-decoy-key but
-- nobody knows its secret.
SET reportstore.access_key_id = 'rstest-decoy-key';
SET reportstore.secret_access_key = 'wrong-secret-for-test';
SELECT pg_temp.try($$SELECT report_offload('30000000-0000-4000-8000-000000000001')$$);
SELECT pg_temp.unchanged();
RESET reportstore.access_key_id;
RESET reportstore.secret_access_key;

-- An unknown access key id (the front treats rstest-decoy-* ids as deliberate).
SET reportstore.access_key_id = 'rstest-decoy-unknown';
SET reportstore.secret_access_key = 'wrong-secret-for-test';
SELECT pg_temp.try($$SELECT report_offload('30000000-0000-4000-8000-000000000001')$$);
SELECT pg_temp.unchanged();
RESET reportstore.access_key_id;
RESET reportstore.secret_access_key;

-- An unreachable endpoint.
SET reportstore.endpoint = 'http://127.0.0.1:1';
SET reportstore.connect_timeout = '2s';
SELECT pg_temp.try($$SELECT report_offload('30000000-0000-4000-8000-000000000001')$$);
SELECT pg_temp.unchanged();
RESET reportstore.endpoint;
RESET reportstore.connect_timeout;

-- A missing bucket.
SET reportstore.bucket = 'no-such-bucket';
SELECT pg_temp.try($$SELECT report_offload('30000000-0000-4000-8000-000000000001')$$);
SELECT pg_temp.unchanged();
RESET reportstore.bucket;

-- Malformed endpoints are refused when set.
SET reportstore.endpoint = 'ftp://127.0.0.1:9000';
SET reportstore.endpoint = 'http://';
SET reportstore.endpoint = 'http://127.0.0.1:99999';
SET reportstore.endpoint = 'http://127.0.0.1:9000/some/path?x=1';
-- An endpoint carrying credentials is refused when set, without echoing them,
-- also by ALTER SYSTEM (which would write it to postgresql.auto.conf).
SET reportstore.endpoint = 'http://admin:hunter2@127.0.0.1:9000';
ALTER SYSTEM SET reportstore.endpoint = 'http://admin:hunter2@127.0.0.1:9000';
SELECT current_setting('reportstore.endpoint') NOT LIKE '%hunter2%' AS not_taken;
-- Credentials are refused where every role could read them: per database,
-- per role, in a function's SET clause. They belong in the server's
-- environment or ALTER SYSTEM.
ALTER DATABASE contrib_regression SET reportstore.secret_access_key = 'hunter2';
ALTER ROLE CURRENT_USER SET reportstore.access_key_id = 'AKIDHUNTER2';
ALTER ROLE CURRENT_USER IN DATABASE contrib_regression SET reportstore.session_token = 'hunter2';
CREATE FUNCTION pg_temp.with_secret() RETURNS int LANGUAGE sql SET reportstore.secret_access_key = 'hunter2'
    AS 'SELECT 1';
SELECT count(*) AS stored_credentials FROM pg_db_role_setting WHERE array_to_string(setconfig, ',') LIKE '%hunter2%';
-- Clearing them there is harmless, and allowed.
ALTER DATABASE contrib_regression SET reportstore.secret_access_key = '';
ALTER DATABASE contrib_regression RESET reportstore.secret_access_key;
-- No endpoint at all.
SET reportstore.endpoint = '';
SELECT pg_temp.try($$SELECT report_offload('30000000-0000-4000-8000-000000000001')$$);
RESET reportstore.endpoint;

-- Temporary credentials: malformed settings are refused when set (an STS
-- endpoint with user information without echoing it), incomplete ones when
-- used, naming the step that failed; nothing is sent anywhere.
SET reportstore.credential_source = 'ldap';
SET reportstore.role_arn = 'not-an-arn';
SET reportstore.role_session_name = 'has space';
SET reportstore.sts_endpoint = 'ftp://sts.example.com';
SET reportstore.sts_endpoint = 'https://user:hunter2@sts.example.com';
SET reportstore.imds_endpoint = 'http://169.254.169.254/latest/meta-data';
SET reportstore.web_identity_token_file = 'relative/token';
SET reportstore.credentials_refresh_margin = '1s';
SET reportstore.credential_source = 'web_identity';
SET reportstore.web_identity_token_file = '/nonexistent/reportstore/token';
SELECT pg_temp.try($$SELECT report_offload('30000000-0000-4000-8000-000000000001')$$);
SET reportstore.role_arn = 'arn:aws:iam:::role/regress';
SELECT pg_temp.try($$SELECT report_offload('30000000-0000-4000-8000-000000000001')$$);
SELECT pg_temp.unchanged();
SELECT source, expires_at, obtained_at, refreshing, last_error FROM reportstore.credentials_info();
RESET reportstore.credential_source;
RESET reportstore.web_identity_token_file;
RESET reportstore.role_arn;
SELECT source, expires_at, last_error FROM reportstore.credentials_info();

-- Hostile bucket and region values.
SET reportstore.bucket = '../etc';
SET reportstore.bucket = 'UPPER';
SET reportstore.region = 'us-east-1/../x';

-- A format that cannot be part of an object key.
ALTER TYPE report_format ADD VALUE 'odd/../format';
UPDATE reports SET format = 'odd/../format' WHERE report_id = '30000000-0000-4000-8000-000000000001';
SELECT pg_temp.try($$SELECT report_offload('30000000-0000-4000-8000-000000000001')$$);
SELECT pg_temp.unchanged();
UPDATE reports SET format = 'json' WHERE report_id = '30000000-0000-4000-8000-000000000001';

-- Read-only transactions are refused before anything is uploaded.
BEGIN READ ONLY;
SELECT pg_temp.try($$SELECT report_offload('30000000-0000-4000-8000-000000000001')$$);
ROLLBACK;
SELECT pg_temp.unchanged();

-- After all that, the same report offloads normally.
SELECT report_offload('30000000-0000-4000-8000-000000000001');
SELECT report_fetch('30000000-0000-4000-8000-000000000001');
