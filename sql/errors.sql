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
-- An endpoint carrying credentials is refused when used, without echoing them.
SET reportstore.endpoint = 'http://admin:hunter2@127.0.0.1:9000';
SELECT pg_temp.try($$SELECT report_offload('30000000-0000-4000-8000-000000000001')$$);
SELECT pg_temp.unchanged();
RESET reportstore.endpoint;
-- No endpoint at all.
SET reportstore.endpoint = '';
SELECT pg_temp.try($$SELECT report_offload('30000000-0000-4000-8000-000000000001')$$);
RESET reportstore.endpoint;

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
