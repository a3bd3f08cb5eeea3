"""One bad report never stops the rest; batches lock only what they move;
memory and cancellation are bounded for huge reports; a silent endpoint costs
no report an attempt and the worker recovers in seconds; incomplete
multipart uploads are found and aborted.

Tests on the main cluster use run_once() and report_offload(); the worker's
own behaviour (pause, outage, a killed backend) runs on a cluster of this
module, with the worker enabled.
"""
import contextlib
import json
import os
import random
import shutil
import signal
import threading
import time
import uuid

import psycopg2
import pytest

from conftest import (ASSESSMENT, Cluster, connect, env, error_text, fetch_text, key_regex, object_key,
                      object_path, offload, query_error, report_json, report_state, rows, run_sql_file,
                      s3_backend_client, scratch_dir, system_settings, value, wait_until)


def insert_sql(conn, expression, rid=None, fmt="json", args=()):
    """Inserts a report whose report_data is an SQL expression; returns its id."""
    rid = rid or str(uuid.uuid4())
    with conn.cursor() as cur:
        cur.execute("INSERT INTO reports (report_id, assessment_id, report_type, title, format, report_data, status, "
                    "generated_at) VALUES (%%s, %%s, 'compliance', 'robust', %%s, %s, 'completed', now())" % expression,
                    (rid, ASSESSMENT, fmt) + tuple(args))
    return rid


def insert_text(conn, text, rid=None):
    return insert_sql(conn, "%s::jsonb", rid, args=(text,))


@contextlib.contextmanager
def in_background(dbname, sql, args=None, **settings):
    """Runs sql in its own session on a thread; yields (pid, outcome dict)."""
    conn = connect(dbname)
    with conn.cursor() as cur:
        for name, v in settings.items():
            cur.execute("SET %s = %%s" % name.replace("__", "."), (v,))
        cur.execute("SELECT pg_backend_pid()")
        pid = cur.fetchone()[0]
    outcome = {}

    def run():
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                outcome["rows"] = cur.fetchall()
        except psycopg2.Error as e:
            outcome["error"] = e
        outcome["ended"] = time.monotonic()

    thread = threading.Thread(target=run)
    thread.start()
    try:
        yield pid, outcome, thread
    finally:
        thread.join(120)
        conn.close()


def new_session_shows(dbname, setting):
    conn = connect(dbname)
    try:
        return value(conn, "SHOW " + setting)
    finally:
        conn.close()


# 1. One report that cannot be offloaded fails alone --------------------------------------

def test_report_whose_text_exceeds_1gb_fails_alone(db):
    # 180 million control characters: 180 MB as jsonb, over 1 GB as text (\u0001 each).
    huge = insert_sql(db, "jsonb_build_object('s', repeat(chr(1), 180000000))")
    small = [insert_text(db, report_json(400, 1200 + i)) for i in range(20)]
    try:
        # report_offload() says what is wrong and leaves the report as it was.
        e = query_error(db, "SELECT report_offload(%s)", (huge,))
        assert e.pgcode == "54000" and "1 GB" in error_text(e) and "report_data" in error_text(e), error_text(e)
        # run_once() offloads every other report and records the huge one alone.
        assert value(db, "SELECT reportstore.run_once()") >= 20
        for rid in small:
            assert report_state(db, rid)[1] == object_path(rid)
        state = rows(db, "SELECT last_error_kind, last_error, next_attempt_at = 'infinity' "
                         "FROM reportstore.offload_state WHERE report_id = %s", (huge,))
        assert len(state) == 1, state
        kind, message, never = state[0]
        assert kind == "too_large" and never, state
        assert "1 GB" in message and "Hint:" in message, message
        assert value(db, "SELECT report_data IS NOT NULL AND minio_path IS NULL FROM reports WHERE report_id = %s",
                     (huge,))
        # Nothing else waits for it: a second pass skips it at once.
        assert value(db, "SELECT reportstore.run_once()") == 0
    finally:
        with db.cursor() as cur:
            cur.execute("DELETE FROM reports WHERE report_id = %s", (huge,))


def test_server_errors_are_not_charged_to_reports(db):
    """A disk-full error raised while a batch is recorded (here by the owner's
    trigger) is the server's, not the reports': run_once() reports it with its
    SQLSTATE and no report is charged an attempt; an ordinary error of the
    owner's trigger is still charged to the report that raised it, alone."""
    ids = [insert_text(db, report_json(50, 3000 + i)) for i in range(3)]
    with db.cursor() as cur:
        cur.execute("CREATE TABLE public.robust_fault (code text)")
        cur.execute("""CREATE FUNCTION public.robust_fault() RETURNS trigger LANGUAGE plpgsql AS $$
                       DECLARE c text;
                       BEGIN
                         SELECT code INTO c FROM public.robust_fault LIMIT 1;
                         IF c IS NOT NULL AND NEW.minio_path IS NOT NULL THEN
                           RAISE EXCEPTION 'injected fault' USING ERRCODE = c;
                         END IF;
                         RETURN NEW;
                       END $$""")
        cur.execute("CREATE TRIGGER zz_robust_fault BEFORE UPDATE ON public.reports FOR EACH ROW "
                    "EXECUTE FUNCTION public.robust_fault()")
    try:
        with db.cursor() as cur:
            cur.execute("INSERT INTO public.robust_fault VALUES ('53100')")  # disk_full
        for _ in range(2):
            e = query_error(db, "SELECT reportstore.run_once()")
            assert e.pgcode == "53100" and "injected fault" in error_text(e), error_text(e)
        assert value(db, "SELECT count(*) FROM reportstore.offload_state WHERE report_id = ANY(%s::uuid[])",
                     (ids,)) == 0
        for rid in ids:
            assert report_state(db, rid)[1] is None, rid

        with db.cursor() as cur:
            cur.execute("UPDATE public.robust_fault SET code = 'P0001'")  # raise_exception: the trigger's own
        value(db, "SELECT reportstore.run_once()")
        charged = rows(db, "SELECT report_id::text, attempts, last_error_kind FROM reportstore.offload_state "
                           "WHERE report_id = ANY(%s::uuid[]) ORDER BY 1", (ids,))
        assert charged == [(rid, 1, "database") for rid in sorted(ids)], charged
    finally:
        with db.cursor() as cur:
            cur.execute("DROP TRIGGER zz_robust_fault ON public.reports")
            cur.execute("DROP FUNCTION public.robust_fault()")
            cur.execute("DROP TABLE public.robust_fault")
            cur.execute("DELETE FROM reports WHERE report_id = ANY(%s::uuid[])", (ids,))


def test_serialized_text_is_jsonb_out_byte_for_byte(db):
    """The worker's own serializer against jsonb_out, on documents with every
    kind of token (report_fetch compares objects with report_data::text)."""
    docs = ['"just a string"', "42", "-0.000123e-7", "true", "null", "[]", "{}", '[[], {}, [[{}]]]',
            '{"a": {"b": {"c": [1, "2", null, false, {"d": -1.5e300}]}}}',
            '{"esc": "quote \\" backslash \\\\ slash / \\b\\f\\n\\r\\t \\u0001\\u001f\\u007f é 💡 \\u00e9"}',
            '{"zz": 1, "a": 2, "aa": [3, 4], "": "empty key"}', '[1e1000, 0.1, 100000000000000000000000]']
    ids = [insert_text(db, d) for d in docs]
    expected = {rid: value(db, "SELECT report_data::text FROM reports WHERE report_id = %s", (rid,)) for rid in ids}
    assert value(db, "SELECT reportstore.run_once()") >= len(ids)
    client = s3_backend_client()
    for rid in ids:
        body = client.get_object(Bucket=env("S3_BUCKET"), Key=object_key(rid))["Body"].read().decode()
        assert body == expected[rid], (body, expected[rid])
        assert fetch_text(db, rid) == expected[rid]


def jsonb_corpus(seed, n):
    """JSON texts with every shape the jsonb encoder must match: duplicate and unsorted
    keys, keys of equal length, arrays and objects around the 32-entry stride, deep
    nesting, bare scalars, every kind of number, escapes and non-ASCII text."""
    rnd = random.Random(seed)
    alphabet = ["a", "b", "Z", " ", '"', "\\", "\n", "\t", "\u00e9", "\u20ac", "\U0001f4a1", "\x01", "/", "0"]

    def word():
        return "".join(rnd.choice(alphabet) for _ in range(rnd.choice([0, 1, 2, 3, 5, 8, 40])))

    def number():
        return rnd.choice(["0", "-1", "42", "1e20", "-3.5", "1E-7", "1.5e300", "0.10", "123456789.123456789",
                           "-0", "2147483648", "-9223372036854775808", "0.000"])

    def text(depth):
        t = rnd.random()
        if depth > 2 or t < 0.35:
            return rnd.choice([json.dumps(word(), ensure_ascii=rnd.random() < 0.5), number(), "true", "false", "null"])
        if t < 0.65:
            return "[" + ", ".join(text(depth + 1) for _ in range(rnd.choice([0, 1, 2, 5, 31, 32, 33, 70]))) + "]"
        keys = [rnd.choice(["a", "b", "aa", "ab", "zz", "dup", "dup", "k" * rnd.randint(1, 10), word()])
                for _ in range(rnd.choice([0, 1, 2, 3, 10, 16, 17, 40]))]
        return "{" + ",".join("%s :%s" % (json.dumps(k), text(depth + 1)) for k in keys) + "}"

    fixed = ["1", '"s"', "null", "true", "[]", "{}", "-0", "1e1000", '{"b":1,"a":2,"a":3}',
             "[" + ",".join(str(i) for i in range(100)) + "]",
             "{" + ",".join('"k%d": [%d, "x"]' % (50 - i, i) for i in range(50)) + "}"]
    return fixed + [text(0) for _ in range(n)]


def test_fetched_jsonb_is_byte_for_byte_what_postgresql_builds(db):
    """report_fetch() and report_fetch_many() build jsonb from an object's text with
    reportstore's own encoder: the result must be, byte for byte, the jsonb that
    PostgreSQL's parser builds from the same text (seen through a binary-coercible
    cast that lives only in this test's transaction)."""
    docs = jsonb_corpus(20261201, 100)
    ids = [insert_text(db, d) for d in docs]
    assert value(db, "SELECT reportstore.run_once()") >= len(ids)
    assert value(db, "SELECT count(*) FROM reports WHERE report_id = ANY(%s::uuid[]) AND report_data IS NULL",
                 (ids,)) == len(ids)
    db.autocommit = False
    try:
        with db.cursor() as cur:
            cur.execute("CREATE CAST (pg_catalog.jsonb AS pg_catalog.bytea) WITHOUT FUNCTION")
            cur.execute("SELECT r.ok, count(*) FROM unnest(%s::uuid[], %s::text[]) AS d(id, doc), "
                        "LATERAL (SELECT report_fetch(d.id)::bytea = d.doc::jsonb::bytea AS ok) r GROUP BY 1",
                        (ids, docs))
            assert dict(cur.fetchall()) == {True: len(ids)}
            cur.execute("SELECT count(*) FROM report_fetch_many(%s::uuid[]) f "
                        "JOIN unnest(%s::uuid[], %s::text[]) AS d(id, doc) ON f.report_id = d.id "
                        "WHERE f.report_data::bytea = d.doc::jsonb::bytea", (ids, ids, docs))
            assert cur.fetchone()[0] == len(ids)
    finally:
        db.rollback()
        db.autocommit = True


# 2. A batch locks only what it moves ------------------------------------------------------

def test_batch_locks_only_the_reports_it_moves(db, dbname, s3):
    # The oldest report is large: with a 1 MB budget it is batched alone, and
    # the endpoint never answers for it. Other pending reports stay free.
    big = insert_text(db, report_json(2_000_000, 1300))
    small = [insert_text(db, report_json(300, 1310 + i)) for i in range(5)]
    with db.cursor() as cur:
        cur.execute("UPDATE reports SET created_at = now() - interval '1 day' WHERE report_id = %s", (big,))
    s3.faults({"method": "PUT", "path_regex": key_regex(big), "action": "stall", "count": -1})
    try:
        with db.cursor() as cur:
            cur.execute("ALTER SYSTEM SET reportstore.batch_bytes = '1MB'")
            cur.execute("SELECT pg_reload_conf()")
        wait_until(lambda: new_session_shows(dbname, "reportstore.batch_bytes") == "1MB", 10, "the reload")
        with in_background(dbname, "SELECT reportstore.run_once()") as (pid, out, t):
            wait_until(lambda: value(db, "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                                         "WHERE l.pid = %s AND c.relname = 'reports' AND l.mode = 'RowShareLock'",
                                     (pid,)), 30, "run_once to lock its batch")
            time.sleep(0.5)  # its upload is stalled by now
            started = time.monotonic()
            with db.cursor() as cur:
                cur.execute("SET lock_timeout = '10s'")
                cur.execute("UPDATE reports SET title = 'edited' WHERE report_id = %s", (small[0],))
                cur.execute("DELETE FROM reports WHERE report_id = %s", (small[1],))
                cur.execute("RESET lock_timeout")
            waited = time.monotonic() - started
            assert waited < 5, "the application waited %.1f s for rows the batch does not move" % waited
            assert "rows" not in out and "error" not in out, "run_once ended early: %r" % out
            # pg_cancel_backend ends the stalled batch at once, the report unchanged.
            cancelled = time.monotonic()
            with db.cursor() as cur:
                cur.execute("SELECT pg_cancel_backend(%s)", (pid,))
            t.join(30)
        assert out.get("error") is not None and out["error"].pgcode == "57014", out
        assert out["ended"] - cancelled < 3, "cancel took %.1f s" % (out["ended"] - cancelled)
        assert report_state(db, big)[1] is None
    finally:
        s3.clear_faults()
        with db.cursor() as cur:
            cur.execute("ALTER SYSTEM RESET reportstore.batch_bytes")
            cur.execute("SELECT pg_reload_conf()")
            cur.execute("DELETE FROM reports WHERE report_id = ANY(%s::uuid[])", ([big] + small,))


# 3. Cancellation at any size ------------------------------------------------------------

LARGE_SQL = ("(SELECT jsonb_agg(jsonb_build_object('i', g, 'name', 'finding ' || g, 'text', repeat('lorem ', 20))) "
             "FROM generate_series(1, 400000) g)")  # about 70 MB of text


def test_statement_timeout_ends_large_offload_and_fetch_quickly(db, dbname):
    rid = insert_sql(db, LARGE_SQL)
    try:
        for sql in ("SELECT report_offload(%s)", "SELECT length(report_fetch(%s)::text)"):
            conn = connect(dbname)
            try:
                with conn.cursor() as cur:
                    cur.execute("SET statement_timeout = '300ms'")
                started = time.monotonic()
                e = query_error(conn, sql, (rid,))
                elapsed = time.monotonic() - started
            finally:
                conn.close()
            assert e.pgcode == "57014", error_text(e)
            assert elapsed < 3, "%s was cancelled only after %.1f s" % (sql, elapsed)
            if "offload" in sql:
                assert report_state(db, rid)[1] is None
                assert offload(db, rid) == object_path(rid)  # now offloaded, for the fetch
    finally:
        with db.cursor() as cur:
            cur.execute("DELETE FROM reports WHERE report_id = %s", (rid,))


# 4. The worker: pause, outage, incomplete multipart uploads ------------------------------

WORKER_DB = "robust_worker"


@pytest.fixture(scope="module")
def cluster():
    top = scratch_dir("robust-cluster.")
    conf = ["reportstore.database = '%s'" % WORKER_DB, "reportstore.worker_enabled = on",
            "reportstore.naptime = '1h'", "reportstore.request_timeout = '1s'", "reportstore.timeout_per_mib = 0",
            "reportstore.connect_timeout = '1s'", "reportstore.systemic_backoff_max = '60s'",
            "reportstore.retry_base_delay = '30s'"]
    c = Cluster.start(os.path.join(top, "pg"), conf)
    try:
        c.query("CREATE DATABASE %s" % WORKER_DB, dbname="postgres")
        conn = c.connect(WORKER_DB)
        run_sql_file(conn, "test/fixtures/seed_schema_before.sql")
        with conn.cursor() as cur:
            cur.execute("CREATE EXTENSION reportstore")
            cur.execute("INSERT INTO assessments VALUES (%s, 'robust')", (ASSESSMENT,))
        conn.close()
        c.db = WORKER_DB
        yield c
    finally:
        c.stop()
        shutil.rmtree(top, ignore_errors=True)


def wq(cluster, sql, args=None):
    return cluster.query(sql, args, dbname=WORKER_DB)


def worker_state(cluster):
    return wq(cluster, "SELECT state FROM reportstore.worker_info()")[0][0]


def add(cluster, n, size, seed):
    conn = cluster.connect(WORKER_DB)
    try:
        return [insert_text(conn, report_json(size, seed + i)) for i in range(n)]
    finally:
        conn.close()


def pending(cluster, ids):
    return wq(cluster, "SELECT count(*) FROM reports WHERE report_id = ANY(%s::uuid[]) AND minio_path IS NULL",
              (list(ids),))[0][0]


def test_pause_says_pausing_until_the_batch_in_flight_ends(cluster, s3):
    wait_until(lambda: worker_state(cluster) in ("idle", "waiting"), 30, "the worker to settle")
    rid = str(uuid.uuid4())
    s3.faults({"method": "PUT", "path_regex": key_regex(rid), "action": "delay", "seconds": 4, "count": 1})
    wq(cluster, "SET reportstore.request_timeout = '30s'")  # this session only: the worker keeps its 1 s
    with contextlib.ExitStack() as stack:
        stack.callback(lambda: wq(cluster, "SELECT reportstore.resume()"))
        # the delayed upload would time out after 1 s: give this one time
        cluster.query("ALTER SYSTEM SET reportstore.request_timeout = '30s'", dbname="postgres")
        stack.callback(lambda: cluster.query("SELECT pg_reload_conf()", dbname="postgres"))
        stack.callback(lambda: cluster.query("ALTER SYSTEM RESET reportstore.request_timeout", dbname="postgres"))
        cluster.query("SELECT pg_reload_conf()", dbname="postgres")
        time.sleep(0.5)
        conn = cluster.connect(WORKER_DB)
        insert_text(conn, report_json(300, 1400), rid)
        conn.close()
        wait_until(lambda: worker_state(cluster) == "running", 10, "the worker to start the batch")
        wq(cluster, "SELECT reportstore.pause()")
        assert worker_state(cluster) == "pausing"
        wait_until(lambda: worker_state(cluster) == "paused", 15, "the batch to end and the worker to pause")
        assert pending(cluster, [rid]) == 0  # the batch in flight finished its work


def test_recovery_after_an_outage_takes_seconds(cluster, s3):
    # The endpoint accepts connections and never answers: every upload times
    # out. No report is charged, the worker backs off as a whole, and once the
    # endpoint is back it resumes within seconds even though its backoff has
    # grown past that. Requests time out after 3 s here, longer than the first
    # backoff (1 s): a probe of the endpoint outlasts the backoff, which made
    # the worker sleep for reportstore.naptime (1 h here) instead of probing
    # again.
    with system_settings(cluster, reportstore__request_timeout="3s"):
        s3.faults({"action": "stall", "count": -1})
        try:
            ids = add(cluster, 20, 300, 1500)
            wait_until(lambda: worker_state(cluster) == "backing off", 30, "the worker to back off")
            time.sleep(12)  # backoff 1, 2, 4, 8 s: the next try would be far away
            assert wq(cluster, "SELECT count(*) FROM reportstore.offload_state")[0][0] == 0, \
                wq(cluster, "SELECT * FROM reportstore.offload_state")
            assert pending(cluster, ids) == 20
            info = wq(cluster, "SELECT last_error FROM reportstore.worker_info()")[0][0]
            assert "timed out" in info, info
        finally:
            s3.clear_faults()
        back = time.monotonic()
        wait_until(lambda: pending(cluster, ids) == 0, 60, "the reports to be offloaded after the outage")
        recovered = time.monotonic() - back
        assert recovered < 15, "recovery took %.1f s" % recovered + open(cluster.log_path).read()[-6000:]
        assert wq(cluster, "SELECT count(*) FROM reportstore.offload_state")[0][0] == 0


def test_deletions_to_a_silent_endpoint_wait_without_being_charged(cluster, s3):
    # Deleted reports' objects are due at once (delete_delay 0); the endpoint
    # stalls every DELETE. The first one that gets no answer stops the step:
    # no queued deletion is charged an attempt, and they all go once it answers.
    ids = add(cluster, 3, 300, 1600)
    wait_until(lambda: pending(cluster, ids) == 0, 30, "the reports to be offloaded")
    with system_settings(cluster, reportstore__delete_delay="0"):
        s3.faults({"method": "DELETE", "action": "stall", "count": -1})
        try:
            wq(cluster, "DELETE FROM reports WHERE report_id = ANY(%s::uuid[])", (ids,))
            wait_until(lambda: worker_state(cluster) == "backing off", 30, "the worker to back off")
            queued = wq(cluster, "SELECT count(*), coalesce(max(attempts), 0) FROM reportstore.delete_queue")[0]
            assert queued == (3, 0), queued
        finally:
            s3.clear_faults()
        wait_until(lambda: wq(cluster, "SELECT count(*) FROM reportstore.delete_queue")[0][0] == 0, 60,
                   "the deletions once the endpoint answers again")


def test_incomplete_multipart_upload_after_kill_is_found_and_aborted(cluster, s3):
    cluster.query("ALTER SYSTEM SET reportstore.multipart_threshold = '5MB'", dbname="postgres")
    cluster.query("ALTER SYSTEM SET reportstore.multipart_part_size = '5MB'", dbname="postgres")
    cluster.query("ALTER SYSTEM SET reportstore.request_timeout = '60s'", dbname="postgres")
    cluster.query("SELECT pg_reload_conf()", dbname="postgres")
    rid = str(uuid.uuid4())
    try:
        wq(cluster, "SELECT reportstore.pause()")  # the worker must not offload it first
        conn = cluster.connect(WORKER_DB)
        insert_sql(conn, LARGE_SQL.replace("400000", "100000"), rid)  # ~17 MB: several parts
        conn.close()
        # Parts arrive but are answered only after 30 s: the backend is killed meanwhile.
        s3.faults({"method": "PUT", "path_regex": key_regex(rid) + r".*partNumber", "action": "delay", "seconds": 30,
                   "count": -1})
        conn = cluster.connect(WORKER_DB)
        with conn.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            pid = cur.fetchone()[0]
        runner = threading.Thread(target=lambda: query_error(conn, "SELECT report_offload(%s)", (rid,)))
        runner.start()
        client = s3_backend_client()
        wait_until(lambda: client.list_multipart_uploads(Bucket=env("S3_BUCKET"), Prefix=object_key(rid))
                   .get("Uploads"), 30, "the multipart upload to start")
        time.sleep(1)
        os.kill(pid, signal.SIGKILL)
        runner.join(60)
        s3.clear_faults()
        wait_until(lambda: _accepts(cluster), 60, "the cluster to recover from the kill")
        uploads = client.list_multipart_uploads(Bucket=env("S3_BUCKET"), Prefix=object_key(rid)).get("Uploads", [])
        assert len(uploads) == 1, uploads  # left behind by the killed backend
        found = wq(cluster, "SELECT key, size, action FROM reportstore.orphans(min_age => '0') WHERE key = %s",
                   (object_key(rid),))
        assert ("%s" % object_key(rid), None, "incomplete multipart upload, would abort") in found, found
        done = wq(cluster, "SELECT action FROM reportstore.orphans(delete => true, min_age => '0') WHERE key = %s",
                  (object_key(rid),))
        assert ("incomplete multipart upload, aborted",) in done, done
        assert client.list_multipart_uploads(Bucket=env("S3_BUCKET"), Prefix=object_key(rid)).get("Uploads") is None
        # The lifecycle rule reportstore installs aborts such uploads by itself.
        rules = wq(cluster, "SELECT expiration_days, abort_incomplete_days FROM "
                            "reportstore.set_lifecycle(3650, confirm => true)")
        assert rules == [(3650, 1)], rules
    finally:
        s3.clear_faults()
        for name in ("multipart_threshold", "multipart_part_size", "request_timeout"):
            cluster.query("ALTER SYSTEM RESET reportstore.%s" % name, dbname="postgres")
        cluster.query("SELECT pg_reload_conf()", dbname="postgres")
        wq(cluster, "SELECT reportstore.resume()")


def _accepts(cluster):
    try:
        wq(cluster, "SELECT 1")
        return True
    except psycopg2.Error:
        return False
