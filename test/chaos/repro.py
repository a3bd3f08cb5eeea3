#!/usr/bin/python3
"""Deterministic reproductions of the bugs the chaos test found.

    repro.py stale-snapshot-lost-update   # a committed UPDATE is silently replaced by the older content
    repro.py stale-snapshot-crash         # the backend segfaults (the whole cluster restarts)
    repro.py delete-race                  # a delete-queue DELETE removes a freshly offloaded object

Against a running cluster and S3 stack (PGHOST, PGPORT, and the S3_* variables of
test/harness/s3stack.sh, e.g. the ones test/run_all.sh uses); no worker needed. Each run
creates the database reportstore_repro. Prints what happened; exit status 1 when the bug shows.
"""
import json
import os
import sys
import threading
import time
import urllib.request
import uuid

import psycopg2

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DB = "reportstore_repro"
ASSESSMENT = "a0000000-0000-4000-8000-0000000000ee"


def connect(dbname=DB):
    c = psycopg2.connect(host=os.environ["PGHOST"], port=os.environ["PGPORT"], user="postgres", dbname=dbname)
    c.autocommit = True
    return c


def setup():
    admin = connect("postgres")
    with admin.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS %s WITH (FORCE)" % DB)
        cur.execute("CREATE DATABASE %s" % DB)
    admin.close()
    c = connect()
    with open(os.path.join(ROOT, "test", "fixtures", "seed_schema_before.sql")) as f, c.cursor() as cur:
        cur.execute(f.read())
        cur.execute("CREATE EXTENSION reportstore")
        cur.execute("INSERT INTO assessments VALUES (%s, 'repro')", (ASSESSMENT,))
    return c


def insert(cur, rid, data):
    cur.execute("INSERT INTO reports (report_id, assessment_id, report_type, title, format, report_data, status, "
                "generated_at) VALUES (%s, %s, 'compliance', 'repro', 'json', %s::jsonb, 'completed', now())",
                (rid, ASSESSMENT, data))


def control(method, path, body=None):
    req = urllib.request.Request(os.environ["S3_CONTROL"] + path, method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    return urllib.request.urlopen(req, timeout=10).read()


def show(rid):
    try:
        c = connect()
        with c.cursor() as cur:
            cur.execute("SELECT report_data::text, minio_path FROM reports WHERE report_id = %s", (rid,))
            print("row (report_data, minio_path):", cur.fetchone())
            try:
                cur.execute("SELECT report_fetch(%s)::text", (rid,))
                got = cur.fetchone()[0]
                print("report_fetch:", got)
                return got
            except psycopg2.Error as e:
                print("report_fetch: ERROR %s %s / %s" % (e.pgcode, e.diag.message_primary, e.diag.message_detail))
                return None
    except psycopg2.Error as e:
        print("cannot connect after the run:", str(e).strip().splitlines()[0])
        return None


def stale_snapshot(offload_first):
    """RunOffloadBatch locks candidates with SELECT ... FOR UPDATE SKIP LOCKED (a fresh
    snapshot, EvalPlanQual follows the newest row version) but reads report_data with
    SPI read_only = true, i.e. with the older active snapshot. An UPDATE committed in
    between: the old version's report_data is uploaded (or is NULL: segfault)."""
    a = setup()
    b = connect()
    rid = str(uuid.uuid4())
    with a.cursor() as cur:
        insert(cur, rid, '{"v": 1}')
        if offload_first:
            cur.execute("SELECT report_offload(%s)", (rid,))
    res = {}

    def runner():
        try:
            with b.cursor() as c:
                # the statement's snapshot is taken before the UPDATE below commits
                c.execute("SELECT pg_sleep(2), reportstore.run_once()")
                res["run_once"] = c.fetchone()[1]
        except psycopg2.Error as e:
            res["run_once"] = "ERROR %s %s" % (e.pgcode, str(e).strip().splitlines()[0])
    t = threading.Thread(target=runner)
    t.start()
    time.sleep(1)
    with a.cursor() as cur:
        cur.execute("UPDATE reports SET report_data = '{\"v\": 2}' WHERE report_id = %s", (rid,))
    print("UPDATE committed report_data = {\"v\": 2}")
    t.join()
    print("run_once():", res.get("run_once"))
    time.sleep(2)
    got = show(rid)
    if str(res.get("run_once", "")).startswith("ERROR None"):
        print("the backend running run_once() died (server log: \"terminated by signal 11: Segmentation fault\")")
        return False
    return got == '{"v": 2}'


def delete_race():
    """RunDeleteBatch decides "not in use" when it selects the queue row, then issues
    the S3 DELETE later without any lock against a concurrent offload of the same
    key: report_offload() in another session uploads and commits in between, and
    the DELETE removes the object the committed row now points to."""
    a = setup()
    b = connect()
    rid = str(uuid.uuid4())
    with a.cursor() as cur:
        cur.execute("SET reportstore.delete_delay = 0")
        insert(cur, rid, '{"v": 1}')
        cur.execute("SELECT report_offload(%s)", (rid,))
        cur.execute("SELECT reportstore.recall(%s, true)", (rid,))  # queues the deletion of the object
    # a slow DELETE (1.5 s) only widens the window; the chaos test also hit it without
    control("POST", "/faults", {"method": "DELETE", "path_regex": rid, "action": "delay", "seconds": 3, "count": 1})
    t = threading.Thread(target=lambda: a.cursor().execute("SELECT reportstore.run_once()"))
    t.start()
    time.sleep(1)
    with b.cursor() as cur:
        cur.execute("SELECT report_offload(%s)", (rid,))
        print("report_offload() in another session committed:", cur.fetchone()[0])
    t.join()
    control("DELETE", "/faults")
    return show(rid) == '{"v": 1}'


def main():
    what = sys.argv[1] if len(sys.argv) > 1 else ""
    if what == "stale-snapshot-lost-update":
        ok = stale_snapshot(False)
    elif what == "stale-snapshot-crash":
        ok = stale_snapshot(True)
    elif what == "delete-race":
        ok = delete_race()
    else:
        print(__doc__)
        sys.exit(2)
    print("OK: no bug" if ok else "BUG reproduced")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
