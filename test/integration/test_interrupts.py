"""Query cancel, statement_timeout and backend termination while an S3 request
is stalled: the backend reacts within about a second, leaves the row as it was
and keeps working (no leaked or broken connection handle, no crash).
"""
import re
import threading
import time

import psycopg2
import psycopg2.errors
import pytest

from conftest import (connect, fetch_text, jsonb_text, key_regex, new_report, object_path, offload, read_server_log,
                      report_json, report_state, server_log_size)

CRASH = re.compile(r"terminated by signal|server process .* was terminated|was terminated by exception|"
                   r"terminating any other active server processes|all server processes terminated|PANIC")


def wait_until(predicate, timeout=5.0, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail("timed out waiting for %s" % what)


def wait_fault_hit(s3, action, before=0):
    """Waits until the front has applied `action` (the request is really stalled)."""
    wait_until(lambda: s3.stats()["faults_injected"].get(action, 0) > before, what="the %s fault to hit" % action)


def backend_pid(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        return cur.fetchone()[0]


class Running:
    """Runs fn in a thread; .result() gives (exception or None, value, elapsed seconds)."""

    def __init__(self, fn):
        self.exc = None
        self.value = None
        self.elapsed = None
        self.t0 = time.monotonic()

        def run():
            try:
                self.value = fn()
            except BaseException as e:  # noqa: BLE001
                self.exc = e
            self.elapsed = time.monotonic() - self.t0
        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def join(self, timeout):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the call did not return within %.0f s" % timeout
        return self.exc, self.value, self.elapsed


def test_statement_timeout_interrupts_stalled_upload(db, s3):
    data = report_json(5000)
    rid = new_report(db, data)
    original = jsonb_text(db, data)
    s3.faults({"method": "PUT", "path_regex": key_regex(rid), "action": "stall", "count": -1})
    with db.cursor() as cur:
        cur.execute("SET statement_timeout = '1s'")
        t0 = time.monotonic()
        with pytest.raises(psycopg2.errors.QueryCanceled) as info:
            cur.execute("SELECT report_offload(%s)", (rid,))
        elapsed = time.monotonic() - t0
    assert info.value.pgcode == "57014"
    assert elapsed < 5, "statement_timeout of 1 s took %.1f s to interrupt the upload" % elapsed
    assert s3.stats()["faults_injected"].get("stall", 0) >= 1, "the upload never reached the stalled PUT"
    assert report_state(db, rid) == (original, None)

    # same session, fault gone: the upload works (no leaked or wedged handle)
    s3.clear_faults()
    with db.cursor() as cur:
        cur.execute("SET statement_timeout = '20s'")
    assert offload(db, rid) == object_path(rid)
    assert report_state(db, rid) == (None, object_path(rid))
    assert fetch_text(db, rid) == original
    with db.cursor() as cur:
        cur.execute("RESET statement_timeout")


@pytest.mark.parametrize("action", ["stall", "delay"])
def test_cancel_backend_interrupts_stalled_fetch(db, dbname, s3, action):
    data = report_json(3000)
    rid = new_report(db, data)
    original = jsonb_text(db, data)
    assert offload(db, rid) == object_path(rid)

    victim = connect(dbname)
    try:
        pid = backend_pid(victim)
        before = s3.stats()["faults_injected"].get(action, 0)
        s3.faults({"method": "GET", "path_regex": key_regex(rid), "action": action, "seconds": 60, "count": -1})

        def fetch():
            with victim.cursor() as cur:
                cur.execute("SELECT report_fetch(%s)", (rid,))
                return cur.fetchone()
        call = Running(fetch)
        wait_fault_hit(s3, action, before)
        t0 = time.monotonic()
        with db.cursor() as cur:
            cur.execute("SELECT pg_cancel_backend(%s)", (pid,))
            assert cur.fetchone()[0] is True
        exc, value, _ = call.join(10)
        elapsed = time.monotonic() - t0
        assert isinstance(exc, psycopg2.errors.QueryCanceled), "fetch was not canceled: %r %r" % (exc, value)
        assert exc.pgcode == "57014"
        assert elapsed < 5, "pg_cancel_backend took %.1f s to interrupt the download" % elapsed

        # the canceled session still works and fetches the report once the fault is gone
        s3.clear_faults()
        assert fetch_text(victim, rid) == original
    finally:
        victim.close()


def test_terminate_backend_during_stalled_upload(db, dbname, s3):
    data = report_json(5000)
    rid = new_report(db, data)
    original = jsonb_text(db, data)
    log_start = server_log_size()

    victim = connect(dbname)
    pid = backend_pid(victim)
    before = s3.stats()["faults_injected"].get("stall", 0)
    s3.faults({"method": "PUT", "path_regex": key_regex(rid), "action": "stall", "count": -1})

    def upload():
        with victim.cursor() as cur:
            cur.execute("SELECT report_offload(%s)", (rid,))
            return cur.fetchone()
    call = Running(upload)
    try:
        wait_fault_hit(s3, "stall", before)
        t0 = time.monotonic()
        with db.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,))
            assert cur.fetchone()[0] is True, "the backend did not exit within 10 s of pg_terminate_backend"
        exc, value, _ = call.join(10)
        elapsed = time.monotonic() - t0
        assert exc is not None, "the upload returned %r after pg_terminate_backend" % (value,)
        assert isinstance(exc, psycopg2.OperationalError) or getattr(exc, "pgcode", None) == "57P01", repr(exc)
        assert elapsed < 5, "pg_terminate_backend took %.1f s" % elapsed
        assert victim.closed or victim.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_UNKNOWN
    finally:
        victim.close()

    # the server stays up: a new connection works, and nothing else was restarted
    fresh = connect(dbname)
    try:
        with fresh.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,))
            assert cur.fetchone()[0] == 0
        assert report_state(fresh, rid) == (original, None)
        s3.clear_faults()
        assert offload(fresh, rid) == object_path(rid)
        assert fetch_text(fresh, rid) == original
    finally:
        fresh.close()
    # db (opened before the termination) survived: no crash-restart of the cluster
    assert report_state(db, rid) == (None, object_path(rid))

    time.sleep(0.3)  # let the postmaster write its log lines
    log = read_server_log(log_start)
    assert "terminating connection due to administrator command" in log, "no termination logged:\n" + log[-2000:]
    crashes = [line for line in log.splitlines() if CRASH.search(line)]
    assert not crashes, "server log shows a crash:\n" + "\n".join(crashes)
