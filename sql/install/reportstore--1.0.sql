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
    reports_table regclass := format('%I.reports', '@extschema@')::regclass;
BEGIN
    IF to_regclass(format('%I.idx_reports_minio_path', '@extschema@')) IS NULL THEN
        EXECUTE format('CREATE INDEX idx_reports_minio_path ON %s (minio_path) WHERE minio_path IS NOT NULL',
                       reports_table);
    END IF;
END
$index$;

CREATE SCHEMA reportstore;
COMMENT ON SCHEMA reportstore IS 'reportstore administration: status, worker control and DBA tools';

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
