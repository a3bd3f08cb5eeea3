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
import threading
import time
import uuid

import psycopg2
import pytest

from conftest import (Cluster, create_report_database, env, key_regex, object_key, object_path, report_json,
                      s3_backend_client, scratch_dir, system_settings, wait_until)
from conftest import front_log_lines as all_front_log_lines
from conftest import insert_reports as _insert_reports
from conftest import front_requests as object_requests

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


@pytest.fixture(scope="module")
def cluster():
    directory = os.path.join(scratch_dir("worker-cluster."), "pg")
    c = None
    try:
        c = Cluster.start(directory, WORKER_CONF, dbname=DB)  # a free port
        create_report_database(c.connect, DB, title="worker", drop=False).close()
        yield c
    finally:
        (c or Cluster(directory, 0)).stop()  # server.log stays


@pytest.fixture(autouse=True)
def clean(cluster):
    """Each test starts with an empty reports table, a resumed and idle worker."""
    cluster.query("SELECT reportstore.resume()")
    cluster.query("DELETE FROM reports; DELETE FROM reportstore.offload_state; DELETE FROM reportstore.objects")
    wait_until(lambda: cluster.worker_state() in ("idle", "starting"), 30, "the worker to settle")
    yield


def insert_reports(conn, docs, fmt="json", ids=None):
    """Inserts the JSON documents in one statement (in conn's transaction);
    returns {report_id: report_data::text}."""
    return _insert_reports(conn, docs, fmt, ids, ASSESSMENT, "worker")


def add_reports(cluster, n, size=300, seed=0, ids=None):
    """Inserts n reports in one autocommit statement; returns {report_id: report_data::text}."""
    conn = cluster.connect()
    try:
        return insert_reports(conn, [report_json(size, seed + i) for i in range(n)], ids=ids)
    finally:
        conn.close()


def front_log_lines(rid, method="PUT", status=None, fmt="json"):
    """Lines of the S3 front's request log for this report's object."""
    return object_requests(method, rid, fmt, status)


def front_put_counts():
    """{report_id: number of successful PUTs of its object} from the front's request log."""
    pat = re.compile(r" PUT /%s/reports/([0-9a-f-]{36})/report\.\w+ -> 200$" % re.escape(env("S3_BUCKET")))
    counts = {}
    for line in all_front_log_lines(pat.pattern):
        rid = pat.search(line).group(1)
        counts[rid] = counts.get(rid, 0) + 1
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


def test_mixed_reports_all_offloaded_byte_for_byte(cluster):
    # 400 reports from 100 bytes to 1 MiB (test_workers.py migrates 600 with three workers)
    sizes = mixed_sizes(400)
    docs = [report_json(size, seed) for seed, size in enumerate(sizes)]
    originals = {}
    conn = cluster.connect()
    try:
        for start in range(0, len(docs), 100):  # four statements, each commits and wakes the worker
            originals.update(insert_reports(conn, docs[start:start + 100]))
    finally:
        conn.close()
    assert len(originals) == 400
    total = sum(len(t.encode()) for t in originals.values())
    assert total < 60 * 1024 * 1024
    assert min(len(t) for t in originals.values()) < 300 and max(len(t) for t in originals.values()) > 900_000

    cluster.wait_offloaded(originals, timeout=90, what="400 reports to be offloaded by the worker")
    wait_until(lambda: cluster.status()["reports_in_database"] == 0, 10, "status to show nothing in the database")
    status = cluster.status()
    assert status["reports_offloaded"] == 400
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

    # an INSERT inside a CTE (WITH ins AS (INSERT ... RETURNING) SELECT ...) wakes it too
    rid = str(uuid.uuid4())
    cluster.query("WITH ins AS (INSERT INTO reports (report_id, assessment_id, report_type, title, format, "
                  "report_data, status, generated_at) VALUES (%s, %s, 'compliance', 'cte', 'json', '{\"cte\": 1}', "
                  "'completed', now()) RETURNING report_id) SELECT count(*) FROM ins", (rid, ASSESSMENT))
    cluster.wait_offloaded([rid], timeout=10, what="a report inserted in a CTE to be offloaded (the commit must wake "
                           "the worker)")
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
    # the oracle is sensitive: a real wake-up does run a batch
    assert cluster.value("SELECT reportstore.wake()") is True
    wait_until(lambda: cluster.worker_info()["last_batch_at"] != last_batch, 10, "reportstore.wake() to run a batch")


def test_concurrent_report_offload_and_worker_upload_each_report_once(cluster):
    rng = random.Random(3)
    ids = [str(uuid.uuid4()) for _ in range(200)]
    docs = [report_json(rng.randint(200, 20_000), 3000 + i) for i in range(len(ids))]
    orders = [list(ids), list(reversed(ids)), rng.sample(ids, len(ids)), rng.sample(ids, len(ids))]
    go = threading.Event()
    results = [{} for _ in orders]

    def offload_all(order, out):
        try:
            conn = cluster.connect()
        except Exception as e:  # noqa: BLE001
            out["error"] = e
            return
        try:
            go.wait(60)
            with conn.cursor() as cur:
                for rid in order:
                    cur.execute("SELECT report_offload(%s)", (rid,))
                    out[rid] = cur.fetchone()[0]
        except Exception as e:  # noqa: BLE001
            out["error"] = e
        finally:
            conn.close()

    threads = [threading.Thread(target=offload_all, args=(order, out), daemon=True)
               for order, out in zip(orders, results)]
    for t in threads:
        t.start()
    conn = cluster.connect(autocommit=False)
    try:
        originals = insert_reports(conn, docs, ids=ids)
        conn.commit()  # wakes the worker
    finally:
        conn.close()
    go.set()
    for t in threads:
        t.join(120)
        assert not t.is_alive(), "a report_offload thread did not finish within 120 s (deadlock?)"
    for n, out in enumerate(results):
        assert "error" not in out, "thread %d failed: %r" % (n, out.get("error"))
        wrong = {rid: path for rid, path in out.items() if path != object_path(rid)}
        assert not wrong and len(out) == len(ids), "thread %d got unexpected paths: %r" % (n, list(wrong.items())[:5])

    cluster.wait_offloaded(ids, timeout=30)
    assert_objects_match(cluster, originals)
    counts = front_put_counts()
    not_once = {rid: counts.get(rid, 0) for rid in ids if counts.get(rid, 0) != 1}
    assert not not_once, "%d reports were not uploaded exactly once (successful PUTs): %r" % (
        len(not_once), list(not_once.items())[:10])
    assert cluster.value("SELECT count(*) FROM reportstore.objects WHERE report_id = ANY(%s::uuid[])", (ids,)) == 200


def test_transient_failures_are_retried(cluster, s3):
    # retries are found by polling (README: naptime "how often the worker looks for
    # work when nobody wakes it (retries, offload_delay)"), hence the short naptime
    before = cluster.stats()
    injected = s3.stats()["faults_injected"].get("status", 0)
    with system_settings(cluster, reportstore__naptime="1s"):
        s3.faults({"method": "PUT", "action": "status", "status": 503, "count": 10})
        originals = add_reports(cluster, 20, 1500, seed=4000)
        cluster.wait_offloaded(originals, timeout=40, what="reports to be offloaded despite 10 injected 503s")
    assert s3.stats()["faults_injected"].get("status", 0) - injected == 10
    assert cluster.value("SELECT count(*) FROM reportstore.offload_state") == 0
    after = cluster.stats()
    assert after["upload_failures_transient"] - before["upload_failures_transient"] == 10
    assert after["retries"] > before["retries"]
    assert after["upload_failures_systemic"] == before["upload_failures_systemic"]
    assert_objects_match(cluster, originals)


def test_persistently_failing_report_does_not_block_others(cluster, s3):
    bad = str(uuid.uuid4())
    ids = [bad] + [str(uuid.uuid4()) for _ in range(10)]
    with system_settings(cluster, reportstore__naptime="1s"):
        s3.faults({"method": "PUT", "path_regex": key_regex(bad), "action": "status", "status": 503, "count": -1})
        originals = add_reports(cluster, len(ids), 1200, seed=5000, ids=ids)
        cluster.wait_offloaded(ids[1:], timeout=20, what="the other reports to be offloaded")

        def failure():
            rows = cluster.query("SELECT attempts, last_error_kind, last_error, last_attempt_at, next_attempt_at "
                                 "FROM reportstore.offload_state WHERE report_id = %s", (bad,))
            return rows[0] if rows else None
        first = wait_until(failure, 10, "a failure row for the failing report")
        assert first[0] >= 1
        assert first[1] == "transient"
        assert "SlowDown" in first[2] and bad in first[2], first[2]
        assert first[4] > first[3]
        later = wait_until(lambda: (lambda f: f if f and f[0] >= first[0] + 2 else None)(failure()), 30,
                           "attempts of the failing report to increase")
        assert later[3] > first[3]
        assert cluster.pending([bad]) == 1
        assert cluster.value("SELECT count(*) FROM reportstore.offload_state") == 1
        assert cluster.status()["reports_failing"] == 1

        s3.clear_faults()
        cluster.wait_offloaded([bad], timeout=20, what="the failing report to be offloaded after the fault is gone")
    assert cluster.value("SELECT count(*) FROM reportstore.offload_state") == 0
    assert_objects_match(cluster, originals)


def count_lines(text, *needles):
    return sum(1 for line in text.splitlines() if all(n in line for n in needles))


def test_wrong_credentials_pause_worker_then_resume(cluster, s3):
    before = cluster.stats()
    log_start = cluster.log_size()
    with system_settings(cluster, reportstore__access_key_id="rstest-decoy-key",
                         reportstore__secret_access_key="wrong"):
        originals = add_reports(cluster, 10, 2000, seed=6000)
        wait_until(lambda: cluster.worker_state() == "backing off", 15, "the worker to back off")
        first_rejects = len(front_log_lines(next(iter(originals)), status=403))
        time.sleep(6)  # several backoff rounds (1 s, 2 s, 2 s ...)
        info = cluster.worker_info()
        assert info["state"] == "backing off", info
        assert info["last_error"], info
        assert cluster.status()["worker_state"] == "backing off"
        assert cluster.pending(originals) == 10, "reports were offloaded with wrong credentials"
        # a systemic error is nobody's fault: no attempt is charged to the reports
        assert cluster.value("SELECT count(*) FROM reportstore.offload_state") == 0
        # the worker did retry meanwhile
        rejects = len(front_log_lines(next(iter(originals)), status=403))
        assert rejects >= first_rejects + 2, "only %d rejected PUTs for one report: the worker did not retry" % rejects
        after = cluster.stats()
        assert after["upload_failures_systemic"] > before["upload_failures_systemic"]
        log = cluster.read_log(log_start)
        warnings = [line for line in log.splitlines() if "paused after a systemic error" in line]
        assert len(warnings) == 1 and "WARNING" in warnings[0], \
            "expected one WARNING for the episode, the log has:\n" + "\n".join(warnings)
    cluster.wait_offloaded(originals, timeout=30, what="the reports to be offloaded once credentials are fixed")
    wait_until(lambda: count_lines(cluster.read_log(log_start), "LOG:", "resumed"), 10, "a 'resumed' LOG line")
    log = cluster.read_log(log_start)
    assert count_lines(log, "paused after a systemic error") == 1, log[-3000:]
    assert count_lines(log, "resumed") == 1, log[-3000:]
    # the front recorded the rejections as deliberate (decoy key), not as signing bugs
    unexpected = [f for f in s3.stats()["signature_failures"] if any(rid in f.get("path", "") for rid in originals)]
    assert not unexpected, unexpected
    assert cluster.value("SELECT count(*) FROM reportstore.offload_state") == 0
    assert_objects_match(cluster, originals)


def gone(cluster, pid):
    """The process has exited and no longer shows in pg_stat_activity."""
    if process_alive(pid):
        return False
    return cluster.value("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)) == 0


def new_worker_pid(cluster, old_pid):
    """The pid of a worker other than old_pid, or None (also while the server restarts)."""
    try:
        pid = worker_pid(cluster)
    except psycopg2.OperationalError:
        return None
    return pid if pid and pid != old_pid else None


def test_worker_sigterm_and_sigkill_mid_batch(cluster, s3):
    delays = s3.stats()["faults_injected"].get("delay", 0)
    s3.faults({"method": "PUT", "action": "delay", "seconds": 3, "count": -1})
    originals = add_reports(cluster, 50, 3000, seed=7000)
    wait_until(lambda: cluster.worker_state() == "running"
               and s3.stats()["faults_injected"].get("delay", 0) > delays, 15, "the worker to be mid-batch")
    pid = worker_pid(cluster)
    log_start = cluster.log_size()

    # SIGTERM (pg_terminate_backend): the worker stops within about a second, its batch is rolled back
    t0 = time.monotonic()
    assert cluster.value("SELECT pg_terminate_backend(%s)", (pid,)) is True
    wait_until(lambda: gone(cluster, pid), 10, "the worker to exit after SIGTERM", interval=0.05)
    elapsed = time.monotonic() - t0
    assert elapsed < 5, "the worker took %.1f s to exit after SIGTERM" % elapsed
    rows = assert_no_half_done(cluster)
    assert len(rows) == 50
    assert cluster.pending(originals) > 0, "the batch finished before SIGTERM: nothing was interrupted"
    assert cluster.value("SELECT count(*) FROM reportstore.offload_state") == 0

    # the postmaster restarts it (bgw_restart_time 5 s); it picks up the pending reports by itself
    pid2 = wait_until(lambda: new_worker_pid(cluster, pid), 20, "the postmaster to restart the worker")
    wait_until(lambda: cluster.worker_state() == "running", 15, "the restarted worker to run a batch")
    faults_now = s3.stats()["faults_injected"].get("delay", 0)
    wait_until(lambda: s3.stats()["faults_injected"].get("delay", 0) > faults_now, 10, "a slow upload in flight")

    # SIGKILL mid-batch: the postmaster reinitializes the whole cluster
    os.kill(pid2, signal.SIGKILL)
    s3.clear_faults()
    wait_until(lambda: new_worker_pid(cluster, pid2), 60, "the cluster and the worker to come back after SIGKILL")
    assert_no_half_done(cluster)
    cluster.wait_offloaded(originals, timeout=60, what="every report to be offloaded after the restarts")
    assert_objects_match(cluster, originals)
    assert cluster.value("SELECT count(*) FROM reportstore.offload_state") == 0

    log = cluster.read_log(log_start)
    assert "terminating background worker \"reportstore worker\" due to administrator command" in log, log[-3000:]
    assert re.search(r"reportstore worker.*\(PID %d\) was terminated by signal 9" % pid2, log), log[-3000:]
    assert "all server processes terminated; reinitializing" in log, log[-3000:]


def test_worker_enabled_off_and_on_by_reload(cluster):
    with system_settings(cluster, reportstore__worker_enabled="off"):
        wait_until(lambda: cluster.worker_state() == "waiting", 10, "the disabled worker to report 'waiting'")
        assert "worker_enabled" in cluster.worker_info()["detail"]
        originals = add_reports(cluster, 3, 700, seed=8000)
        time.sleep(3)
        assert cluster.pending(originals) == 3, "the disabled worker offloaded reports"
        assert cluster.worker_state() == "waiting"
    # RESET (on, from postgresql.conf) + reload: the worker wakes and offloads
    cluster.wait_offloaded(originals, timeout=10, what="the re-enabled worker to offload")
    assert_objects_match(cluster, originals)


def test_pause_resume_and_wake(cluster):
    cluster.query("SELECT reportstore.pause()")
    try:
        wait_until(lambda: cluster.worker_state() == "paused", 10, "the worker to be paused")
        assert cluster.worker_info()["paused"] is True
        originals = add_reports(cluster, 3, 700, seed=8100)
        time.sleep(3)
        assert cluster.pending(originals) == 3, "the paused worker offloaded reports"
        assert cluster.worker_state() == "paused"
    finally:
        cluster.query("SELECT reportstore.resume()")
    cluster.wait_offloaded(originals, timeout=10, what="the resumed worker to offload")
    assert cluster.worker_info()["paused"] is False

    # wake(): a report becomes due without any write to reports (its retry time
    # passes); with naptime 1h only reportstore.wake() gets it offloaded now
    cluster.query("SELECT reportstore.pause()")
    try:
        wait_until(lambda: cluster.worker_state() == "paused", 10, "the worker to be paused")
        deferred = add_reports(cluster, 1, 700, seed=8200)
        rid = next(iter(deferred))
        cluster.query("INSERT INTO reportstore.offload_state (report_id, attempts, last_error_kind, last_error, "
                      "last_attempt_at, next_attempt_at) VALUES (%s, 1, 'transient', 'test', now(), "
                      "now() + interval '1 hour')", (rid,))
    finally:
        cluster.query("SELECT reportstore.resume()")
    wait_until(lambda: cluster.worker_state() == "idle", 10, "the resumed worker to find nothing due")
    cluster.query("UPDATE reportstore.offload_state SET next_attempt_at = now() WHERE report_id = %s", (rid,))
    time.sleep(3)
    assert cluster.pending([rid]) == 1, "the worker offloaded the report without being woken (naptime is 1h)"
    assert cluster.value("SELECT reportstore.wake()") is True
    cluster.wait_offloaded([rid], timeout=10, what="reportstore.wake() to make the worker offload the due report")
    assert cluster.value("SELECT count(*) FROM reportstore.offload_state") == 0
    assert_objects_match(cluster, deferred)


def test_status_matches_reality(cluster, s3):
    offloaded = add_reports(cluster, 5, 3000, seed=9000)
    cluster.wait_offloaded(offloaded, timeout=15)
    cluster.wait_idle()

    failing_ids = [str(uuid.uuid4()) for _ in range(3)]
    s3.faults({"method": "PUT", "path_regex": "|".join(key_regex(rid) for rid in failing_ids), "action": "status",
               "status": 500, "count": -1})
    failing = add_reports(cluster, 3, 2500, seed=9100, ids=failing_ids)
    wait_until(lambda: cluster.value("SELECT count(*) FROM reportstore.offload_state") == 3, 15,
               "three failing reports in reportstore.offload_state")

    cluster.query("SELECT reportstore.pause()")
    try:
        wait_until(lambda: cluster.worker_state() == "paused", 10, "the worker to be paused")
        in_database = add_reports(cluster, 4, 5000, seed=9200)
        time.sleep(0.5)
        status = cluster.status()
        direct = cluster.query(
            "SELECT count(*) FILTER (WHERE minio_path IS NOT NULL), "
            "count(*) FILTER (WHERE minio_path IS NULL AND report_data IS NOT NULL), "
            "coalesce(sum(pg_column_size(report_data)) FILTER (WHERE minio_path IS NULL), 0), "
            "(SELECT count(*) FROM reportstore.offload_state) FROM reports")[0]
        worker = cluster.worker_info()
        activity = cluster.query("SELECT pid, datname FROM pg_stat_activity WHERE backend_type = 'reportstore worker'")
        # While paused: after resume() the worker offloads them at once.
        pending_while_paused = (cluster.pending(in_database), cluster.pending(failing))
    finally:
        cluster.query("SELECT reportstore.resume()")

    assert direct[0] == 5 and direct[1] == 7 and direct[3] == 3, direct
    assert status["reports_offloaded"] == 5
    assert status["reports_in_database"] == 7
    assert status["bytes_in_database"] == direct[2] and direct[2] > 0
    assert status["bytes_offloaded"] == sum(len(t.encode("utf-8")) for t in offloaded.values())
    assert status["reports_failing"] == 3
    assert float(status["percent_migrated"]) == round(100.0 * 5 / 12, 1)
    assert status["worker_state"] in STATES and status["worker_state"] == "paused"
    assert worker["state"] == "paused"
    assert len(activity) == worker["workers"] >= 1 and (worker["pid"], DB) in activity, (activity, worker)
    assert status["workers"] == worker["workers"]
    assert pending_while_paused == (4, 3), pending_while_paused


def test_offload_delay(cluster):
    with system_settings(cluster, reportstore__offload_delay="3s", reportstore__naptime="1s"):
        t0 = time.monotonic()
        originals = add_reports(cluster, 1, 900, seed=9500)
        rid = next(iter(originals))
        changed = cluster.value("SELECT updated_at FROM reports WHERE report_id = %s", (rid,))
        while time.monotonic() - t0 < 2.0:
            assert cluster.pending([rid]) == 1, "offloaded %.1f s after the insert, before offload_delay" % (
                time.monotonic() - t0)
            time.sleep(0.1)
        cluster.wait_offloaded([rid], timeout=15, what="the report to be offloaded after offload_delay")
    uploaded = cluster.value("SELECT uploaded_at FROM reportstore.objects WHERE report_id = %s", (rid,))
    assert (uploaded - changed).total_seconds() >= 3.0, "uploaded %s, only %s after updated_at %s" % (
        uploaded, uploaded - changed, changed)
    assert_objects_match(cluster, originals)


def test_max_rate_throttles_the_worker(cluster):
    # 8 reports of ~50 KB in batches of 2 at 100 kB/s, shared by all workers:
    # each batch of ~100 KB pushes a shared clock ~1 s forward, so only the
    # first batch of each worker goes through at once and the last report
    # cannot be offloaded before (8 - 2 * workers) * 0.5 s (a lower bound the
    # throttle guarantees, not a timing race).
    workers = cluster.worker_info()["workers"]
    bound = (8 - 2 * workers) * 50000 / 102400.0
    assert bound >= 1.5, "this test needs at most 2 workers"
    with system_settings(cluster, reportstore__max_rate="100kB", reportstore__batch_size="2"):
        t0 = time.monotonic()
        originals = add_reports(cluster, 8, 50000, seed=9700)
        cluster.wait_offloaded(list(originals), timeout=60, what="the throttled reports to be offloaded")
        elapsed = time.monotonic() - t0
    assert elapsed >= bound - 0.2, "8 reports of 50 KB at 100 kB/s with %d workers were all offloaded after only " \
        "%.1f s" % (workers, elapsed)
    assert_objects_match(cluster, originals)
