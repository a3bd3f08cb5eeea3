#!/usr/bin/python3
"""Chaos test of reportstore: a concurrent workload against a cluster whose
worker migrates while S3 faults, process kills, PostgreSQL crashes and S3
outages are injected at random. Run it through test/chaos/run.sh.

    chaos.py WORKDIR [--ci] [--duration SECONDS] [--seed N]

The test keeps its own record of every report: the history of contents each
report may have (a write counts as done only once its commit is confirmed; a
write whose outcome is unknown because the connection died is "in doubt", and
either the old or the new content is accepted). During the run, report_fetch()
must return one of the contents acceptable at that moment or raise an error.
At the end, with faults cleared and the worker done, every surviving report
must fetch back exactly, reportstore.verify(true) must find nothing, and the
objects of deleted reports must be gone from the bucket after delete_delay.

The cluster runs two workers (reportstore.max_workers = 2); the test samples
how many ran at once. Phases:
  1. (full run only) one report whose text form is over 1 GB is inserted
     first; it must stay in report_data, unchanged, marked too_large, while
     every other report is offloaded.
  2. chaos: random faults, kills and restarts for the duration.
  3. silent endpoint: every request to the S3 front stalls for a few seconds
     while the workload goes on. No report inserted then may be charged an
     attempt (a batch none of whose uploads got an answer charges nobody);
     afterwards the workers must offload every pending report by themselves.
  4. final checks with every fault cleared.

Exit status: 0 when every check passed.
"""
import argparse
import collections
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
import uuid

import psycopg2
import psycopg2.extensions

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from rstest import (PGCLUSTER, S3STACK, S3Control, create_report_database, free_port, pg_bindir,  # noqa: E402
                    read_env_file, s3_backend_client)
DB = "chaos"
ASSESSMENT = "a0000000-0000-4000-8000-00000000c4a0"
ABSENT = None  # a history entry meaning "no such report"

WORKER_CONF = [
    "reportstore.database = '%s'" % DB,
    "reportstore.worker_enabled = on",
    "reportstore.naptime = '500ms'",
    "reportstore.retry_base_delay = '100ms'",
    "reportstore.retry_max_delay = '1s'",
    "reportstore.systemic_backoff_max = '1s'",
    "reportstore.request_timeout = '2s'",
    "reportstore.connect_timeout = '1s'",
    "reportstore.timeout_per_mib = '1s'",
    "reportstore.delete_delay = '2s'",
    "reportstore.batch_size = 16",
    "reportstore.max_concurrency = 4",
    "reportstore.max_workers = 2",
    "log_min_messages = warning",
    "restart_after_crash = on",
]

# fault kind -> rule (path_regex and count added below); applied for a few seconds each
FAULTS = {
    "status500": {"method": ["PUT", "GET", "DELETE", "HEAD"], "action": "status", "status": 500,
                  "code": "InternalError", "probability": 0.4},
    "status503": {"method": ["PUT", "GET", "DELETE", "HEAD"], "action": "status", "status": 503, "code": "SlowDown",
                  "retry_after": 1, "probability": 0.4},
    "status403": {"method": ["PUT", "GET", "DELETE"], "action": "status", "status": 403, "code": "AccessDenied",
                  "probability": 0.5},
    "reset": {"method": "PUT", "action": "reset", "probability": 0.4},
    "stall": {"method": ["PUT", "GET", "DELETE"], "action": "stall", "seconds": 60, "probability": 0.25},
    "delay": {"method": ["PUT", "DELETE"], "action": "delay", "seconds": 1.5, "probability": 0.5},
    "truncate": {"method": "GET", "action": "truncate", "fraction": 0.5, "probability": 0.5},
    "wrong_etag": {"method": "PUT", "action": "wrong_etag", "probability": 0.5},
    "corrupt_body": {"method": "GET", "action": "corrupt_body", "bytes": 2, "probability": 0.5},
}
ACTION_OF = {k: v["action"] for k, v in FAULTS.items()}

# the silent-endpoint phase: every request to the front stalls (past request_timeout)
SILENT_RULE = {"method": ["PUT", "GET", "DELETE", "HEAD", "POST"], "action": "stall", "seconds": 60,
               "probability": 1, "count": -1}
# the oversized report of the full run: 180 million control characters, 180 MB as
# jsonb, over 1 GB as text (\u0001 each), as in test_robustness.py
HUGE_SQL = "jsonb_build_object('s', repeat(chr(1), 180000000))"


def now():
    return time.monotonic()


def log(msg):
    sys.stdout.write("[%7.1f] %s\n" % (now() - T0, msg))
    sys.stdout.flush()


T0 = now()
DEADLINE = None  # monotonic time by which everything must be over (--ci)


def remaining():
    return float("inf") if DEADLINE is None else DEADLINE - now()


# --------------------------------------------------------------------- JSON

def canonical(obj):
    """The text PostgreSQL prints for obj::jsonb (keys by length then bytes)."""
    if isinstance(obj, dict):
        items = sorted(obj.items(), key=lambda kv: (len(kv[0].encode()), kv[0].encode()))
        return "{" + ", ".join("%s: %s" % (canonical(k), canonical(v)) for k, v in items) + "}"
    if isinstance(obj, list):
        return "[" + ", ".join(canonical(v) for v in obj) + "]"
    if isinstance(obj, str):
        return json.dumps(obj, ensure_ascii=False)
    if obj is True:
        return "true"
    if obj is False:
        return "false"
    if obj is None:
        return "null"
    if isinstance(obj, int):
        return str(obj)
    raise TypeError(type(obj))


WORDS = ["alpha", "beta", "gamma", "délta", "epsilon", "zêta", "\"quoted\"", "back\\slash", "日本語", "risk",
         "finding", "control", "evidence", "ok", "x"]


def make_content(rng, rid, version, big=False):
    if big:
        size = rng.choice([60_000, 150_000, 400_000])
    else:
        size = int(rng.expovariate(1 / 2500)) + 100
    findings = []
    total = 0
    i = 0
    while total < size:
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 30)))
        findings.append({"i": i, "score": rng.randint(0, 1000), "text": text, "ok": rng.random() < 0.5})
        total += len(text) + 40
        i += 1
    doc = {"report": rid, "version": version, "findings": findings, "meta": {"nonce": uuid.uuid4().hex}}
    return canonical(doc)


# --------------------------------------------------------------------- record

def version_of(content):
    if content is ABSENT:
        return "absent"
    m = re.search(r'"version": (\d+)', content)
    return int(m.group(1)) if m else "?"


class Report:
    __slots__ = ("id", "owner", "history", "committed", "lock")

    def __init__(self, rid, owner):
        self.id = rid
        self.owner = owner
        # entries: [content or ABSENT, state] with state in committed / doubt / failed
        self.history = [[ABSENT, "committed"]]
        self.committed = 0  # index of the last confirmed entry
        self.lock = threading.Lock()

    def begin(self, content):
        with self.lock:
            self.history.append([content, "doubt"])
            return len(self.history) - 1

    def resolve(self, idx, state):
        with self.lock:
            self.history[idx][1] = state
            if state == "committed" and idx > self.committed:
                self.committed = idx

    def commit_absent(self):
        with self.lock:
            self.history.append([ABSENT, "committed"])
            self.committed = len(self.history) - 1

    def window_start(self):
        with self.lock:
            return self.committed

    def acceptable(self, start):
        """Contents the report may have had at some moment since window_start() returned start."""
        with self.lock:
            return [c for c, st in self.history[start:] if st != "failed"]

    def current_acceptable(self):
        return self.acceptable(self.window_start())

    def describe(self):
        with self.lock:
            return [(version_of(c), st) + (("<- last confirmed",) if i == self.committed else ())
                    for i, (c, st) in enumerate(self.history)]

    def surely_live(self):
        with self.lock:
            return self.history[self.committed][0] is not ABSENT and all(
                c is not ABSENT for c, st in self.history[self.committed:] if st != "failed")


class Record:
    def __init__(self):
        self.lock = threading.Lock()
        self.reports = {}
        self.rolled_back = set()
        self.deleted = set()  # ids with a DELETE committed or in doubt at some point
        self.silent = threading.Event()  # the silent-endpoint phase is on
        self.silent_ids = set()  # ids first inserted while it was on

    def add(self, r):
        with self.lock:
            self.reports[r.id] = r

    def all(self):
        with self.lock:
            return list(self.reports.values())

    def owned(self, owner):
        with self.lock:
            return [r for r in self.reports.values() if r.owner == owner]


# --------------------------------------------------------------------- the environment

class Env:
    def __init__(self, work, s3_port, pg_port, backend):
        self.work = work
        self.s3_dir = os.path.join(work, "s3")
        self.pg_dir = os.path.join(work, "pg")
        self.s3_port = s3_port
        self.pg_port = pg_port
        self.backend = backend
        self.s3_env = {}
        self.front_stats = []  # stats of each incarnation of the front, and before each reset
        self.front_stats_errors = []  # times they could not be read
        self.s3_up = False
        self.pg_up = False
        self.lock = threading.Lock()

    # ---- S3
    def s3_start(self):
        # a bucket of its own: the RGW may be shared with other stages (test/run_all.sh)
        env = dict(os.environ, S3_BACKEND=self.backend, S3_STACK_BUCKET="chaos")
        env.pop("S3_SESSION_TOKEN", None)
        for attempt in range(5):
            p = subprocess.run(["bash", S3STACK, "start", self.s3_dir] + ([str(self.s3_port)] if self.s3_port else []),
                               capture_output=True, text=True, env=env, timeout=120)
            if p.returncode == 0:
                break
            log("s3stack start failed (attempt %d): %s" % (attempt + 1, (p.stdout + p.stderr).strip()[-500:]))
            subprocess.run(["bash", S3STACK, "stop", self.s3_dir], capture_output=True, timeout=60)
            time.sleep(1)
        else:
            raise RuntimeError("cannot start the S3 stack")
        self.s3_env = read_env_file(os.path.join(self.s3_dir, "s3.env"))
        os.environ.update(self.s3_env)
        self.s3_port = int(self.s3_env["S3_ENDPOINT"].rsplit(":", 1)[1])  # the same port after a restart
        self.s3_up = True

    def s3_restart_backend(self):
        """Ceph RGW: stop and start radosgw alone (the front and the OSD stay, objects kept)."""
        self.s3_up = False
        p = subprocess.run(["bash", S3STACK, "restart-backend", self.s3_dir], capture_output=True, text=True,
                           timeout=120)
        if p.returncode != 0:
            raise RuntimeError("radosgw restart failed: %s" % (p.stdout + p.stderr).strip()[-500:])
        self.s3_up = True

    def s3_stop(self):
        self.collect_front_stats()
        self.s3_up = False
        subprocess.run(["bash", S3STACK, "stop", self.s3_dir], capture_output=True, timeout=120)

    def control(self, method, path, body=None, timeout=10):
        return S3Control(self.s3_env["S3_CONTROL"]).call(method, path, body, timeout)

    def collect_front_stats(self):
        """Keeps the front's stats (signature failures, faults) before it stops or is reset.
        A failure to read them is recorded: the signature check then fails, since
        the requests of that period were not checked."""
        try:
            st = self.control("GET", "/stats")
        except Exception as e:  # noqa: BLE001
            log("could not read the front's stats: %s" % e)
            with self.lock:
                self.front_stats_errors.append(str(e))
            return
        with self.lock:
            self.front_stats.append(st)

    # ---- PostgreSQL
    def pg_env(self):
        return dict(os.environ, **self.s3_env)

    def pg_start_new(self):
        p = subprocess.run([PGCLUSTER, "start", self.pg_dir, str(self.pg_port)] + WORKER_CONF, capture_output=True,
                           text=True, env=self.pg_env(), timeout=180)
        if p.returncode != 0:
            raise RuntimeError("pgcluster start failed: %s%s" % (p.stdout, p.stderr))
        self.pg_up = True

    def pg_launch(self):
        for attempt in range(5):
            p = subprocess.run([PGCLUSTER, "launch", self.pg_dir], capture_output=True, text=True,
                               env=self.pg_env(), timeout=180)
            if p.returncode == 0:
                self.pg_up = True
                return
            log("pgcluster launch failed (attempt %d): %s" % (attempt + 1, (p.stdout + p.stderr).strip()[-300:]))
            time.sleep(1)
        raise RuntimeError("cannot start PostgreSQL again")

    def pg_immediate_stop(self):
        self.pg_up = False
        subprocess.run(["runuser", "-u", "postgres", "--", os.path.join(pg_bindir(), "pg_ctl"), "-D",
                        os.path.join(self.pg_dir, "data"), "-m", "immediate", "-w", "-t", "60", "stop"],
                       capture_output=True, timeout=120)

    def pg_stop(self):
        subprocess.run([PGCLUSTER, "stop", self.pg_dir], capture_output=True, timeout=120)

    def connect(self, dbname=DB, app="chaos", autocommit=True, timeout=5):
        # no statement may outlive the time budget
        limit = "0" if DEADLINE is None else str(int(max(1.0, remaining() - 2) * 1000))
        conn = psycopg2.connect(host=self.pg_dir, port=self.pg_port, user="postgres", dbname=dbname,
                                application_name=app, connect_timeout=timeout,
                                options="-c statement_timeout=%s" % limit)
        conn.autocommit = autocommit
        return conn

    def query(self, sql, args=None, dbname=DB, retries=0):
        for attempt in range(retries + 1):
            try:
                conn = self.connect(dbname)
                try:
                    with conn.cursor() as cur:
                        cur.execute(sql, args)
                        return cur.fetchall() if cur.description else None
                finally:
                    conn.close()
            except psycopg2.OperationalError:
                if attempt == retries:
                    raise
                time.sleep(0.5)


# --------------------------------------------------------------------- workload

class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.c = collections.Counter()
        self.anomalies = []  # wrong data seen during the run

    def inc(self, key, n=1):
        with self.lock:
            self.c[key] += n

    def anomaly(self, msg):
        with self.lock:
            self.anomalies.append(msg)
        log("ANOMALY: " + msg)


def in_doubt(e):
    """True when a failed statement may nevertheless have committed."""
    code = getattr(e, "pgcode", None)
    return code is None or code.startswith("57") or code.startswith("08")


class Worker(threading.Thread):
    WEIGHTS = [("insert", 26), ("update", 18), ("update_offload", 3), ("delete", 7), ("reinsert", 2),
               ("fetch", 28), ("offload", 10), ("recall", 4), ("run_once", 1), ("insert_rollback", 1)]

    def __init__(self, idx, env, record, stats, stop, seed, pace):
        super().__init__(name="chaos-w%d" % idx, daemon=True)
        self.pace = pace
        self.idx = idx
        self.env = env
        self.record = record
        self.stats = stats
        self.stop = stop
        self.rng = random.Random(seed)
        self.conn = None
        self.error = None
        ops, weights = zip(*self.WEIGHTS)
        self.ops, self.weights = ops, weights

    # ---- connection
    def cursor(self):
        while self.conn is None:
            if self.stop.is_set():
                raise StopIteration
            try:
                self.conn = self.env.connect(app=self.name, timeout=3)
                with self.conn.cursor() as cur:
                    cur.execute("SET statement_timeout = '20s'")
            except psycopg2.Error:
                self.conn = None
                self.stats.inc("reconnect_wait")
                time.sleep(0.3)
        return self.conn.cursor()

    def drop(self):
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:  # noqa: BLE001
                pass
        self.conn = None

    def failed(self, e):
        """Bookkeeping after a psycopg2 error; returns True if the outcome is unknown."""
        code = getattr(e, "pgcode", None)
        self.stats.inc("error %s" % (code or type(e).__name__))
        doubt = in_doubt(e)
        if self.conn is not None and (self.conn.closed or isinstance(e, (psycopg2.OperationalError,
                                                                          psycopg2.InterfaceError))):
            self.drop()
        elif self.conn is not None and \
                self.conn.get_transaction_status() != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
            try:
                with self.conn.cursor() as cur:
                    cur.execute("ROLLBACK")
            except psycopg2.Error:
                self.drop()
        return doubt

    # ---- operations
    def pick(self, own=True, live=True):
        pool = self.record.owned(self.idx) if own else self.record.all()
        if live:
            pool = [r for r in pool if r.surely_live()]
        return self.rng.choice(pool) if pool else None

    def op_insert(self, rid=None, rep=None):
        reinsert = rep is not None
        if rep is None:
            rid = str(uuid.uuid4())
            rep = Report(rid, self.idx)
            self.record.add(rep)
        content = make_content(self.rng, rid, len(rep.history), big=self.rng.random() < 0.02)
        idx = rep.begin(content)
        fmt = "json"
        if not reinsert and self.record.silent.is_set():
            with self.record.lock:
                self.record.silent_ids.add(rid)
        try:
            with self.cursor() as cur:
                cur.execute("INSERT INTO reports (report_id, assessment_id, report_type, title, format, report_data, "
                            "status, generated_at) VALUES (%s, %s, 'compliance', 'chaos', %s, %s::jsonb, "
                            "'completed', now()) RETURNING report_data::text", (rid, ASSESSMENT, fmt, content))
                got = cur.fetchone()[0]
            rep.resolve(idx, "committed")
            self.stats.inc("reinserts" if reinsert else "inserts")
            if got != content:
                self.stats.anomaly("test bug: canonical text differs for %s" % rid)
        except psycopg2.Error as e:
            rep.resolve(idx, "doubt" if self.failed(e) else "failed")

    def op_insert_rollback(self):
        rid = str(uuid.uuid4())
        try:
            with self.cursor() as cur:
                cur.execute("BEGIN")
                cur.execute("INSERT INTO reports (report_id, assessment_id, report_type, title, format, report_data, "
                            "status, generated_at) VALUES (%s, %s, 'compliance', 'chaos', 'json', %s::jsonb, "
                            "'completed', now())", (rid, ASSESSMENT, make_content(self.rng, rid, 1)))
                with self.record.lock:
                    self.record.rolled_back.add(rid)
                cur.execute("ROLLBACK")
            self.stats.inc("rollbacks")
        except psycopg2.Error as e:
            self.failed(e)
            with self.record.lock:
                self.record.rolled_back.add(rid)

    def op_update(self, with_offload=False):
        rep = self.pick()
        if rep is None:
            return self.op_insert()
        content = make_content(self.rng, rep.id, len(rep.history), big=self.rng.random() < 0.02)
        idx = rep.begin(content)
        try:
            with self.cursor() as cur:
                if with_offload:
                    cur.execute("BEGIN")
                cur.execute("UPDATE reports SET report_data = %s::jsonb, updated_at = now() WHERE report_id = %s",
                            (content, rep.id))
                n = cur.rowcount
                if with_offload and n == 1:
                    cur.execute("SELECT report_offload(%s)", (rep.id,))
                if with_offload:
                    cur.execute("COMMIT")
            if n == 1:
                rep.resolve(idx, "committed")
                self.stats.inc("updates")
            else:  # an insert in doubt that did not commit, or a delete in doubt that did
                rep.resolve(idx, "failed")
                rep.commit_absent()
                self.stats.inc("updates_of_absent")
        except psycopg2.Error as e:
            if with_offload and getattr(e, "pgcode", None) == "55000":
                self.stats.inc("update_offload_refused_55000")
            rep.resolve(idx, "doubt" if self.failed(e) else "failed")

    def op_delete(self):
        rep = self.pick()
        if rep is None:
            return
        idx = rep.begin(ABSENT)
        with self.record.lock:
            self.record.deleted.add(rep.id)
        try:
            with self.cursor() as cur:
                cur.execute("DELETE FROM reports WHERE report_id = %s", (rep.id,))
            rep.resolve(idx, "committed")
            self.stats.inc("deletes")
        except psycopg2.Error as e:
            rep.resolve(idx, "doubt" if self.failed(e) else "failed")

    def op_reinsert(self):
        """Insert again a report id whose DELETE committed (its object may still be queued for deletion)."""
        pool = [r for r in self.record.owned(self.idx) if r.current_acceptable() == [ABSENT] and len(r.history) > 2]
        if not pool:
            return self.op_delete()
        rep = self.rng.choice(pool)
        self.op_insert(rep.id, rep)

    def op_fetch(self):
        rep = self.pick(own=self.rng.random() < 0.5, live=False)
        if rep is None:
            return
        start = rep.window_start()
        try:
            with self.cursor() as cur:
                cur.execute("SELECT report_fetch(%s)::text", (rep.id,))
                got = cur.fetchone()[0]
        except psycopg2.Error as e:
            code = getattr(e, "pgcode", None)
            self.failed(e)
            self.stats.inc("fetch_errors")
            if code == "P0002" and ABSENT not in rep.acceptable(start):
                self.stats.anomaly("report_fetch(%s) says the report does not exist, but it does" % rep.id)
            return
        ok = rep.acceptable(start)
        if got is None:
            self.stats.anomaly("report_fetch(%s) returned NULL" % rep.id)
        elif got not in ok:
            self.stats.anomaly("report_fetch(%s) returned content that was never committed (%d bytes, %r...)"
                               % (rep.id, len(got), got[:120]))
        else:
            self.stats.inc("fetches_ok")

    def op_offload(self):
        rep = self.pick(own=self.rng.random() < 0.5)
        if rep is None:
            return
        try:
            with self.cursor() as cur:
                cur.execute("SELECT report_offload(%s)", (rep.id,))
            self.stats.inc("offloads_ok")
        except psycopg2.Error as e:
            self.failed(e)
            self.stats.inc("offload_errors")

    def op_recall(self):
        rep = self.pick()
        if rep is None:
            return
        delete_object = self.rng.random() < 0.6
        try:
            with self.cursor() as cur:
                cur.execute("SELECT reportstore.recall(%s, %s)", (rep.id, delete_object))
            self.stats.inc("recalls")
            if self.rng.random() < 0.7:  # bring it back to the store soon (recall pins it in the database)
                time.sleep(self.rng.random() * 2.5)
                with self.cursor() as cur:
                    cur.execute("SELECT report_offload(%s)", (rep.id,))
                self.stats.inc("offloads_ok")
        except psycopg2.Error as e:
            self.failed(e)

    def op_run_once(self):
        try:
            with self.cursor() as cur:
                cur.execute("SELECT reportstore.run_once()")
            self.stats.inc("run_once_ok")
        except psycopg2.Error as e:
            self.failed(e)

    def run(self):
        try:
            while not self.stop.is_set():
                op = self.rng.choices(self.ops, self.weights)[0]
                if op == "update_offload":
                    self.op_update(with_offload=True)
                else:
                    getattr(self, "op_" + op)()
                time.sleep(self.rng.random() * self.pace)
        except StopIteration:
            pass
        except Exception:  # noqa: BLE001
            self.error = traceback.format_exc()
            log("workload thread %s crashed:\n%s" % (self.name, self.error))
        finally:
            self.drop()


# --------------------------------------------------------------------- chaos

class Chaos(threading.Thread):
    def __init__(self, env, stats, stop, seed, ci):
        super().__init__(name="chaos", daemon=True)
        self.env = env
        self.stats = stats
        self.stop = stop
        self.rng = random.Random(seed)
        self.ci = ci
        self.error = None
        self.faults_set = collections.Counter()
        self.kills = collections.Counter()
        self.restarts = collections.Counter()

    def sleep(self, seconds):
        self.stop.wait(seconds)

    def pids(self, where):
        try:
            return [r[0] for r in self.env.query("SELECT pid FROM pg_stat_activity WHERE " + where)]
        except psycopg2.Error:
            return []

    def kill_worker(self):
        pids = self.pids("backend_type = 'reportstore worker'")
        if pids:
            os.kill(pids[0], signal.SIGKILL)
            self.kills["worker"] += 1
            log("SIGKILL reportstore worker %d" % pids[0])

    def kill_backend(self):
        pids = self.pids("application_name LIKE 'chaos-w%' AND state = 'active'") or \
            self.pids("application_name LIKE 'chaos-w%'")
        if pids:
            pid = self.rng.choice(pids)
            os.kill(pid, signal.SIGKILL)
            self.kills["backend"] += 1
            log("SIGKILL backend %d" % pid)

    def restart_pg(self):
        log("PostgreSQL: immediate shutdown")
        self.env.pg_immediate_stop()
        self.sleep(self.rng.uniform(0.3, 2.0))
        self.env.pg_launch()
        self.restarts["postgres"] += 1
        log("PostgreSQL: started again")

    def restart_s3(self):
        if self.env.backend == "rgw":
            log("S3: radosgw restart")
            self.env.s3_restart_backend()
            self.restarts["s3"] += 1
            log("S3: radosgw up again")
            return
        log("S3 stack: stop")
        self.env.s3_stop()
        self.sleep(self.rng.uniform(0.5, 3.0))
        self.env.s3_start()
        self.restarts["s3"] += 1
        log("S3 stack: started again")

    def set_fault(self):
        kind = self.rng.choice(sorted(FAULTS))
        rule = dict(FAULTS[kind], count=-1, path_regex="^/%s/reports/" % re.escape(self.env.s3_env["S3_BUCKET"]))
        try:
            self.env.control("POST", "/faults", {"rules": [rule]})
            self.faults_set[kind] += 1
        except Exception as e:  # noqa: BLE001
            log("could not set fault %s: %s" % (kind, e))

    def clear_fault(self):
        try:
            self.env.control("DELETE", "/faults")
        except Exception:  # noqa: BLE001
            pass

    def run(self):
        try:
            next_disruption = now() + self.rng.uniform(4, 8)
            while not self.stop.is_set():
                # a fault for a few seconds, then a quiet moment
                self.set_fault()
                self.sleep(self.rng.uniform(1.0, 3.5))
                self.clear_fault()
                self.sleep(self.rng.uniform(0.3, 1.5))
                if self.stop.is_set() or now() < next_disruption:
                    continue
                what = self.rng.choices(["worker", "backend", "postgres", "s3"], [35, 30, 20, 15])[0]
                if self.ci and sum(self.kills.values()) + sum(self.restarts.values()) == 1 and \
                        self.restarts["s3"] == 0:
                    what = "s3"  # the bounded run always restarts the S3 server once
                if what == "worker":
                    self.kill_worker()
                elif what == "backend":
                    self.kill_backend()
                elif what == "postgres":
                    self.restart_pg()
                else:
                    self.restart_s3()
                next_disruption = now() + self.rng.uniform(4, 9 if self.ci else 12)
        except Exception:  # noqa: BLE001
            self.error = traceback.format_exc()
            log("chaos thread crashed:\n%s" % self.error)


# --------------------------------------------------------------------- checks

class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.failures = []

    def check(self, name, ok, detail=""):
        if ok:
            self.passed += 1
            print("ok     %s%s" % (name, (": " + detail) if detail else ""))
        else:
            self.failed += 1
            self.failures.append(name)
            print("FAILED %s%s" % (name, (": " + detail) if detail else ""))
        sys.stdout.flush()


def wait_for(pred, timeout, interval=0.5):
    deadline = now() + timeout
    last = None
    while True:
        try:
            last = pred()
        except Exception as e:  # noqa: BLE001
            last = e
        if last is True:
            return True, last
        if now() > deadline:
            return False, last
        time.sleep(interval)


def setup_database(env):
    create_report_database(env.connect, DB, title="chaos", assessment=ASSESSMENT, drop=False).close()
    # Every charge of a failed offload, as it is written: reportstore.offload_state
    # forgets a report's failures once it is offloaded.
    env.query("""
        CREATE TABLE public.chaos_charges (report_id uuid, attempts integer, kind text, error text,
                                           next_attempt_at timestamptz, at timestamptz DEFAULT clock_timestamp());
        CREATE FUNCTION public.chaos_log_charge() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
            SET search_path = pg_catalog, pg_temp AS $fn$
        BEGIN
            INSERT INTO public.chaos_charges (report_id, attempts, kind, error, next_attempt_at)
                VALUES (NEW.report_id, NEW.attempts, NEW.last_error_kind, NEW.last_error, NEW.next_attempt_at);
            RETURN NULL;
        END $fn$;
        CREATE TRIGGER chaos_log_charge AFTER INSERT OR UPDATE ON reportstore.offload_state
            FOR EACH ROW EXECUTE FUNCTION public.chaos_log_charge();""")


class WorkerMonitor(threading.Thread):
    """Samples how many reportstore workers run at once (reportstore.status.workers
    and the processes in pg_stat_activity) and which pids were seen."""

    def __init__(self, env):
        super().__init__(name="chaos-monitor", daemon=True)
        self.env = env
        self.done = threading.Event()
        self.max_status = 0
        self.max_procs = 0
        self.pids = set()
        self.samples = 0

    def run(self):
        conn = None
        while not self.done.wait(0.5):
            try:
                if conn is None or conn.closed:
                    conn = self.env.connect(app="chaos-monitor", timeout=3)
                with conn.cursor() as cur:
                    cur.execute("SELECT (SELECT workers FROM reportstore.status), array(SELECT pid FROM "
                                "pg_stat_activity WHERE backend_type = 'reportstore worker')")
                    workers, pids = cur.fetchone()
                self.samples += 1
                self.max_status = max(self.max_status, workers or 0)
                self.max_procs = max(self.max_procs, len(pids))
                self.pids.update(pids)
            except Exception:  # noqa: BLE001 (restarts, kills: sample again later)
                try:
                    if conn is not None:
                        conn.close()
                except Exception:  # noqa: BLE001
                    pass
                conn = None
        if conn is not None:
            conn.close()


def insert_huge(env):
    """The full run's oversized report: its text form is over 1 GB. Returns (id, md5 of its string)."""
    rid = str(uuid.uuid4())
    t = now()
    env.query("INSERT INTO reports (report_id, assessment_id, report_type, title, format, report_data, status, "
              "generated_at) VALUES (%s, %s, 'compliance', 'chaos-oversized', 'json', " + HUGE_SQL +
              ", 'completed', now())", (rid, ASSESSMENT))
    md5 = env.query("SELECT md5(report_data->>'s') FROM reports WHERE report_id = %s", (rid,))[0][0]
    log("oversized report %s inserted (text form over 1 GB) in %.1f s" % (rid, now() - t))
    return rid, md5


def pending_counts(env, huge_id):
    """(reports waiting for an offload, failures recorded), leaving out reports recall() pinned
    in the database and the oversized report."""
    return env.query(
        "SELECT (SELECT count(*) FROM reports r WHERE r.minio_path IS NULL AND r.report_data IS NOT NULL "
        "        AND r.report_id IS DISTINCT FROM %s::uuid AND NOT EXISTS (SELECT 1 FROM reportstore.offload_state s "
        "        WHERE s.report_id = r.report_id AND s.last_error_kind = 'recalled')), "
        "       (SELECT count(*) FROM reportstore.offload_state s WHERE s.last_error_kind <> 'recalled' "
        "        AND s.report_id IS DISTINCT FROM %s::uuid)", (huge_id, huge_id))[0]


def silent_phase(env, record, seconds, stop_workload):
    """Every request to the S3 front stalls for `seconds` while the workload goes on.

    How the phase ends matters. A batch whose first uploads stalled while later ones got
    an answer (the endpoint came back in the middle of it) charges the stalled reports,
    as it should: the endpoint did answer that batch. Such a batch is an artifact of the
    moment the faults are cleared, not of the outage, so none may span that moment: the
    workload stops, the test takes LOCK TABLE reports IN EXCLUSIVE MODE (granted once the
    batches in flight have ended; a batch that starts meanwhile waits for it before
    locking any report, so it uploads nothing), clears the faults, and commits. The
    workers then find the pending reports by themselves. Returns (phase start in
    database time, requests stalled)."""
    env.control("DELETE", "/faults")
    ok, last = wait_for(lambda: env.query("SELECT 1") == [(1,)], 60, 0.5)  # after a last kill or restart
    if not ok:
        raise RuntimeError("PostgreSQL does not answer before the silent phase: %s" % (last,))
    time.sleep(1)
    stalls_before = env.control("GET", "/stats").get("faults_injected", {}).get("stall", 0)
    start_db = env.query("SELECT clock_timestamp()")[0][0]
    env.control("POST", "/faults", {"rules": [SILENT_RULE]})
    record.silent.set()
    log("silent endpoint: every request to the S3 front stalls for %.0f s" % seconds)
    # the workload goes on; the test also inserts a report a second itself, so that
    # some reports are surely written while the endpoint is silent
    rng = random.Random(start_db.microsecond)
    end = now() + seconds
    conn = env.connect(app="chaos-silent-insert")
    try:
        while now() < end:
            rid = str(uuid.uuid4())
            rep = Report(rid, 0)
            content = make_content(rng, rid, 1)
            with record.lock:
                record.silent_ids.add(rid)
            with conn.cursor() as cur:
                cur.execute("INSERT INTO reports (report_id, assessment_id, report_type, title, format, report_data, "
                            "status, generated_at) VALUES (%s, %s, 'compliance', 'chaos', 'json', %s::jsonb, "
                            "'completed', now())", (rid, ASSESSMENT, content))
            rep.history.append([content, "committed"])
            rep.committed = 1
            record.add(rep)
            time.sleep(max(0.0, min(1.0, end - now())))
    finally:
        conn.close()
    log("silent endpoint: stopping the workload")
    stop_workload()
    t = now()
    conn = env.connect(app="chaos-silent-end", autocommit=False)
    try:
        with conn.cursor() as cur:
            cur.execute("SET LOCAL lock_timeout = '60s'")
            cur.execute("LOCK TABLE reports IN EXCLUSIVE MODE")
            cur.execute("SELECT count(*) FROM reports WHERE minio_path IS NULL")
            locked = cur.fetchone()[0]
        stalls = env.control("GET", "/stats").get("faults_injected", {}).get("stall", 0) - stalls_before
        env.control("DELETE", "/faults")
        record.silent.clear()
        with conn.cursor() as cur:
            cur.execute("SELECT clock_timestamp()")
            end_db = cur.fetchone()[0]
        conn.commit()
    finally:
        conn.close()
    log("silent endpoint over: %d requests stalled; faults cleared under a lock on reports (%d not offloaded; "
        "waited %.1f s for the batches in flight)" % (stalls, locked, now() - t))
    return start_db, stalls, end_db


def check_silent_recovery(env, record, checks, start_db, stalls, end_db, bound, huge_id):
    """After the silent phase: the workers offload every pending report by themselves
    (no wake(), run_once() or report_offload() from the test) and no report inserted
    during the phase was charged an attempt."""
    t = now()
    counts = {}

    def drained():
        counts["c"] = pending_counts(env, huge_id)
        return counts["c"] == (0, 0)
    ok, last = wait_for(drained, bound, 0.5)
    status = env.query("SELECT worker_state, workers, last_error FROM reportstore.status")[0]
    checks.check("after the silent endpoint the workers offloaded every pending report by themselves "
                 "(bound %.0f s)" % bound, ok,
                 "%.1f s after the faults were cleared; (pending, failures recorded) = %s; status (state, workers, last error) = %s"
                 % (now() - t, counts.get("c", last), status))
    with record.lock:
        ids = sorted(record.silent_ids)
    charged = env.query("SELECT report_id::text, kind, error, at FROM public.chaos_charges WHERE report_id = ANY(%s::uuid[]) "
                        "AND kind IS DISTINCT FROM 'recalled' ORDER BY at", (ids,)) or []
    timeouts = [c for c in charged if re.search(r"time(d)? ?out|did not answer|no answer", c[2] or "", re.I)]
    left = env.query("SELECT count(*) FROM reports r WHERE r.report_id = ANY(%s::uuid[]) AND r.minio_path IS NULL "
                     "AND NOT EXISTS (SELECT 1 FROM reportstore.offload_state s WHERE s.report_id = r.report_id "
                     "AND s.last_error_kind = 'recalled')", (ids,))[0][0]
    checks.check("silent endpoint: no report inserted during it was charged an attempt "
                 "(reportstore.offload_state never held a failure for one)",
                 len(ids) > 0 and stalls > 0 and not charged and left == 0,
                 "%d reports inserted during the phase, %d requests stalled, %d charges (%d mentioning a timeout) %s, "
                 "%d not offloaded" % (len(ids), stalls, len(charged), len(timeouts), charged[:3], left))
    counts = env.query("SELECT count(*), count(*) FILTER (WHERE at >= %s AND at < %s), "
                       "count(*) FILTER (WHERE at >= %s) FROM public.chaos_charges "
                       "WHERE kind IS DISTINCT FROM 'recalled'", (start_db, end_db, end_db))[0]
    late = env.query("SELECT kind, left(error, 120), count(*) FROM public.chaos_charges WHERE at >= %s "
                     "AND kind IS DISTINCT FROM 'recalled' GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 3", (start_db,))
    print("info   failed offloads charged in the whole run: %d; during the silent phase %d (of reports "
          "written before it), after it %d; since it began: %s" % (counts + (late,)))


def check_huge(env, checks, huge_id, huge_md5):
    """The oversized report stayed in report_data unchanged, marked too_large for good,
    and every other report was offloaded."""
    row = env.query("SELECT minio_path IS NULL AND report_data IS NOT NULL, md5(report_data->>'s'), "
                    "report_data - 's' = '{}'::jsonb, md5(repeat(chr(1), 180000000)) FROM reports WHERE report_id = %s",
                    (huge_id,))
    checks.check("oversized report still in report_data, unchanged (md5 of its 180 MB string)",
                 bool(row) and row[0][0] and row[0][1] == huge_md5 == row[0][3] and row[0][2],
                 "row %s, md5 at insert %s" % (row[0] if row else "missing", huge_md5))
    state = env.query("SELECT last_error_kind, last_error, next_attempt_at = 'infinity' FROM reportstore.offload_state "
                      "WHERE report_id = %s", (huge_id,))
    checks.check("oversized report marked permanently failed as too large in reportstore.offload_state",
                 len(state) == 1 and state[0][0] == "too_large" and state[0][2] and "1 GB" in (state[0][1] or ""),
                 "%s" % (state,))
    others = env.query("SELECT count(*) FROM reports WHERE minio_path IS NULL AND report_id <> %s", (huge_id,))[0][0]
    checks.check("every other report was offloaded anyway", others == 0, "%d others still in the database" % others)


def backend_client(env):
    return s3_backend_client(settings=env.s3_env, retries=3)


def existing_keys(env, keys):
    """The keys that exist in the backend (HEAD each: s3rver's listing is unreliable)."""
    from botocore.exceptions import ClientError
    client = backend_client(env)
    found = []
    for key in keys:
        try:
            client.head_object(Bucket=env.s3_env["S3_BUCKET"], Key=key)
            found.append(key)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                raise
    return found


def list_keys(env):
    client = backend_client(env)
    keys = set()
    token = None
    while True:
        kw = {"Bucket": env.s3_env["S3_BUCKET"], "Prefix": "reports/"}
        if token:
            kw["ContinuationToken"] = token
        page = client.list_objects_v2(**kw)
        for o in page.get("Contents", []):
            keys.add(o["Key"])
        if not page.get("IsTruncated"):
            return keys
        token = page["NextContinuationToken"]


def final_checks(env, record, stats, checks, settle_timeout, huge_id=None):
    # 1. everything up, no faults
    if not env.s3_up:
        env.s3_start()
    if not env.pg_up:
        env.pg_launch()
    env.collect_front_stats()
    env.control("DELETE", "/faults")
    env.control("POST", "/reset", {"stats_only": True})

    # 2. recalled reports stay in the database until report_offload(): offload them
    def offload_pinned():
        env.query("SELECT report_offload(s.report_id) FROM reportstore.offload_state s "
                  "JOIN reports r USING (report_id) WHERE s.last_error_kind = 'recalled' AND r.minio_path IS NULL")
        return True
    ok, last = wait_for(offload_pinned, 20, 1)
    if not ok:
        log("offloading recalled reports failed: %s" % last)

    # 3. the worker finishes
    t = now()
    status = {}

    expect = 0 if huge_id is None else 1  # the oversized report stays in the database, failed for good

    def worker_done():
        env.query("SELECT reportstore.wake()")
        rows = env.query("SELECT reports_in_database, reports_failing, worker_state, last_error "
                         "FROM reportstore.status")
        status["s"] = rows[0]
        return rows[0][0] == expect and rows[0][1] == expect
    ok, last = wait_for(worker_done, settle_timeout, 0.5)
    checks.check("worker finished the migration (reports_in_database = %d, reports_failing = %d%s)"
                 % (expect, expect, "" if huge_id is None else ": the oversized report"), ok,
                 "%.1f s; status (in_database, failing, state, last_error) = %s" % (now() - t, status.get("s", last)))
    if not ok:
        for row in env.query("SELECT report_id, attempts, last_error_kind, last_error FROM reportstore.offload_state "
                             "LIMIT 5") or []:
            log("offload_state: %s" % (row,))

    # 4. every report fetches back exactly what was committed
    in_db = set(r[0] for r in env.query("SELECT report_id::text FROM reports")) - {huge_id}
    lost, corrupted, resurrected, unknown, doubtful = [], [], [], [], 0
    to_fetch = []
    for rep in record.all():
        acceptable = rep.current_acceptable()
        if len(acceptable) > 1:
            doubtful += 1
        if rep.id not in in_db:
            if ABSENT not in acceptable:
                lost.append((rep.id, "row missing"))
            continue
        if acceptable == [ABSENT]:
            resurrected.append(rep.id)
            continue
        to_fetch.append((rep, acceptable))
    t = now()
    results_lock = threading.Lock()

    def fetcher(items):
        conn = env.connect()
        for rep, acceptable in items:
            # One attempt: faults are cleared and both servers are up, so a read that
            # needs a retry is a failure.
            got, err = None, None
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT report_fetch(%s)::text", (rep.id,))
                    got = cur.fetchone()[0]
            except psycopg2.Error as e:
                err = "%s %s" % (e.pgcode, (e.diag.message_primary or str(e)).strip())
                if e.pgcode is None or conn.closed:
                    conn = env.connect()
            with results_lock:
                if err is not None:
                    (corrupted if err.startswith("XX001") else lost).append((rep.id, err))
                elif got is None:
                    lost.append((rep.id, "report_fetch returned NULL"))
                elif got not in acceptable:
                    corrupted.append((rep.id, "content differs: got version %s, history (version, state) %s"
                                      % (version_of(got), rep.describe())))
        conn.close()
    fetchers = [threading.Thread(target=fetcher, args=(to_fetch[i::4],)) for i in range(4)]
    for f in fetchers:
        f.start()
    for f in fetchers:
        f.join()
    log("fetched %d reports back in %.1f s" % (len(to_fetch), now() - t))
    known = set(r.id for r in record.all())
    unknown = sorted(in_db - known)
    with record.lock:
        rolled_back_present = sorted(record.rolled_back & in_db)
    surviving = len([r for r in record.all() if r.id in in_db])
    checks.check("reports lost = 0", not lost, "%d lost %s" % (len(lost), lost[:5]))
    checks.check("reports corrupted = 0", not corrupted, "%d corrupted %s" % (len(corrupted), corrupted[:5]))
    checks.check("no deleted report came back", not resurrected, "%s" % resurrected[:5])
    checks.check("no unknown or rolled-back report in the table", not unknown and not rolled_back_present,
                 "unknown %s, rolled back %s" % (unknown[:5], rolled_back_present[:5]))
    checks.check("no wrong data returned during the run", not stats.anomalies,
                 "%d anomalies %s" % (len(stats.anomalies), stats.anomalies[:5]))

    # 5. verify(true)
    try:
        t = now()
        rows = env.query("SELECT report_id, minio_path, problem, detail FROM reportstore.verify(true)")
        log("verify(true) took %.1f s" % (now() - t))
        checks.check("reportstore.verify(true) finds no problem", not rows, "%d rows %s" % (len(rows), rows[:5]))
    except psycopg2.Error as e:
        checks.check("reportstore.verify(true) finds no problem", False, str(e).strip())

    # 6. objects of deleted reports are gone after delete_delay
    gone_ids = set(r.id for r in record.all() if r.id not in in_db)
    time.sleep(2.5)
    qlen = {}

    def queue_empty():
        env.query("SELECT reportstore.run_once()")
        qlen["n"] = env.query("SELECT count(*), max(last_error) FROM reportstore.delete_queue")[0]
        return qlen["n"][0] == 0
    ok, last = wait_for(queue_empty, 20, 1)
    checks.check("delete queue processed", ok, "left: %s" % (qlen.get("n", last),))
    bucket = env.s3_env["S3_BUCKET"]
    leftover = sorted(k for k in existing_keys(env, ["reports/%s/report.json" % i for i in gone_ids]))
    try:
        orphan_rows = env.query("SELECT key, action FROM reportstore.orphans(false, '0')") or []
    except psycopg2.Error as e:
        orphan_rows = []
        print("info   reportstore.orphans() failed: %s" % " / ".join(
            x for x in (e.diag.message_primary, e.diag.message_detail) if x))
    orphan_keys = set(r[0] for r in orphan_rows)
    checks.check("objects of deleted reports are gone from the bucket", not leftover,
                 "%d deleted reports, %d objects left (%d of them listed by reportstore.orphans()) e.g. %s"
                 % (len(gone_ids), len(leftover), len([k for k in leftover if k in orphan_keys]), leftover[:3]))
    stale = env.query("SELECT count(*) FROM reportstore.objects o WHERE NOT EXISTS "
                      "(SELECT 1 FROM reports r WHERE r.report_id = o.report_id)")[0][0]
    print("info   reportstore.objects rows of deleted reports: %d; orphans() lists %d objects in s3://%s/reports/"
          % (stale, len(orphan_rows), bucket))
    return dict(lost=len(lost), corrupted=len(corrupted), surviving=surviving, deleted=len(gone_ids),
                doubtful=doubtful, leftover=len(leftover))


def scan_server_log(env, checks, kills):
    path = os.path.join(env.pg_dir, "server.log")
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    sig9 = len(re.findall(r"was terminated by signal 9", text))
    bad = re.findall(r".*(?:terminated by signal (?!9\b)\d+|PANIC:|TRAP:|exited with exit code (?![01]\b)\d+).*",
                     text)
    checks.check("no crash other than the injected SIGKILLs in the server log", not bad,
                 "%d SIGKILL terminations; other: %s" % (sig9, bad[:5]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("work")
    ap.add_argument("--ci", action="store_true")
    ap.add_argument("--duration", type=float)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--threads", type=int)
    args = ap.parse_args()
    global DEADLINE
    threads_n = args.threads or (3 if args.ci else 4)
    duration = args.duration or float(os.environ.get("CHAOS_DURATION", 20 if args.ci else 240))
    settle = 20 if args.ci else 90
    silent_seconds = 6 if args.ci else 20
    pace = 0.12 if args.ci else 0.05  # most seconds between two operations of a thread
    if args.ci:
        DEADLINE = T0 + 108
    seed = args.seed if args.seed is not None else int(os.environ.get("CHAOS_SEED", random.randrange(1 << 30)))
    s3_port = int(os.environ.get("CHAOS_S3_PORT") or 0)  # 0: a free port, kept across restarts
    pg_port = int(os.environ.get("CHAOS_PG_PORT") or free_port())
    backend = os.environ.get("CHAOS_S3_BACKEND", "rgw")
    log("chaos: mode %s, %.0f s of chaos, seed %d, %d threads, S3 %d (%s), PostgreSQL %d, work dir %s"
        % ("ci" if args.ci else "full", duration, seed, threads_n, s3_port, backend, pg_port, args.work))
    random.seed(seed)

    def on_term(signum, frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_term)

    env = Env(args.work, s3_port, pg_port, backend)
    checks = Checks()
    record, stats = Record(), Stats()
    stop = threading.Event()
    chaos_stop = threading.Event()
    threads = []
    chaos = None
    monitor = None
    huge_id = huge_md5 = None
    silent = None  # (phase start, requests stalled)
    figures = {}
    signatures_checked = False
    try:
        env.s3_start()
        if backend == "moto":
            log("note: moto keeps objects in memory; S3 restarts lose them. Use rgw (default) or s3rver.")
        env.pg_start_new()
        setup_database(env)
        log("S3 stack and PostgreSQL up (%s backend)" % env.s3_env.get("S3_BACKEND"))
        monitor = WorkerMonitor(env)
        monitor.start()
        if args.ci:
            log("the oversized report (text form over 1 GB) runs only in the full run")
        else:
            huge_id, huge_md5 = insert_huge(env)

        # a backlog for the worker to migrate, all committed
        conn = env.connect()
        rng = random.Random(seed)
        with conn.cursor() as cur:
            for i in range(80):
                rid = str(uuid.uuid4())
                rep = Report(rid, i % threads_n)
                content = make_content(rng, rid, 1)
                rep.history.append([content, "committed"])
                rep.committed = 1
                cur.execute("INSERT INTO reports (report_id, assessment_id, report_type, title, format, report_data, "
                            "status, generated_at) VALUES (%s, %s, 'compliance', 'chaos', 'json', %s::jsonb, "
                            "'completed', now())", (rid, ASSESSMENT, content))
                record.add(rep)
        conn.close()
        stats.inc("inserts", 80)

        threads = [Worker(i, env, record, stats, stop, seed + 1 + i, pace) for i in range(threads_n)]
        chaos = Chaos(env, stats, chaos_stop, seed + 1000, args.ci)
        t_start = now()
        for t in threads:
            t.start()
        chaos.start()
        while now() - t_start < duration:
            time.sleep(1)
            if chaos.error:
                break
            if int(now() - t_start) % 15 == 0:
                with stats.lock:
                    c = dict(stats.c)
                log("progress: inserts %d, updates %d, deletes %d, fetches ok %d, offloads ok %d, errors %d"
                    % (c.get("inserts", 0), c.get("updates", 0), c.get("deletes", 0), c.get("fetches_ok", 0),
                       c.get("offloads_ok", 0), sum(v for k, v in c.items() if k.startswith("error "))))
        log("chaos over")
        chaos_stop.set()
        chaos.join(60)

        def stop_workload():
            stop.set()
            for t in threads:
                t.join(60)
        if chaos.error is None and not chaos.is_alive():
            silent = silent_phase(env, record, silent_seconds, stop_workload)
        log("stopping the workload")
        stop_workload()
        for t in threads:
            checks.check("workload thread %s ran without a test error" % t.name, t.error is None and not t.is_alive(),
                         (t.error or "still running").strip().splitlines()[-1] if t.error or t.is_alive() else "")
        checks.check("chaos thread ran without a test error", chaos.error is None,
                     (chaos.error or "").strip().splitlines()[-1] if chaos.error else "")

        if silent is not None:
            # generous: recovery takes a second or two; the bounded run keeps time for the final checks
            bound = 60 if DEADLINE is None else max(20.0, min(60.0, remaining() - 35))
            check_silent_recovery(env, record, checks, silent[0], silent[1], silent[2], bound, huge_id)
        figures = final_checks(env, record, stats, checks, settle, huge_id)
        if huge_id is not None:
            check_huge(env, checks, huge_id, huge_md5)
        monitor.done.set()
        monitor.join(10)
        checks.check("at least 2 workers ran at once (reportstore.max_workers = 2)",
                     monitor.max_status >= 2 and monitor.max_procs >= 2,
                     "most at once: %d in reportstore.status.workers, %d processes in pg_stat_activity; "
                     "%d distinct worker pids over %d samples" % (monitor.max_status, monitor.max_procs,
                                                                 len(monitor.pids), monitor.samples))
        scan_server_log(env, checks, chaos.kills)
        # the front's stats since the last collection (the final phase included)
        env.collect_front_stats()
        sig = []
        for st in env.front_stats:
            sig += st.get("signature_failures", [])
        verified = sum(st.get("verified", 0) for st in env.front_stats)
        checks.check("every request the front saw was signed correctly (all phases, the final checks included)",
                     not sig and not env.front_stats_errors and verified > 0,
                     "%d verified, %d unexpected failures %s; stats unreadable %d times %s"
                     % (verified, len(sig), sig[:3], len(env.front_stats_errors), env.front_stats_errors[:2]))
        signatures_checked = True
        with stats.lock:
            c = dict(stats.c)
        checks.check("the workload made progress", c.get("inserts", 0) > 80 and c.get("fetches_ok", 0) > 0,
                     "%d inserts, %d fetches ok" % (c.get("inserts", 0), c.get("fetches_ok", 0)))
    except BaseException as e:  # noqa: BLE001
        stop.set()
        chaos_stop.set()
        checks.check("chaos run completed", False, "".join(traceback.format_exception_only(type(e), e)).strip())
        if not isinstance(e, (SystemExit, KeyboardInterrupt)):
            traceback.print_exc()
    finally:
        stop.set()
        chaos_stop.set()
        if monitor is not None:
            monitor.done.set()
        faults = collections.Counter()
        for st in env.front_stats:
            faults.update(st.get("faults_injected", {}))
        with stats.lock:
            c = dict(stats.c)
        print()
        print("seed:               %d" % seed)
        print("reports written:    %d inserts (+%d re-inserts of deleted ids), %d updates, %d deletes, "
              "%d rolled back" % (c.get("inserts", 0), c.get("reinserts", 0), c.get("updates", 0),
                                  c.get("deletes", 0), c.get("rollbacks", 0)))
        print("reads/offloads:     %d fetches ok, %d fetch errors, %d report_offload ok, %d errors, %d recalls, "
              "%d run_once" % (c.get("fetches_ok", 0), c.get("fetch_errors", 0), c.get("offloads_ok", 0),
                               c.get("offload_errors", 0), c.get("recalls", 0), c.get("run_once_ok", 0)))
        errs = sorted((k[6:], v) for k, v in c.items() if k.startswith("error "))
        print("client errors:      %s" % ", ".join("%s %d" % kv for kv in errs))
        print("faults injected:    %s (total %d)" % (", ".join("%s %d" % kv for kv in sorted(faults.items())),
                                                     sum(faults.values())))
        if chaos is not None:
            print("fault rules set:    %s" % ", ".join("%s %d" % kv for kv in sorted(chaos.faults_set.items())))
            print("kills:              %d (worker %d, backends %d)" % (sum(chaos.kills.values()),
                                                                     chaos.kills["worker"], chaos.kills["backend"]))
            print("restarts:           %d (PostgreSQL immediate %d, S3 server %d)"
                  % (sum(chaos.restarts.values()), chaos.restarts["postgres"], chaos.restarts["s3"]))
        if monitor is not None:
            print("workers:            %d at once at most (reportstore.status.workers; %d processes in "
                  "pg_stat_activity), %d distinct pids" % (monitor.max_status, monitor.max_procs, len(monitor.pids)))
        if silent is not None:
            print("silent endpoint:    %.0f s, %d requests stalled, %d reports inserted meanwhile"
                  % (silent_seconds, silent[1], len(record.silent_ids)))
        print("oversized report:   %s" % ("%s (over 1 GB as text)" % huge_id if huge_id else "full run only"))
        if figures:
            print("reports at the end: %d surviving, %d deleted, %d with an in-doubt write"
                  % (figures["surviving"], figures["deleted"], figures["doubtful"]))
            print("reports lost:       %d" % figures["lost"])
            print("reports corrupted:  %d" % figures["corrupted"])
        print("wrong data seen:    %d" % len(stats.anomalies))
        print("time:               %.1f s" % (now() - T0))
        if env.s3_up and not signatures_checked:
            env.collect_front_stats()  # for the figures above only
        stop_all(env)
        print("%d passed, %d failed" % (checks.passed, checks.failed))
        sys.stdout.flush()
    sys.exit(1 if checks.failed else 0)


def stop_all(env):
    try:
        env.pg_stop()
    except Exception:  # noqa: BLE001
        pass
    try:
        subprocess.run(["bash", S3STACK, "stop", env.s3_dir], capture_output=True, timeout=120)
    except Exception:  # noqa: BLE001
        pass


if __name__ == "__main__":
    main()
