"""The background worker, on a cluster of its own.

The module starts a separate PostgreSQL cluster (test/pgcluster.sh) with the
worker enabled in database worker_test: killing the worker makes the
postmaster restart every backend, which must not disturb the other modules.
The worker naps for an hour, so a quick offload can only come from a wake-up
(commit of an INSERT, reportstore.wake(), resume(), a configuration reload);
tests that need polling set a short naptime themselves.
"""
import contextlib
import os
import random
import re
import signal
import subprocess
import tempfile
import threading
import time
import uuid

import psycopg2
import psycopg2.extras
import pytest

from conftest import ROOT, env, key_regex, object_key, object_path, report_json, run_sql_file, s3_backend_client

PGCLUSTER = os.path.join(ROOT, "test", "pgcluster.sh")
DB = "worker_test"
ASSESSMENT = "a0000000-0000-4000-8000-000000000001"
STATES = {"stopped", "starting", "waiting", "idle", "running", "paused", "backing off"}
WORKER_CONF = [
    "reportstore.database = '%s'" % DB,
    "reportstore.worker_enabled = on",
    "reportstore.naptime = '1h'",
    "reportstore.retry_base_delay = '200ms'",
    "reportstore.retry_max_delay = '2s'",
    "reportstore.systemic_backoff_max = '2s'",
]


def wait_until(predicate, timeout=30.0, what="condition", interval=0.1):
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.time() > deadline:
            pytest.fail("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(interval)


class Cluster:
    """The worker's own cluster: connections, queries, server log."""

    def __init__(self, directory, port):
        self.dir = directory
        self.port = port
        self.log_path = os.path.join(directory, "server.log")

    def connect(self, dbname=DB, autocommit=True):
        conn = psycopg2.connect(host=self.dir, port=self.port, user="postgres", dbname=dbname)
        conn.autocommit = autocommit
        return conn

    def query(self, sql, args=None, dbname=DB):
        """Runs sql in a new autocommit session and returns all rows (or None)."""
        conn = self.connect(dbname)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return cur.fetchall() if cur.description else None
        finally:
            conn.close()

    def value(self, sql, args=None):
        return self.query(sql, args)[0][0]

    def worker_info(self):
        conn = self.connect()
        try:
            with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                cur.execute("SELECT * FROM reportstore.worker_info()")
                return dict(cur.fetchone())
        finally:
            conn.close()

    def worker_state(self):
        return self.worker_info()["state"]

    def status(self):
        conn = self.connect()
        try:
            with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                cur.execute("SELECT * FROM reportstore.status")
                return dict(cur.fetchone())
        finally:
            conn.close()

    def stats(self):
        conn = self.connect()
        try:
            with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                cur.execute("SELECT * FROM reportstore.stats()")
                return dict(cur.fetchone())
        finally:
            conn.close()

    def log_size(self):
        return os.path.getsize(self.log_path)

    def read_log(self, offset=0):
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", errors="replace")

    def reload_conf(self):
        self.query("SELECT pg_reload_conf()")

    def pending(self, ids):
        """How many of these reports are not offloaded yet."""
        return self.value("SELECT count(*) FROM reports WHERE report_id = ANY(%s::uuid[]) AND minio_path IS NULL",
                          (list(ids),))

    def wait_offloaded(self, ids, timeout=30.0, what="the reports to be offloaded"):
        ids = list(ids)
        wait_until(lambda: self.pending(ids) == 0, timeout, what)

    def wait_idle(self, timeout=30.0):
        wait_until(lambda: self.worker_state() == "idle", timeout, "the worker to be idle")


@pytest.fixture(scope="module")
def cluster():
    base = os.path.dirname(os.path.abspath(env("PGHOST")))
    if not os.access(base, os.W_OK):
        base = None
    top = tempfile.mkdtemp(prefix="worker-cluster.", dir=base)
    os.chmod(top, 0o755)
    directory = os.path.join(top, "pg")
    port = int(env("PGPORT")) + 1
    try:
        started = subprocess.run([PGCLUSTER, "start", directory, str(port)] + WORKER_CONF, capture_output=True,
                                 text=True, timeout=120)
        if started.returncode != 0:
            log = ""
            with contextlib.suppress(OSError), open(os.path.join(directory, "server.log")) as f:
                log = f.read()[-3000:]
            pytest.fail("test/pgcluster.sh start failed:\n%s%s\n%s" % (started.stdout, started.stderr, log))
        c = Cluster(directory, port)
        c.query("CREATE DATABASE %s" % DB, dbname="postgres")
        conn = c.connect()
        try:
            run_sql_file(conn, "test/fixtures/seed_schema_before.sql")
            with conn.cursor() as cur:
                cur.execute("CREATE EXTENSION reportstore")
                cur.execute("INSERT INTO assessments VALUES (%s, 'worker')", (ASSESSMENT,))
        finally:
            conn.close()
        yield c
    finally:
        subprocess.run([PGCLUSTER, "stop", directory], capture_output=True, timeout=120)


@pytest.fixture(autouse=True)
def clean(cluster):
    """Each test starts with an empty reports table, a resumed and idle worker."""
    cluster.query("SELECT reportstore.resume()")
    cluster.query("DELETE FROM reports; DELETE FROM reportstore.offload_state; DELETE FROM reportstore.objects")
    wait_until(lambda: cluster.worker_state() in ("idle", "starting"), 30, "the worker to settle")
    yield


def insert_reports(conn, docs, fmt="json"):
    """Inserts the JSON documents in one statement (in conn's transaction);
    returns {report_id: report_data::text}."""
    ids = [str(uuid.uuid4()) for _ in docs]
    with conn.cursor() as cur:
        cur.execute("INSERT INTO reports (report_id, assessment_id, report_type, title, format, report_data, status, "
                    "generated_at) SELECT id, %s, 'compliance', 'worker', %s, d::jsonb, 'completed', now() "
                    "FROM unnest(%s::uuid[], %s::text[]) AS t(id, d) RETURNING report_id::text, report_data::text",
                    (ASSESSMENT, fmt, ids, list(docs)))
        return dict(cur.fetchall())


def add_reports(cluster, n, size=300, seed=0):
    conn = cluster.connect()
    try:
        return insert_reports(conn, [report_json(size, seed + i) for i in range(n)])
    finally:
        conn.close()


@contextlib.contextmanager
def system_settings(cluster, **settings):
    """ALTER SYSTEM SET name = value (dots as __) + reload; RESET + reload afterwards, always."""
    names = [k.replace("__", ".") for k in settings]
    before = {n: cluster.value("SELECT current_setting(%s)", (n,)) for n in names}
    try:
        for name, value in zip(names, settings.values()):
            cluster.query("ALTER SYSTEM SET %s = %%s" % name, (value,))
        cluster.reload_conf()
        for name in names:
            wait_until(lambda: cluster.value("SELECT current_setting(%s)", (name,)) != before[name]
                       or str(settings[name.replace(".", "__")]) == before[name], 10, "reload of " + name)
        yield
    finally:
        for name in names:
            cluster.query("ALTER SYSTEM RESET %s" % name)
        cluster.reload_conf()
        for name in names:
            wait_until(lambda: cluster.value("SELECT current_setting(%s)", (name,)) == before[name], 10,
                       "reset of " + name)


def front_log_lines(rid, method="PUT", status=None, fmt="json"):
    """Lines of the S3 front's request log for this report's object."""
    path = os.path.join(env("S3_STACK_DIR"), "s3front.log")
    pat = re.compile(r" %s /%s(\?\S*)? -> %s$" % (method, re.escape("%s/%s" % (env("S3_BUCKET"), object_key(rid, fmt))),
                                                  status if status else r"\d+"))
    with open(path, encoding="utf-8", errors="replace") as f:
        return [line.rstrip("\n") for line in f if pat.search(line.rstrip("\n"))]


def front_put_counts():
    """{report_id: number of successful PUTs of its object} from the front's request log."""
    path = os.path.join(env("S3_STACK_DIR"), "s3front.log")
    pat = re.compile(r" PUT /%s/reports/([0-9a-f-]{36})/report\.\w+ -> 200$" % re.escape(env("S3_BUCKET")))
    counts = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = pat.search(line.rstrip("\n"))
            if m:
                counts[m.group(1)] = counts.get(m.group(1), 0) + 1
    return counts


def stored_object(client, rid, fmt="json"):
    return client.get_object(Bucket=env("S3_BUCKET"), Key=object_key(rid, fmt))["Body"].read()


def assert_objects_match(cluster, originals):
    """Every report is offloaded to its path, report_data is gone, and the
    object in the backend is byte for byte the report_data::text of before."""
    rows = dict((r[0], r[1:]) for r in cluster.query(
        "SELECT report_id::text, minio_path, report_data IS NULL FROM reports WHERE report_id = ANY(%s::uuid[])",
        (list(originals),)))
    assert len(rows) == len(originals), "reports were lost: %d of %d left" % (len(rows), len(originals))
    client = s3_backend_client()
    bad = []
    for rid, text in originals.items():
        path, data_gone = rows[rid]
        if path != object_path(rid) or not data_gone:
            bad.append("%s: minio_path %r, report_data cleared %r" % (rid, path, data_gone))
            continue
        body = stored_object(client, rid)
        if body != text.encode("utf-8"):
            bad.append("%s: object of %d bytes differs from report_data::text of %d bytes"
                       % (rid, len(body), len(text.encode("utf-8"))))
    assert not bad, "%d reports not offloaded correctly:\n%s" % (len(bad), "\n".join(bad[:20]))


def assert_no_half_done(cluster):
    """Every row has its data in the database or a path; a path means the object exists."""
    rows = cluster.query("SELECT report_id::text, report_data IS NOT NULL, minio_path FROM reports")
    client = s3_backend_client()
    for rid, has_data, path in rows:
        assert has_data or path is not None, "report %s has neither report_data nor minio_path" % rid
        if path is not None:
            assert path == object_path(rid)
            client.head_object(Bucket=env("S3_BUCKET"), Key=object_key(rid))  # raises if missing
    return rows


def worker_pid(cluster):
    return cluster.worker_info()["pid"]


def process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purposes
    with contextlib.suppress(OSError), open("/proc/%d/stat" % pid) as f:
        return f.read().split(") ", 1)[1][0] != "Z"
    return True


def mixed_sizes(n, seed=1):
    """Mostly small reports, some medium, a few of about 1 MiB (total ~25 MB for 1000)."""
    rng = random.Random(seed)
    sizes = []
    for i in range(n):
        r = rng.random()
        if r < 0.85:
            sizes.append(rng.randint(100, 4000))
        elif r < 0.98:
            sizes.append(rng.randint(4000, 128 * 1024))
        else:
            sizes.append(rng.randint(256 * 1024, 1024 * 1024))
    sizes[0] = 100
    sizes[1] = 1024 * 1024
    return sizes


def test_thousand_mixed_reports_all_offloaded_byte_for_byte(cluster):
    sizes = mixed_sizes(1000)
    docs = [report_json(size, seed) for seed, size in enumerate(sizes)]
    originals = {}
    conn = cluster.connect()
    try:
        for start in range(0, len(docs), 250):  # four statements, each commits and wakes the worker
            originals.update(insert_reports(conn, docs[start:start + 250]))
    finally:
        conn.close()
    assert len(originals) == 1000
    total = sum(len(t.encode()) for t in originals.values())
    assert total < 60 * 1024 * 1024
    assert min(len(t) for t in originals.values()) < 300 and max(len(t) for t in originals.values()) > 900_000

    cluster.wait_offloaded(originals, timeout=90, what="1000 reports to be offloaded by the worker")
    wait_until(lambda: cluster.status()["reports_in_database"] == 0, 10, "status to show nothing in the database")
    status = cluster.status()
    assert status["reports_offloaded"] == 1000
    assert status["percent_migrated"] == 100
    assert status["bytes_offloaded"] == total
    assert status["reports_failing"] == 0
    assert_objects_match(cluster, originals)

    # report_fetch() gives back the same content, for a sample including the largest and smallest
    by_size = sorted(originals, key=lambda rid: len(originals[rid]))
    sample = by_size[:3] + by_size[-3:] + random.Random(2).sample(by_size, 20)
    conn = cluster.connect()
    try:
        with conn.cursor() as cur:
            for rid in sample:
                cur.execute("SELECT report_fetch(%s)::text", (rid,))
                assert cur.fetchone()[0] == originals[rid], "report_fetch(%s) differs" % rid
    finally:
        conn.close()


def test_insert_wakes_idle_worker_and_rollback_wakes_nothing(cluster):
    cluster.wait_idle()
    assert cluster.value("SHOW reportstore.naptime") == "1h"
    time.sleep(0.5)
    t0 = time.monotonic()
    rid = next(iter(add_reports(cluster, 1, 500)))
    cluster.wait_offloaded([rid], timeout=10, what="a new report to be offloaded (the commit must wake the worker)")
    assert time.monotonic() - t0 < 10
    cluster.wait_idle()

    # a rolled-back insert does not wake the worker (no batch runs) and uploads nothing
    last_batch = cluster.worker_info()["last_batch_at"]
    assert last_batch is not None
    conn = cluster.connect(autocommit=False)
    try:
        rolled_back = next(iter(insert_reports(conn, [report_json(500, 7)])))
        conn.rollback()
    finally:
        conn.close()
    time.sleep(4)
    assert front_log_lines(rolled_back) == [], "the rolled-back report was uploaded"
    assert cluster.worker_info()["last_batch_at"] == last_batch, "a rolled-back insert woke the worker"
    assert cluster.value("SELECT count(*) FROM reports WHERE report_id = %s", (rolled_back,)) == 0
