"""report_fetch_many(uuid[]): a list page's reports in one call.

Rows come in the order of the ids given, each once; ids that do not exist or
that the caller cannot see are left out. Offloaded reports are fetched
concurrently and verified as report_fetch verifies them; a bad object fails
the call naming the report; the call is cancellable.
"""
import random
import time

import psycopg2
import pytest

from conftest import (connect, env, error_text, jsonb_text, key_regex, new_report, object_key, object_path, offload,
                      query_error, report_json, s3_backend_client)


def rows(conn, sql, args=None):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall()


def fetch_many(conn, ids):
    return rows(conn, "SELECT report_id::text, report_data::text FROM report_fetch_many(%s::uuid[])", (ids,))


@pytest.fixture(scope="module")
def page(dbname):
    """30 reports: 20 offloaded, 10 still in the database, one with neither."""
    conn = connect(dbname)
    texts = {}
    for i in range(30):
        data = report_json(200 + 150 * i, 7000 + i)
        rid = new_report(conn, data)
        texts[rid] = jsonb_text(conn, data)
    ids = list(texts)
    for rid in ids[:20]:
        assert offload(conn, rid) == object_path(rid)
    empty = new_report(conn, "{}")
    with conn.cursor() as cur:
        cur.execute("UPDATE reports SET report_data = NULL WHERE report_id = %s", (empty,))
    conn.close()
    return ids, texts, empty


def test_rows_in_the_order_given_each_once(db, page):
    ids, texts, empty = page
    order = ids[:]
    random.Random(5).shuffle(order)
    missing = "00000000-0000-4000-8000-00000000beef"
    asked = order[:10] + [missing, None] + order[:3] + order[10:] + [empty]
    got = fetch_many(db, asked)
    assert [r[0] for r in got] == order + [empty]
    for rid, text in got[:-1]:
        assert text == texts[rid], rid  # byte for byte what report_data held
    assert got[-1][1] is None  # neither data nor object: NULL, as report_fetch
    assert fetch_many(db, []) == []
    assert rows(db, "SELECT count(*) FROM report_fetch_many(NULL)") == [(0,)]


def test_same_content_as_report_fetch(db, page):
    ids, _, _ = page
    same = rows(db, "SELECT bool_and(f.report_data OPERATOR(pg_catalog.=) report_fetch(f.report_id)), count(*) "
                    "FROM report_fetch_many(%s::uuid[]) f", (ids,))
    assert same == [(True, 30)]


def test_caller_rights_and_row_level_security(db, dbname, page):
    ids, texts, _ = page
    with db.cursor() as cur:
        cur.execute("CREATE ROLE rs_fm_reader LOGIN")
        cur.execute("CREATE ROLE rs_fm_stranger LOGIN")
        cur.execute("GRANT SELECT ON reports TO rs_fm_reader")
        cur.execute("ALTER TABLE reports ENABLE ROW LEVEL SECURITY")
        # The reader sees only the reports whose id ends in an even digit.
        cur.execute("CREATE POLICY fm_half ON reports FOR SELECT TO rs_fm_reader "
                    "USING (right(report_id::text, 1) IN ('0', '2', '4', '6', '8'))")
    visible = [rid for rid in ids if rid[-1] in "02468"]
    try:
        reader = psycopg2.connect(host=env("PGHOST"), port=env("PGPORT"), user="rs_fm_reader", dbname=dbname)
        reader.autocommit = True
        got = fetch_many(reader, ids)
        assert [r[0] for r in got] == visible
        assert all(text == texts[rid] for rid, text in got)
        reader.close()
        stranger = psycopg2.connect(host=env("PGHOST"), port=env("PGPORT"), user="rs_fm_stranger", dbname=dbname)
        stranger.autocommit = True
        e = query_error(stranger, "SELECT * FROM report_fetch_many(%s::uuid[])", (ids,))
        assert e.pgcode == "42501", error_text(e)
        stranger.close()
    finally:
        with db.cursor() as cur:
            cur.execute("DROP POLICY fm_half ON reports")
            cur.execute("ALTER TABLE reports DISABLE ROW LEVEL SECURITY")
            cur.execute("DROP OWNED BY rs_fm_reader, rs_fm_stranger")
            cur.execute("DROP ROLE rs_fm_reader")
            cur.execute("DROP ROLE rs_fm_stranger")


def test_a_corrupt_object_fails_the_call_naming_its_report(db, page):
    ids, texts, _ = page
    victim = ids[7]
    client = s3_backend_client()
    original = client.get_object(Bucket=env("S3_BUCKET"), Key=object_key(victim))
    body = original["Body"].read()
    client.put_object(Bucket=env("S3_BUCKET"), Key=object_key(victim), Body=body[:-1] + b" ",
                      Metadata=original["Metadata"], ContentEncoding=original.get("ContentEncoding", "identity"))
    try:
        e = query_error(db, "SELECT * FROM report_fetch_many(%s::uuid[])", (ids,))
        assert e.pgcode == "XX001", error_text(e)
        assert victim in error_text(e) and object_path(victim) in error_text(e)
        # The others still read.
        assert len(fetch_many(db, ids[:7] + ids[8:])) == 29
    finally:
        client.put_object(Bucket=env("S3_BUCKET"), Key=object_key(victim), Body=body, Metadata=original["Metadata"],
                          ContentEncoding=original.get("ContentEncoding", "identity"))
    assert fetch_many(db, [victim]) == [(victim, texts[victim])]


def test_a_path_that_is_not_the_reports_own_key_is_refused(db, page):
    ids, _, _ = page
    a, b = ids[0], ids[1]
    with db.cursor() as cur:
        cur.execute("ALTER TABLE reports DISABLE TRIGGER reportstore_guard")
        cur.execute("UPDATE reports SET minio_path = %s WHERE report_id = %s", (object_path(b), a))
        cur.execute("ALTER TABLE reports ENABLE TRIGGER reportstore_guard")
    try:
        e = query_error(db, "SELECT * FROM report_fetch_many(%s::uuid[])", ([b, a],))
        assert e.pgcode == "22023" and a in error_text(e), error_text(e)
    finally:
        with db.cursor() as cur:
            cur.execute("ALTER TABLE reports DISABLE TRIGGER reportstore_guard")
            cur.execute("UPDATE reports SET minio_path = %s WHERE report_id = %s", (object_path(a), a))
            cur.execute("ALTER TABLE reports ENABLE TRIGGER reportstore_guard")


def test_objects_are_fetched_concurrently(db, page, s3):
    # Every GET of these 16 objects is answered after 1 s: one after another
    # they take 16 s or more; concurrently (max_concurrency = 16) about 1 s.
    ids, _, _ = page
    chosen = ids[:16]
    s3.faults(*[{"method": "GET", "path_regex": key_regex(rid), "action": "delay", "seconds": 1, "count": 1}
                for rid in chosen])
    try:
        started = time.monotonic()
        assert len(fetch_many(db, chosen)) == 16
        elapsed = time.monotonic() - started
    finally:
        s3.clear_faults()
    assert elapsed < 8, "16 delayed GETs took %.1f s: not concurrent" % elapsed


def test_statement_timeout_ends_a_stalled_call(dbname, page, s3):
    ids, _, _ = page
    s3.faults({"method": "GET", "path_regex": key_regex(ids[3]), "action": "stall", "count": -1})
    conn = connect(dbname)
    try:
        with conn.cursor() as cur:
            cur.execute("SET statement_timeout = '500ms'")
        started = time.monotonic()
        e = query_error(conn, "SELECT * FROM report_fetch_many(%s::uuid[])", (ids,))
        elapsed = time.monotonic() - started
    finally:
        s3.clear_faults()
        conn.close()
    assert e.pgcode == "57014", error_text(e)
    assert elapsed < 5, "cancelled only after %.1f s" % elapsed
