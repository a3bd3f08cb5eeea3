"""ALTER EXTENSION reportstore UPDATE from 1.0 to 1.1 with reports in both
states (offloaded and still in the database), compared with a fresh install."""
import pytest

from conftest import connect, fetch_text, jsonb_text, object_path, offload, report_json, report_state, run_sql_file

ASSESSMENT = "a0000000-0000-4000-8000-000000000001"
FROM_10 = "it_upgrade_from10"
FRESH = "it_upgrade_fresh"

MEMBERS_SQL = """
SELECT pg_describe_object(d.classid, d.objid, d.objsubid)
  FROM pg_depend d JOIN pg_extension e ON d.refclassid = 'pg_extension'::regclass AND d.refobjid = e.oid
 WHERE e.extname = 'reportstore' AND d.deptype = 'e'
 ORDER BY 1"""

# privileges and definitions that must not depend on the install path
SHAPE_SQL = """
SELECT 'function ' || p.oid::regprocedure::text, coalesce(p.proacl::text, 'default'), p.prosrc
  FROM pg_proc p WHERE p.pronamespace = 'reportstore'::regnamespace
    OR (p.pronamespace = 'public'::regnamespace AND p.proname LIKE 'report%')
UNION ALL
SELECT 'relation ' || c.oid::regclass::text, coalesce(c.relacl::text, 'default'),
       CASE WHEN c.relkind = 'v' THEN pg_get_viewdef(c.oid) END
  FROM pg_class c WHERE c.relnamespace = 'reportstore'::regnamespace
 ORDER BY 1"""


def rows(conn, sql, args=None):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall()


def value(conn, sql, args=None):
    return rows(conn, sql, args)[0][0]


def fresh_database(name, version=None):
    admin = connect()
    try:
        with admin.cursor() as cur:
            cur.execute("DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)
            cur.execute("CREATE DATABASE %s" % name)
    finally:
        admin.close()
    conn = connect(name)
    run_sql_file(conn, "test/fixtures/seed_schema_before.sql")
    with conn.cursor() as cur:
        cur.execute("CREATE EXTENSION reportstore" + (" VERSION '%s'" % version if version else ""))
        cur.execute("INSERT INTO assessments VALUES (%s, 'upgrade')", (ASSESSMENT,))
    return conn


def drop_database(name):
    admin = connect()
    try:
        with admin.cursor() as cur:
            cur.execute("DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)
    finally:
        admin.close()


@pytest.fixture
def databases():
    conns = []
    try:
        conns.append(fresh_database(FROM_10, "1.0"))
        conns.append(fresh_database(FRESH))
        yield conns
    finally:
        for c in conns:
            c.close()
        drop_database(FROM_10)
        drop_database(FRESH)


def test_update_from_1_0(databases):
    old, fresh = databases
    assert value(old, "SELECT extversion FROM pg_extension WHERE extname = 'reportstore'") == "1.0"
    assert value(old, "SELECT to_regclass('reportstore.delete_queue') IS NULL")

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
        assert offload(old, rid) == object_path(rid)
    assert [report_state(old, rid)[1] is not None for rid in ids] == [True] * 3 + [False] * 3

    with old.cursor() as cur:
        cur.execute("ALTER EXTENSION reportstore UPDATE TO '1.1'")

    assert value(old, "SELECT extversion FROM pg_extension WHERE extname = 'reportstore'") == "1.1"
    assert value(old, "SELECT count(*) FROM pg_trigger WHERE tgname = 'reportstore_guard' "
                      "AND tgrelid = 'reports'::regclass AND NOT tgisinternal") == 1
    assert value(old, "SELECT count(*) FROM reportstore.size_baseline") == 1
    for rid in offloaded:
        assert report_state(old, rid) == (None, object_path(rid))
        assert fetch_text(old, rid) == texts[rid]
    assert offload(old, in_database[0]) == object_path(in_database[0])
    assert value(old, "SELECT reportstore.run_once()") == 2
    for rid in ids:
        assert report_state(old, rid) == (None, object_path(rid))
        assert fetch_text(old, rid) == texts[rid]
    assert rows(old, "SELECT * FROM reportstore.verify()") == []
    assert rows(old, "SELECT * FROM reportstore.verify(true)") == []

    # the 1.1 trigger works on the upgraded table: new content wins
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

    # same extension members as a fresh install of 1.1
    assert value(fresh, "SELECT extversion FROM pg_extension WHERE extname = 'reportstore'") == "1.1"
    upgraded_members = [r[0] for r in rows(old, MEMBERS_SQL)]
    fresh_members = [r[0] for r in rows(fresh, MEMBERS_SQL)]
    assert "table reportstore.delete_queue" in fresh_members
    assert upgraded_members == fresh_members, (
        "only after the update: %s; only in a fresh install: %s" % (
            sorted(set(upgraded_members) - set(fresh_members)), sorted(set(fresh_members) - set(upgraded_members))))
    assert rows(old, SHAPE_SQL) == rows(fresh, SHAPE_SQL)
