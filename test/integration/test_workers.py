"""Parallel workers and every database (issue 14), each test on a throwaway
cluster of its own (test/pgcluster.sh on a free port, in a scratch directory;
stopped at the end, its server.log kept for a failed test):

* reportstore.max_workers = 3 migrate 2,000 mixed reports (1 KiB to 6 MiB,
  multipart uploads, three formats) while one of them is SIGKILLed:
  nothing is lost, every object is byte for byte the report's text, and
  several workers really ran side by side;
* reportstore.database = '*': two databases offloaded at once, a third one
  created while the server runs is served without a restart or reload, and
  DROP DATABASE of a database whose worker is in the middle of an upload
  completes promptly (without FORCE);
* a commit wakes one idle worker, not all of them (observed through
  pg_stat_activity: every pass of a worker runs its steps as "active" and
  moves its state_change; reportstore.wake(), which wakes them all, shows
  that the observation sees every woken worker);
* a worker whose start-up waited for a lock (which resets the latch
  PostgreSQL sets for a new process) still makes its first pass at once and
  offloads the reports pending from before it started.

Timing bounds are generous ("it does not hang"), never tight.
"""
import contextlib
import gzip
import hashlib
import os
import re
import shutil
import signal
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import psycopg2

from conftest import (Cluster, create_report_database, dict_row, env, key_regex, object_key, s3_backend_client,
                      scratch_dir, system_settings, wait_until)

# Nobody's worker wakes by itself: every pass comes from a commit, a wake or
# resume(), or a worker that starts (a new process always makes one pass).
COMMON_CONF = [
    "reportstore.worker_enabled = on",
    "reportstore.naptime = '1h'",
    "reportstore.retry_base_delay = '200ms'",
    "reportstore.retry_max_delay = '2s'",
    "reportstore.systemic_backoff_max = '2s'",
    "restart_after_crash = on",
]
WORKER = "backend_type = 'reportstore worker'"


@contextlib.contextmanager
def own_cluster(name, conf, dbname):
    """A cluster of its own (S3 settings from the environment, see test/pgcluster.sh)
    with these postgresql.conf lines; yields an rstest.Cluster whose default
    database is dbname. Removed afterwards, but for the server log of a failed test."""
    top = scratch_dir("workers-%s." % name)
    directory = os.path.join(top, "pg")
    c = None
    failed = True
    try:
        c = Cluster.start(directory, COMMON_CONF + conf, dbname=dbname)
        yield c
        failed = False
    finally:
        (c or Cluster(directory, 0)).stop()  # server.log stays
        if failed:
            sys.stderr.write("test_workers: server log kept in %s\n" % os.path.join(directory, "server.log"))
        else:
            shutil.rmtree(top, ignore_errors=True)


def dict_of(c, dbname, sql, args=None):
    conn = c.connect(dbname)
    try:
        return dict_row(conn, sql, args)
    finally:
        conn.close()


def insert_generated(c, dbname, n, pad_sql="repeat(md5(i::text), 30)", fmt_sql="'json'", ids=None):
    """Inserts n reports generated in SQL (i = 1..n; pad_sql: a text expression of i)
    in one statement; returns {report_id: (md5 of report_data::text, its length, format)}."""
    ids = ids or [str(uuid.uuid4()) for _ in range(n)]
    conn = c.connect(dbname)
    try:
        with conn.cursor() as cur:
            cur.execute("SET default_toast_compression = lz4")
            cur.execute(
                "WITH ins AS ("
                " INSERT INTO reports (report_id, assessment_id, report_type, title, format, report_data, status, "
                "                      generated_at) "
                " SELECT (%%s::uuid[])[i], %%s, 'compliance', 'workers', (%s)::report_format, "
                "        jsonb_build_object('i', i, 'title', 'Rapport é \"q\" \\ 日本 ' || i, 'pad', %s), "
                "        'completed', now() "
                "   FROM generate_series(1, %%s) i "
                " RETURNING report_id, report_data::text AS t, format::text AS f) "
                "SELECT report_id::text, md5(t), length(t), f FROM ins" % (fmt_sql, pad_sql),
                (ids, "a0000000-0000-4000-8000-000000000001", n))
            return {r[0]: r[1:] for r in cur.fetchall()}
    finally:
        conn.close()


def pending(c, dbname, ids=None):
    """Reports of the database (or these ones) not offloaded yet."""
    if ids is None:
        return c.value("SELECT count(*) FROM reports WHERE minio_path IS NULL", dbname=dbname)
    return c.value("SELECT count(*) FROM reports WHERE report_id = ANY(%s::uuid[]) AND minio_path IS NULL",
                   (list(ids),), dbname=dbname)


class Sampler(threading.Thread):
    """Samples the workers in pg_stat_activity every 50 ms: (time, [(datname, pid, state, query)])."""

    def __init__(self, c):
        super().__init__(daemon=True)
        self.c = c
        self.samples = []
        self.halt = threading.Event()

    def run(self):
        conn = None
        while not self.halt.is_set():
            try:
                if conn is None:
                    conn = self.c.connect("postgres")
                with conn.cursor() as cur:
                    cur.execute("SELECT datname, pid, state, query FROM pg_stat_activity WHERE " + WORKER)
                    self.samples.append((time.monotonic(), cur.fetchall()))
            except psycopg2.Error:  # the server is restarting after a crash
                with contextlib.suppress(Exception):
                    conn.close()
                conn = None
                self.halt.wait(0.2)
            self.halt.wait(0.05)
        if conn is not None:
            conn.close()

    def stop(self):
        self.halt.set()
        self.join(10)

    @staticmethod
    def offloading(r):
        return r[2] == "active" and "offloading a batch" in (r[3] or "")

    def most_offloading(self, datname=None):
        """The most workers seen offloading a batch at once (in one database, or in any)."""
        return max([len([r for r in rows if self.offloading(r) and (datname is None or r[0] == datname)])
                    for _, rows in self.samples] or [0])

    def pids_offloading(self, datname=None):
        return {r[1] for _, rows in self.samples for r in rows
                if self.offloading(r) and (datname is None or r[0] == datname)}

    def most_workers(self):
        return max([len(rows) for _, rows in self.samples] or [0])

    def databases_offloading_at_once(self):
        """The most databases seen with a worker offloading a batch in one sample."""
        return max([len(set(r[0] for r in rows if self.offloading(r))) for _, rows in self.samples] or [0])


T0 = time.monotonic()


def mark(what):
    sys.stderr.write("[%6.1f] %s\n" % (time.monotonic() - T0, what))


def quietly(predicate):
    """predicate, false while the server does not accept connections (crash recovery)."""
    def call():
        try:
            return predicate()
        except psycopg2.OperationalError:
            return False
    return call


def fetch_object(client, key):
    """The object's bytes as reportstore uploaded them, decoded per Content-Encoding."""
    got = client.get_object(Bucket=env("S3_BUCKET"), Key=key)
    body = got["Body"].read()
    encoding = got.get("ContentEncoding") or ""
    if encoding == "gzip":
        body = gzip.decompress(body)
    else:
        assert encoding in ("", "identity"), "unexpected Content-Encoding %r of %s" % (encoding, key)
    return body, got["ETag"]


def fetch_from_s3(keys):
    """{key: (md5 of the decoded object, ETag)}, 8 GETs at a time straight from the S3 server."""
    client = s3_backend_client()

    def one(key):
        body, etag = fetch_object(client, key)
        return key, (hashlib.md5(body).hexdigest(), etag)
    with ThreadPoolExecutor(8) as pool:
        return dict(pool.map(one, keys))


def assert_offloaded_byte_for_byte(c, dbname, originals):
    """Every report of originals is offloaded to its own path with report_data
    cleared and one object row, reads back through report_fetch_many, and its
    object in the S3 server (decoded) is byte for byte its report_data::text of
    before (compared by MD5 of the whole text). Returns the objects' ETags."""
    bucket = env("S3_BUCKET")
    rows = c.query("SELECT r.report_id::text, r.minio_path, r.report_data IS NULL, o.path "
                   "FROM reports r LEFT JOIN reportstore.objects o USING (report_id) "
                   "WHERE r.report_id = ANY(%s::uuid[])", (list(originals),), dbname=dbname)
    assert len(rows) == len(originals), "reports lost: %d of %d left" % (len(rows), len(originals))
    bad = [r for r in rows if r[1] != "s3://%s/%s" % (bucket, object_key(r[0], originals[r[0]][2])) or not r[2]
           or r[3] != r[1]]
    assert not bad, "%d reports not offloaded right, e.g. %s" % (len(bad), bad[:3])
    fetched = dict(c.query("SELECT f.report_id::text, md5(f.report_data::text) FROM report_fetch_many(%s::uuid[]) f",
                           (list(originals),), dbname=dbname))
    differ = [rid for rid, o in originals.items() if fetched.get(rid) != o[0]]
    assert not differ, "%d reports differ through report_fetch_many, e.g. %s" % (len(differ), differ[:3])
    stored = fetch_from_s3([object_key(rid, o[2]) for rid, o in originals.items()])
    differ = [rid for rid, o in originals.items() if stored[object_key(rid, o[2])][0] != o[0]]
    assert not differ, "%d objects differ from their report's text, e.g. %s" % (len(differ), differ[:3])
    return {rid: stored[object_key(rid, o[2])][1] for rid, o in originals.items()}


# 1. Three workers, 2,000 mixed reports, one worker SIGKILLed -------------------------------

MIGRATE_DB = "migrate"
N_REPORTS = 2000
# Report i: 3 of 6 MiB (over multipart_threshold), every 150th 0.5-1.5 MiB,
# every 8th 16-96 KiB, the rest 1-16 KiB; json, pdf and html in turn.
PAD_SQL = ("repeat(md5(i::text), CASE WHEN i %% 600 = 0 THEN 196608 "
           "                          WHEN i %% 150 = 0 THEN 16000 + (i * 7919) %% 32000 "
           "                          WHEN i %% 8 = 0 THEN 500 + (i * 7919) %% 2500 "
           "                          ELSE 30 + (i * 7919) %% 480 END)")
FORMATS_SQL = "(ARRAY['json', 'pdf', 'html'])[1 + i %% 3]"


def test_three_workers_migrate_mixed_reports_through_a_sigkill(s3):
    conf = ["reportstore.database = '%s'" % MIGRATE_DB, "reportstore.max_workers = 3",
            "reportstore.batch_size = 10", "reportstore.multipart_threshold = '5MB'",
            "reportstore.multipart_part_size = '5MB'", "reportstore.request_timeout = '60s'"]
    with own_cluster("migrate", conf, MIGRATE_DB) as c:
        create_report_database(c.connect, MIGRATE_DB, title="workers", drop=False).close()
        wait_until(lambda: c.value("SELECT workers FROM reportstore.worker_info()", dbname=MIGRATE_DB) == 3, 30,
                   "the launcher to start 3 workers")
        c.query("SELECT reportstore.pause()", dbname=MIGRATE_DB)
        started = time.monotonic()
        originals = insert_generated(c, MIGRATE_DB, N_REPORTS, PAD_SQL, FORMATS_SQL)
        generated = time.monotonic() - started
        lengths = sorted(o[1] for o in originals.values())
        assert len(originals) == N_REPORTS and lengths[0] < 2048 and lengths[-1] >= 6 * 2 ** 20, lengths[::200]
        mark("generated")

        # Every PUT (and multipart part) takes 50 ms longer: the migration lasts
        # long enough to kill a worker in the middle of it, whatever the machine.
        s3.faults({"method": "PUT", "path_regex": "/reports/", "action": "delay", "seconds": 0.05, "count": -1})
        sampler = Sampler(c)
        sampler.start()
        try:
            migration_started = time.monotonic()
            c.query("SELECT reportstore.resume()", dbname=MIGRATE_DB)

            # SIGKILL a worker that is offloading once the migration is well under
            # way: the postmaster restarts every backend, the launcher starts the
            # workers again and they finish.
            def busy_worker():
                offloaded = c.value("SELECT count(*) FROM reports WHERE minio_path IS NOT NULL", dbname=MIGRATE_DB)
                if offloaded < 300:
                    return None
                assert offloaded < N_REPORTS, "the migration ended before a worker could be killed"
                pids = c.query("SELECT pid FROM pg_stat_activity WHERE " + WORKER + " AND state = 'active' "
                               "AND query LIKE '%offloading a batch%' ORDER BY pid")
                return (pids[0][0], offloaded) if pids else None
            pid, offloaded_before = wait_until(busy_worker, 60, "a worker offloading after 300 offloads",
                                               interval=0.02)
            log_offset = c.log_size()
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda: "all server processes terminated; reinitializing" in c.read_log(log_offset), 30,
                       "the postmaster to restart every backend after the crash")
            wait_until(quietly(lambda: pending(c, MIGRATE_DB) == 0), 120,
                       "the workers to finish the migration after the crash")
            migrated_in = time.monotonic() - migration_started
        finally:
            sampler.stop()
            s3.clear_faults()
        mark("migrated")
        assert re.search(r"reportstore worker.*\(PID %d\) was terminated by signal 9" % pid, c.read_log(log_offset))

        # 3 workers ran, several offloaded, and at the same time.
        assert sampler.most_workers() == 3, sampler.most_workers()
        assert len(sampler.pids_offloading()) >= 2, "only one worker was ever seen offloading"
        assert sampler.most_offloading() >= 2, "never more than one worker offloading at a time"
        c.wait_idle(30)
        info = dict_of(c, MIGRATE_DB, "SELECT * FROM reportstore.worker_info()")
        assert info["workers"] == 3 and info["state"] == "idle", info

        # 0 lost, byte for byte, exactly one object row each, no failure left.
        etags = assert_offloaded_byte_for_byte(c, MIGRATE_DB, originals)
        assert c.value("SELECT count(*) FROM reportstore.objects", dbname=MIGRATE_DB) == N_REPORTS
        assert c.value("SELECT count(*) FROM reportstore.offload_state", dbname=MIGRATE_DB) == 0
        conn = c.connect(MIGRATE_DB)
        try:
            with conn.cursor() as cur:  # a sample through report_fetch itself, the largest included
                largest = sorted(originals, key=lambda rid: -originals[rid][1])[:3]
                for rid in sorted(originals)[::50] + largest:
                    cur.execute("SELECT md5(report_fetch(%s)::text)", (rid,))
                    assert cur.fetchone()[0] == originals[rid][0], rid
        finally:
            conn.close()
        multipart = [rid for rid in largest if "-" in etags[rid]]
        assert len(multipart) == 3, "the reports over multipart_threshold went up in one PUT"
        mark("verified")

        # Counters with N workers: shared memory starts afresh when the
        # postmaster restarts after the crash, so stats() counts exactly the
        # uploads recorded since then (batches in flight at the kill were
        # rolled back and their reports uploaded again).
        stats = dict_of(c, MIGRATE_DB, "SELECT * FROM reportstore.stats()")
        since_reset = c.value("SELECT count(*) FROM reportstore.objects WHERE uploaded_at >= %s",
                              (stats["stats_reset"],), dbname=MIGRATE_DB)
        assert since_reset >= 1 and stats["uploads"] == since_reset, (stats, since_reset)
        assert stats["upload_failures_transient"] + stats["upload_failures_systemic"] == 0, stats
        status = dict_of(c, MIGRATE_DB, "SELECT * FROM reportstore.status")
        assert (status["reports_offloaded"], status["reports_in_database"], status["reports_failing"],
                status["percent_migrated"], status["workers"]) == (N_REPORTS, 0, 0, 100, 3), status
        assert status["bytes_offloaded"] == c.value("SELECT sum(size) FROM reportstore.objects", dbname=MIGRATE_DB)
        sys.stderr.write("%d reports (%.0f MiB of text, generated in %.1f s) migrated in %.1f s by 3 workers, "
                         "at most %d offloading at once; worker %d killed after %d offloads\n"
                         % (N_REPORTS, sum(lengths) / 2 ** 20, generated, migrated_in, sampler.most_offloading(),
                            pid, offloaded_before))


# 2. Every database -------------------------------------------------------------------------

def test_every_database_two_at_once_a_new_one_served_drop_database_not_blocked(s3):
    conf = ["reportstore.database = '*'", "reportstore.max_workers = 3", "reportstore.batch_size = 10",
            "reportstore.request_timeout = '120s'"]
    with own_cluster("every", conf, "postgres") as c:
        for name in ("tenant_a", "tenant_b"):
            create_report_database(c.connect, name, title=name, drop=False).close()
            c.query("SELECT reportstore.pause()", dbname=name)

        # Two databases offloading at once: both get their reports in while
        # paused, then both resume; every PUT is 100 ms slower, so each
        # database's migration lasts seconds.
        originals = {name: insert_generated(c, name, 150, "repeat(md5(i::text), 200 + i %% 300)")
                     for name in ("tenant_a", "tenant_b")}
        s3.faults({"method": "PUT", "path_regex": "/reports/", "action": "delay", "seconds": 0.1, "count": -1})
        sampler = Sampler(c)
        sampler.start()
        try:
            for name in originals:
                c.query("SELECT reportstore.resume()", dbname=name)
            for name, ids in originals.items():
                wait_until(lambda: pending(c, name, ids) == 0, 90, "the reports of %s to be offloaded" % name)
        finally:
            sampler.stop()
            s3.clear_faults()
        mark("two databases offloaded")
        at_once = sampler.databases_offloading_at_once()
        started_in = [m.group(1) for m in re.finditer(r'reportstore worker \d+ started in database "(\w+)"',
                                                       c.read_log())]
        for name, ids in originals.items():
            assert sampler.pids_offloading(name), name
            assert_offloaded_byte_for_byte(c, name, ids)

        # A third database, created while the server runs: served without a
        # restart or a reload.
        conf_loaded = c.value("SELECT pg_conf_load_time()")
        postmaster_started = c.value("SELECT pg_postmaster_start_time()")
        conn = create_report_database(c.connect, "tenant_c", title="tenant_c", drop=False)
        conn.close()
        third = insert_generated(c, "tenant_c", 5)
        wait_until(lambda: pending(c, "tenant_c", third) == 0, 60, "the reports of the new database to be offloaded")
        assert_offloaded_byte_for_byte(c, "tenant_c", third)
        assert (c.value("SELECT pg_conf_load_time()"), c.value("SELECT pg_postmaster_start_time()")) == \
            (conf_loaded, postmaster_started), "the server was reloaded or restarted"
        assert c.query("SELECT 1 FROM pg_stat_activity WHERE " + WORKER + " AND datname = 'tenant_c'")
        # The first two are still served, now that three share the 3 workers.
        later = {name: insert_generated(c, name, 3) for name in ("tenant_a", "tenant_b")}
        wait_until(lambda: all(pending(c, name, ids) == 0 for name, ids in later.items()), 60,
                   "new reports of tenant_a and tenant_b to be offloaded")
        mark("third database served")

        # DROP DATABASE of a database whose worker is in the middle of an
        # upload: the upload never gets an answer (the front stalls it), yet the
        # DROP completes promptly, without FORCE.
        rid = str(uuid.uuid4())
        before = s3.stats()["faults_injected"].get("stall", 0)
        s3.faults({"method": "PUT", "path_regex": key_regex(rid, "json"), "action": "stall", "seconds": 300,
                   "count": -1})
        insert_generated(c, "tenant_b", 1, ids=[rid])  # its commit wakes a worker of tenant_b
        wait_until(lambda: s3.stats()["faults_injected"].get("stall", 0) > before, 30,
                   "the worker of tenant_b to send the PUT that stalls")
        busy = c.query("SELECT pid FROM pg_stat_activity WHERE " + WORKER + " AND datname = 'tenant_b' "
                       "AND state = 'active' AND query LIKE '%offloading a batch%'")
        assert busy, "no worker of tenant_b is in the middle of its batch"
        dropped_at = time.monotonic()
        c.query("DROP DATABASE tenant_b")
        dropped_in = time.monotonic() - dropped_at
        assert dropped_in < 30, "DROP DATABASE took %.1f s" % dropped_in
        assert not c.query("SELECT 1 FROM pg_database WHERE datname = 'tenant_b'")
        assert not c.query("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (busy[0][0],))
        s3.clear_faults()
        # The others are still served.
        later = {name: insert_generated(c, name, 2) for name in ("tenant_a", "tenant_c")}
        wait_until(lambda: all(pending(c, name, ids) == 0 for name, ids in later.items()), 60,
                   "new reports of tenant_a and tenant_c to be offloaded after the DROP")
        assert not c.query("SELECT 1 FROM pg_stat_activity WHERE " + WORKER + " AND datname = 'tenant_b'")
        mark("drop database")
        sys.stderr.write("DROP DATABASE of a database whose worker was uploading took %.2f s\n" % dropped_in)

        # Last, so that everything above is checked first. (Two databases once took turns with all the
        # workers: the launcher delayed a database whose surplus worker it had stopped itself.)
        assert at_once == 2, "the two databases were never offloaded at the same time (workers started, in order: %s)" % (
            ", ".join(started_in[:12]))


# 3. A commit wakes one idle worker ---------------------------------------------------------

WAKE_DB = "wake"


def worker_passes(c):
    """{pid: state_change} of the workers: every pass of a worker runs its
    steps as "active" and ends "idle", so state_change moves at each pass."""
    return dict(c.query("SELECT pid, state_change FROM pg_stat_activity WHERE " + WORKER))


def all_idle(c, pids):
    rows = c.query("SELECT pid, state FROM pg_stat_activity WHERE " + WORKER)
    return sorted(r[0] for r in rows) == sorted(pids) and all(r[1] == "idle" for r in rows) \
        and c.worker_state() == "idle"


def test_a_commit_wakes_one_idle_worker_not_all():
    conf = ["reportstore.database = '%s'" % WAKE_DB, "reportstore.max_workers = 3"]
    with own_cluster("wake", conf, WAKE_DB) as c:
        create_report_database(c.connect, WAKE_DB, title="wake", drop=False).close()
        pids = wait_until(lambda: (lambda p: p if len(p) == 3 else None)(worker_passes(c)), 30,
                          "the launcher to start 3 workers")
        wait_until(lambda: all_idle(c, pids), 30, "the 3 workers to be idle")

        def woken_by(action):
            """The pids of the workers that made a pass because of action()."""
            before = worker_passes(c)
            action()
            # Nothing else wakes a worker (naptime 1h, no retry or deletion
            # due): a pass seen after the workers settle again came from action.
            wait_until(lambda: all_idle(c, pids), 30, "the workers to be idle again")
            time.sleep(1)
            wait_until(lambda: all_idle(c, pids), 30, "the workers to be idle again")
            after = worker_passes(c)
            assert sorted(after) == sorted(before), "a worker ended or started"
            return sorted(pid for pid in after if after[pid] != before[pid])

        # The observation sees every woken worker: reportstore.wake() wakes all.
        assert woken_by(lambda: c.query("SELECT reportstore.wake()")) == sorted(pids)

        # Each commit of a new report wakes exactly one of the three, which offloads it.
        woken = []
        for k in range(4):
            conn = c.connect()

            def commit_a_report():
                with conn.cursor() as cur:
                    cur.execute("INSERT INTO reports (report_id, assessment_id, report_type, title, format, "
                                "report_data, status, generated_at) VALUES (%s, "
                                "'a0000000-0000-4000-8000-000000000001', 'compliance', 'wake', 'json', "
                                "jsonb_build_object('k', %s::int), 'completed', now()) RETURNING report_id::text",
                                (str(uuid.uuid4()), k))
                    rid = cur.fetchone()[0]
                c.wait_offloaded([rid], 30, "the committed report to be offloaded")
            try:
                passes = woken_by(commit_a_report)
            finally:
                conn.close()
            assert len(passes) == 1, "commit %d woke %d workers: %s" % (k, len(passes), passes)
            woken += passes
        # A rolled-back insert wakes nobody.
        conn = c.connect(autocommit=False)
        try:
            def roll_back_a_report():
                with conn.cursor() as cur:
                    cur.execute("INSERT INTO reports (report_id, assessment_id, report_type, title, format, "
                                "report_data, status, generated_at) VALUES (gen_random_uuid(), "
                                "'a0000000-0000-4000-8000-000000000001', 'compliance', 'wake', 'json', '{}', "
                                "'completed', now())")
                conn.rollback()
            assert woken_by(roll_back_a_report) == []
        finally:
            conn.close()
        sys.stderr.write("4 commits woke workers %s (of %s)\n" % (woken, sorted(pids)))


# 4. A worker makes a pass as soon as it starts -------------------------------------------

START_DB = "startpass"


def lock_waiters(c):
    """The processes waiting for the lock of database START_DB (a process that is
    connecting is not in pg_stat_activity yet)."""
    return [r[0] for r in c.query(
        "SELECT l.pid FROM pg_locks l JOIN pg_database d ON d.oid = l.objid "
        "WHERE l.locktype = 'object' AND l.classid = 'pg_database'::regclass AND d.datname = %s "
        "AND NOT l.granted", (START_DB,), dbname="postgres")]


def process_title(pid):
    with contextlib.suppress(OSError), open("/proc/%d/cmdline" % pid, "rb") as f:
        return f.read().decode(errors="replace")
    return ""


def test_a_worker_that_waited_for_a_lock_while_starting_still_makes_its_first_pass():
    """PostgreSQL sets a new process's latch, but any wait during start-up (for
    a lock, or for a buffer another backend is reading in, as after a crash
    restart) resets it. A worker that waited on its latch before its first
    pass then slept for reportstore.naptime (1 h here), "starting", while
    reports were pending. The wait here: a renaming transaction holds the
    database's lock while the launcher starts the worker, and rolls back."""
    conf = ["reportstore.database = '%s'" % START_DB, "reportstore.max_workers = 1", "deadlock_timeout = '100ms'"]
    with own_cluster("start", conf, START_DB) as c:
        create_report_database(c.connect, START_DB, title="start", drop=False).close()
        wait_until(lambda: c.worker_state() == "idle", 30, "the worker to be idle")
        with system_settings(c, reportstore__worker_enabled="off"):
            wait_until(lambda: c.worker_state() == "waiting", 30, "the worker to see worker_enabled off")
            pending_at_start = insert_generated(c, START_DB, 1)
            admin = c.connect("postgres", autocommit=False)
            try:
                with admin.cursor() as cur:
                    # Stops the worker (a rename needs the database to itself) and
                    # holds the database's lock until the transaction ends.
                    cur.execute("ALTER DATABASE %s RENAME TO %s_renamed" % (START_DB, START_DB))
                    c.query("ALTER SYSTEM SET reportstore.worker_enabled = on", dbname="postgres")
                    c.query("SELECT pg_reload_conf()", dbname="postgres")
                    # The launcher starts a worker again a few seconds later,
                    # still for the old name (the rename is not committed); it
                    # waits for the lock while connecting.
                    wait_until(lambda: any("reportstore worker" in process_title(pid) for pid in lock_waiters(c)),
                               60, "a worker to wait for the database's lock while starting")
                    # Waiting past deadlock_timeout: the timer's wake-up, too, is
                    # spent inside the lock wait.
                    time.sleep(1)
                admin.rollback()
            finally:
                admin.close()
            c.wait_offloaded(list(pending_at_start), 30, "the report pending at the worker's start to be offloaded")
            c.wait_idle(30)
