"""Concurrent report_offload calls: the row lock serializes offloads of one
report (one upload, one path), and different reports offload in parallel.
"""
import threading
import time

from conftest import (connect, fetch_text, front_requests, jsonb_text, new_report, object_path, offload, report_json, report_state)


def test_same_report_two_sessions_one_upload(db, dbname, s3):
    data = report_json(20_000)
    rid = new_report(db, data)
    original = jsonb_text(db, data)

    first = connect(dbname, autocommit=False)
    second = connect(dbname)
    try:
        with second.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            second_pid = cur.fetchone()[0]
        # first: offload inside an open transaction, which keeps the row locked
        with first.cursor() as cur:
            cur.execute("SELECT report_offload(%s)", (rid,))
            first_path = cur.fetchone()[0]
        assert first_path == object_path(rid)

        result = {}

        def run():
            try:
                result["path"] = offload(second, rid)
            except Exception as e:  # noqa: BLE001
                result["error"] = e
        t = threading.Thread(target=run, daemon=True)
        t.start()
        # the second call really waits for the first transaction's row lock
        deadline = time.time() + 5
        waiting = False
        while time.time() < deadline and not waiting:
            with db.cursor() as cur:
                cur.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (second_pid,))
                row = cur.fetchone()
                waiting = row is not None and row[0] == "Lock"
            if not waiting:
                time.sleep(0.05)
        assert waiting, "the second report_offload did not wait for the row lock"
        assert t.is_alive() and not result
        first.commit()
        t.join(10)
        assert not t.is_alive(), "the second report_offload did not finish after the first committed"
        assert "error" not in result, repr(result.get("error"))
        assert result["path"] == first_path
    finally:
        first.close()
        second.close()

    assert report_state(db, rid) == (None, object_path(rid))
    assert fetch_text(db, rid) == original
    puts = front_requests("PUT", rid)
    assert len(puts) == 1, "expected exactly one PUT of the object, the front logged:\n" + "\n".join(puts)
    assert puts[0].endswith("-> 200")


def test_many_reports_in_parallel(db, dbname, s3):
    n_reports, n_threads = 40, 8
    reports = []
    for i in range(n_reports):
        data = report_json(2_000 + 500 * i, seed=i)
        reports.append((new_report(db, data), jsonb_text(db, data)))

    errors, paths = [], {}
    lock = threading.Lock()
    start = threading.Barrier(n_threads)

    def worker(k):
        conn = connect(dbname)
        try:
            start.wait(10)
            for rid, _ in reports[k::n_threads]:
                try:
                    p = offload(conn, rid)
                    with lock:
                        paths[rid] = p
                except Exception as e:  # noqa: BLE001
                    with lock:
                        errors.append((rid, e))
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "offload threads hung"
    assert not errors, errors[:5]
    assert len(paths) == n_reports
    for rid, original in reports:
        assert paths[rid] == object_path(rid)
        assert report_state(db, rid) == (None, object_path(rid))
        assert fetch_text(db, rid) == original
