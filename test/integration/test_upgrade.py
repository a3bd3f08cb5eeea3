"""ALTER EXTENSION reportstore UPDATE from 1.0 and from 1.1 to the current
version, with reports in every state the old version left (offloaded, still in
the database, recalled), compared with a fresh install by pg_dump
--schema-only. The old states are written the way the old versions wrote
them: objects uploaded with their SHA-256 metadata, minio_path and
reportstore.objects set by SQL."""
import difflib
import hashlib

import pytest

from conftest import (as_postgres, connect, create_report_database, drop_database, env, error_text, fetch_text,
                      jsonb_text, object_key, object_path, offload, query_error, report_json, report_state, rows,
                      s3_backend_client, value)

ASSESSMENT = "a0000000-0000-4000-8000-000000000001"
FROM_10 = "it_upgrade_from10"
FRESH = "it_upgrade_fresh"

MEMBERS_SQL = """
SELECT pg_describe_object(d.classid, d.objid, d.objsubid)
  FROM pg_depend d JOIN pg_extension e ON d.refclassid = 'pg_extension'::regclass AND d.refobjid = e.oid
 WHERE e.extname = 'reportstore' AND d.deptype = 'e'
 ORDER BY 1"""

# Everything of the extension's own objects that must not depend on the
# install path (pg_dump --schema-only leaves extension members out).
SHAPE_SQL = """
SELECT 'function ' || p.oid::regprocedure::text,
       concat_ws(' | ', coalesce(p.proacl::text, 'default'), l.lanname, p.prosecdef, p.provolatile, p.proisstrict,
                 p.proconfig::text, pg_get_function_result(p.oid), p.probin, p.prosrc)
  FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
 WHERE p.pronamespace = 'reportstore'::regnamespace
    OR (p.pronamespace = 'public'::regnamespace AND p.proname LIKE 'report%')
UNION ALL
SELECT 'relation ' || c.oid::regclass::text, concat_ws(' | ', c.relkind, coalesce(c.relacl::text, 'default'),
       CASE WHEN c.relkind = 'v' THEN pg_get_viewdef(c.oid) END)
  FROM pg_class c WHERE c.relnamespace = 'reportstore'::regnamespace
UNION ALL
SELECT 'column ' || a.attrelid::regclass::text || '.' || a.attname,
       concat_ws(' | ', a.attnum, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                 pg_get_expr(d.adbin, d.adrelid), col_description(a.attrelid, a.attnum))
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE c.relnamespace = 'reportstore'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'constraint ' || r.conrelid::regclass::text || '.' || r.conname, pg_get_constraintdef(r.oid)
  FROM pg_constraint r JOIN pg_class c ON c.oid = r.conrelid WHERE c.relnamespace = 'reportstore'::regnamespace
UNION ALL
SELECT 'index ' || i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
  FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid WHERE c.relnamespace = 'reportstore'::regnamespace
UNION ALL
SELECT 'trigger ' || t.tgname, pg_get_triggerdef(t.oid)
  FROM pg_trigger t WHERE t.tgrelid = 'reports'::regclass AND NOT t.tgisinternal
UNION ALL
SELECT 'comment ' || pg_describe_object(d.classoid, d.objoid, d.objsubid), d.description
  FROM pg_description d JOIN pg_depend x ON x.classid = d.classoid AND x.objid = d.objoid AND x.deptype = 'e'
 ORDER BY 1"""


def fresh_database(name, version=None):
    return create_report_database(connect, name, version, title="upgrade", assessment=ASSESSMENT)


@pytest.fixture
def databases(request):
    old_version = request.param
    name = "it_upgrade_from" + old_version.replace(".", "")
    conns = []
    try:
        conns.append(fresh_database(name, old_version))
        conns.append(fresh_database(FRESH))
        yield conns
    finally:
        for c in conns:
            c.close()
        drop_database(connect, name)
        drop_database(connect, FRESH)


def old_offload(conn, rid, text):
    """What 1.0 and 1.1 did in report_offload(): upload with the SHA-256 in the
    metadata, then record minio_path and reportstore.objects."""
    body = text.encode()
    put = s3_backend_client().put_object(Bucket=env("S3_BUCKET"), Key=object_key(rid), Body=body,
                                         ContentType="application/json",
                                         Metadata={"sha256": hashlib.sha256(body).hexdigest()})
    with conn.cursor() as cur:
        cur.execute("UPDATE reports SET minio_path = %s, report_data = NULL WHERE report_id = %s",
                    (object_path(rid), rid))
        cur.execute("INSERT INTO reportstore.objects (report_id, path, size, sha256, etag) VALUES (%s, %s, %s, %s, %s)",
                    (rid, object_path(rid), len(body), hashlib.sha256(body).hexdigest(), put["ETag"].strip('"')))


def schema_dump(dbname):
    r = as_postgres(["pg_dump", "--schema-only", "-h", env("PGHOST"), "-p", env("PGPORT"), "-U", "postgres",
                     "-d", dbname])
    assert r.returncode == 0, r.stderr
    # Comments and pg_dump's per-run \\restrict key differ between any two dumps.
    return [line for line in r.stdout.splitlines()
            if not line.startswith("--") and not line.startswith(("\\restrict", "\\unrestrict"))]


@pytest.mark.parametrize("databases", ["1.0", "1.1"], indirect=True)
def test_update(databases):
    old, fresh = databases
    old_version = value(old, "SELECT extversion FROM pg_extension WHERE extname = 'reportstore'")
    current = value(fresh, "SELECT extversion FROM pg_extension WHERE extname = 'reportstore'")
    assert old_version in ("1.0", "1.1") and current == "1.3"

    docs = [report_json(600, 900 + i) for i in range(6)]
    with old.cursor() as cur:
        cur.execute("INSERT INTO reports (report_id, assessment_id, report_type, title, format, report_data, status, "
                    "generated_at) SELECT gen_random_uuid(), %s, 'compliance', 'upgrade', 'json', d::jsonb, "
                    "'completed', now() FROM unnest(%s::text[]) d RETURNING report_id::text, report_data::text",
                    (ASSESSMENT, docs))
        texts = dict(cur.fetchall())
    ids = sorted(texts)
    offloaded, in_database = ids[:3], ids[3:]
    for rid in offloaded:
        old_offload(old, rid, texts[rid])
    recalled = None
    if old_version == "1.1":
        # A report recalled by 1.1 without delete_object: its row in
        # reportstore.objects was the only trace of the object.
        recalled = in_database[0]
        old_offload(old, recalled, texts[recalled])
        with old.cursor() as cur:
            cur.execute("UPDATE reports SET report_data = %s::jsonb, minio_path = NULL WHERE report_id = %s",
                        (texts[recalled], recalled))
            cur.execute("DELETE FROM reportstore.delete_queue WHERE report_id = %s", (recalled,))

    # The new library before ALTER EXTENSION UPDATE: reads work, writes say what to do.
    for rid in offloaded:
        assert fetch_text(old, rid) == texts[rid]
    e = query_error(old, "SELECT report_offload(%s)", (in_database[1],))
    assert e.pgcode == "55000" and "ALTER EXTENSION reportstore UPDATE" in error_text(e), error_text(e)
    assert report_state(old, in_database[1]) == (texts[in_database[1]], None)

    with old.cursor() as cur:
        cur.execute("ALTER EXTENSION reportstore UPDATE")
    assert value(old, "SELECT extversion FROM pg_extension WHERE extname = 'reportstore'") == current

    if recalled is not None:
        # The object of the recalled report is kept for delete_delay (a point-
        # in-time restore may need it), not deleted, and not an orphan.
        assert rows(old, "SELECT path, delete_object, not_before > now() + interval '6 days' "
                         "FROM reportstore.delete_queue WHERE report_id = %s", (recalled,)) == \
            [(object_path(recalled), False, True)]
        assert value(old, "SELECT count(*) FROM reportstore.objects WHERE report_id = %s", (recalled,)) == 0
        assert rows(old, "SELECT key, action FROM reportstore.orphans(min_age => '0') WHERE key = %s",
                    (object_key(recalled),)) == [(object_key(recalled), "kept: released less than "
                                                                        "reportstore.delete_delay ago")]
        with old.cursor() as cur:
            cur.execute("SELECT reportstore.recall(%s)", (recalled,))  # pinned as 1.2 pins recalls
    for rid in offloaded:
        assert report_state(old, rid) == (None, object_path(rid))
        assert fetch_text(old, rid) == texts[rid]
    assert offload(old, in_database[1]) == object_path(in_database[1])
    expected_run = 1 if recalled is not None else 2
    if recalled is not None:
        # recall() of a report that is not offloaded does nothing; pin it the 1.2 way
        with old.cursor() as cur:
            cur.execute("INSERT INTO reportstore.offload_state (report_id, attempts, last_error_kind, "
                        "next_attempt_at) VALUES (%s, 0, 'recalled', 'infinity')", (recalled,))
    assert value(old, "SELECT reportstore.run_once()") == expected_run
    for rid in ids:
        if rid == recalled:
            assert report_state(old, rid) == (texts[rid], None)
            continue
        assert report_state(old, rid) == (None, object_path(rid))
        assert fetch_text(old, rid) == texts[rid]
    assert rows(old, "SELECT * FROM reportstore.verify()") == []
    assert rows(old, "SELECT * FROM reportstore.verify(true)") == []

    # the current trigger works on the upgraded table: new content wins
    new_text = jsonb_text(old, '{"updated": true}')
    with old.cursor() as cur:
        cur.execute("UPDATE reports SET report_data = %s::jsonb WHERE report_id = %s", (new_text, ids[0]))
    assert report_state(old, ids[0]) == (new_text, None)
    assert value(old, "SELECT reportstore.run_once()") == 1
    assert fetch_text(old, ids[0]) == new_text
    # and a DELETE queues the object
    with old.cursor() as cur:
        cur.execute("DELETE FROM reports WHERE report_id = %s", (ids[1],))
    assert rows(old, "SELECT path FROM reportstore.delete_queue WHERE report_id = %s", (ids[1],)) == \
        [(object_path(ids[1]),)]

    # The same extension members and the same schema, word for word, as a fresh install.
    upgraded_members = [r[0] for r in rows(old, MEMBERS_SQL)]
    fresh_members = [r[0] for r in rows(fresh, MEMBERS_SQL)]
    assert "table reportstore.delete_queue" in fresh_members
    assert upgraded_members == fresh_members, (
        "only after the update: %s; only in a fresh install: %s" % (
            sorted(set(upgraded_members) - set(fresh_members)), sorted(set(fresh_members) - set(upgraded_members))))
    assert rows(old, SHAPE_SQL) == rows(fresh, SHAPE_SQL)
    old_dump = schema_dump(old.info.dbname)
    fresh_dump = schema_dump(fresh.info.dbname)
    assert old_dump == fresh_dump, "\n".join(
        line for line in difflib.unified_diff(fresh_dump, old_dump, "fresh", "upgraded", lineterm=""))
