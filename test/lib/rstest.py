"""The test suite's shared Python library: clusters, the S3 front's control
API, queries, reports and waiting, for the integration tests
(test/integration), the chaos test (test/chaos) and anything else that
drives a cluster with reportstore from Python.

    sys.path.insert(0, os.path.join(ROOT, "test", "lib")); import rstest

Nothing here depends on pytest: a failed wait or setup raises
rstest.Failure (an AssertionError), which pytest reports as a test failure
and a script reports as a failed check. Under pytest, failures go through
pytest.fail() so that the message is all that is shown.
"""
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

import psycopg2
import psycopg2.extras

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PGCLUSTER = os.path.join(ROOT, "test", "pgcluster.sh")
S3STACK = os.path.join(ROOT, "test", "harness", "s3stack.sh")
SEED_SCHEMA = "test/fixtures/seed_schema_before.sql"
ASSESSMENT = "a0000000-0000-4000-8000-000000000001"

sys.path.insert(0, os.path.join(ROOT, "test", "harness"))
from freeport import free_port, free_ports  # noqa: E402,F401  (re-exported)


class Failure(AssertionError):
    """A setup step or a wait that did not succeed."""


def fail(msg):
    if "pytest" in sys.modules:
        sys.modules["pytest"].fail(msg)
    raise Failure(msg)


def env(name):
    """An environment variable the suite must have set (test/run_all.sh sets them)."""
    value = os.environ.get(name)
    if not value:
        fail("%s is not set: run the tests through test/run_all.sh" % name)
    return value


def note_secret(*values):
    """Secrets made during a test (temporary credentials from RGW's STS...): appended to
    REPORTSTORE_SECRETS_FILE when set, so that test/run_all.sh looks for them in every log
    and output too."""
    path = os.environ.get("REPORTSTORE_SECRETS_FILE")
    if path:
        with open(path, "a") as f:
            for v in values:
                if v:
                    f.write(v + "\n")


# ------------------------------------------------------------------ waiting

def wait_until(predicate, timeout=30.0, what="condition", interval=0.1):
    """Calls predicate until it returns a true value (returned), failing after timeout seconds.
    what may be a function, called at the failure, so that the message can say what was seen."""
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.time() > deadline:
            fail("timed out after %.0f s waiting for %s" % (timeout, what() if callable(what) else what))
        time.sleep(interval)


# ------------------------------------------------------------------ PostgreSQL

def pg_bindir():
    return subprocess.run([os.environ.get("PG_CONFIG", "pg_config"), "--bindir"], capture_output=True, text=True,
                          check=True).stdout.strip()


def as_postgres(cmd, timeout=120, **kw):
    """Runs cmd (a list) as the OS user postgres when we are root; output captured as text."""
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--"] + list(cmd)
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    return subprocess.run(cmd, timeout=timeout, **kw)


def connect(dbname="postgres", autocommit=True, host=None, port=None, user=None, **kw):
    """A connection to the suite's cluster (PGHOST/PGPORT/PGUSER), or to host/port."""
    conn = psycopg2.connect(host=host or env("PGHOST"), port=port or env("PGPORT"),
                            user=user or os.environ.get("PGUSER", "postgres"), dbname=dbname, **kw)
    conn.autocommit = autocommit
    return conn


def rows(conn, sql, args=None):
    """All rows of sql (None for a statement without a result)."""
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall() if cur.description else None


def value(conn, sql, args=None):
    return rows(conn, sql, args)[0][0]


def dict_row(conn, sql, args=None):
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute(sql, args)
        return dict(cur.fetchone())


def run_sql_file(conn, path):
    with open(os.path.join(ROOT, path)) as f, conn.cursor() as cur:
        cur.execute(f.read())


def create_report_database(connect_fn, name, version=None, title="it", assessment=ASSESSMENT, drop=True):
    """(Re)creates database name with the seed's schema, the extension (at version, default the
    current one) and one assessment. connect_fn(dbname) opens a connection to the right cluster.
    Returns an open autocommit connection to the new database."""
    admin = connect_fn("postgres")
    try:
        with admin.cursor() as cur:
            if drop:
                cur.execute("DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)
            cur.execute("CREATE DATABASE %s" % name)
    finally:
        admin.close()  # a psycopg2 "with conn" block commits but does not close
    conn = connect_fn(name)
    run_sql_file(conn, SEED_SCHEMA)
    with conn.cursor() as cur:
        cur.execute("CREATE EXTENSION reportstore" + (" VERSION '%s'" % version if version else ""))
        cur.execute("INSERT INTO assessments VALUES (%s, %s)", (assessment, title))
    return conn


def drop_database(connect_fn, name):
    admin = connect_fn("postgres")
    try:
        with admin.cursor() as cur:
            cur.execute("DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)
    finally:
        admin.close()


def scratch_dir(prefix, mode=0o755):
    """A new directory next to the suite's cluster when that is writable (so that the suite's
    secret scan and log collection see it), else in TMPDIR."""
    base = os.path.dirname(os.path.abspath(os.environ.get("PGHOST", tempfile.gettempdir())))
    top = tempfile.mkdtemp(prefix=prefix, dir=base if os.access(base, os.W_OK) else None)
    os.chmod(top, mode)
    return top


class Cluster:
    """A PostgreSQL cluster of test/pgcluster.sh: connections, queries, reportstore's
    views, the server log. dbname is the default database of every call."""

    def __init__(self, directory, port, dbname="postgres"):
        self.dir = directory
        self.port = port
        self.dbname = dbname
        self.log_path = os.path.join(directory, "server.log")

    @classmethod
    def start(cls, directory, conf=(), dbname="postgres", port=None, timeout=120):
        """test/pgcluster.sh start DIRECTORY on a free port (or port) with these postgresql.conf lines."""
        port = port or free_port()
        started = subprocess.run([PGCLUSTER, "start", directory, str(port)] + list(conf), capture_output=True,
                                 text=True, timeout=timeout)
        if started.returncode != 0:
            log = ""
            with contextlib.suppress(OSError), open(os.path.join(directory, "server.log")) as f:
                log = f.read()[-3000:]
            fail("test/pgcluster.sh start failed (port %d):\n%s%s\n%s" % (port, started.stdout, started.stderr, log))
        return cls(directory, port, dbname)

    def stop(self, remove_data=True):
        subprocess.run([PGCLUSTER, "stop", self.dir], capture_output=True, timeout=120)
        if remove_data:
            shutil.rmtree(os.path.join(self.dir, "data"), ignore_errors=True)  # server.log stays

    def connect(self, dbname=None, autocommit=True, **kw):
        conn = psycopg2.connect(host=self.dir, port=self.port, user=kw.pop("user", "postgres"),
                                dbname=dbname or self.dbname, **kw)
        conn.autocommit = autocommit
        return conn

    def query(self, sql, args=None, dbname=None):
        """Runs sql in a new autocommit session and returns all rows (or None)."""
        conn = self.connect(dbname)
        try:
            return rows(conn, sql, args)
        finally:
            conn.close()

    def value(self, sql, args=None, dbname=None):
        return self.query(sql, args, dbname)[0][0]

    def _dict(self, sql):
        conn = self.connect()
        try:
            return dict_row(conn, sql)
        finally:
            conn.close()

    def worker_info(self):
        return self._dict("SELECT * FROM reportstore.worker_info()")

    def worker_state(self):
        return self.worker_info()["state"]

    def status(self):
        return self._dict("SELECT * FROM reportstore.status")

    def stats(self):
        return self._dict("SELECT * FROM reportstore.stats()")

    def log_size(self):
        return os.path.getsize(self.log_path)

    def read_log(self, offset=0):
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", errors="replace")

    def reload_conf(self):
        self.query("SELECT pg_reload_conf()")

    def reload_and_wait(self):
        """pg_reload_conf(), then waits until new sessions run with the reloaded files
        (works for settings whose value SHOW masks, like the credentials)."""
        loaded = self.value("SELECT pg_conf_load_time()")
        time.sleep(0.01)
        self.reload_conf()
        wait_until(lambda: self.value("SELECT pg_conf_load_time()") > loaded, 10, "the configuration reload")

    def pending(self, ids):
        """How many of these reports are not offloaded yet."""
        return self.value("SELECT count(*) FROM reports WHERE report_id = ANY(%s::uuid[]) AND minio_path IS NULL",
                          (list(ids),))

    def wait_offloaded(self, ids, timeout=30.0, what="the reports to be offloaded"):
        ids = list(ids)
        wait_until(lambda: self.pending(ids) == 0, timeout, what)

    def wait_idle(self, timeout=30.0):
        seen = {}

        def idle():
            seen.update(self.worker_info())
            return seen["state"] == "idle"
        wait_until(idle, timeout, lambda: "the worker to be idle (seen: %s (%s), %s worker(s), last error: %s)"
                   % (seen["state"], seen["detail"], seen["workers"], seen["last_error"]))


# ------------------------------------------------------------------ reports

@contextlib.contextmanager
def system_settings(cluster, **settings):
    """ALTER SYSTEM SET name = value (dots as __) on cluster, then cluster.reload_and_wait();
    RESET and reload again afterwards, always."""
    names = [k.replace("__", ".") for k in settings]
    try:
        for name, value in zip(names, settings.values()):
            cluster.query("ALTER SYSTEM SET %s = %%s" % name, (value,))
        cluster.reload_and_wait()
        yield
    finally:
        for name in names:
            cluster.query("ALTER SYSTEM RESET %s" % name)
        cluster.reload_and_wait()


def report_json(approx_bytes=200, seed=0):
    """A JSON document of roughly approx_bytes bytes (as jsonb text)."""
    items = []
    size = 0
    i = 0
    while size < approx_bytes:
        item = {"i": i, "seed": seed, "name": "finding-%d-%d" % (seed, i), "score": (i * 7919 + seed) % 1000 / 10.0,
                "text": "Lorem ipsum \u00e9\u00e8 \"quoted\" %d" % (i * 31 + seed)}
        items.append(item)
        size += len(json.dumps(item)) + 2
        i += 1
    return json.dumps({"seed": seed, "findings": items})


def insert_reports(conn, docs, fmt="json", ids=None, assessment=ASSESSMENT, title="it"):
    """Inserts the JSON documents in one statement (in conn's transaction);
    returns {report_id: report_data::text}."""
    ids = list(ids) if ids else [str(uuid.uuid4()) for _ in docs]
    with conn.cursor() as cur:
        cur.execute("INSERT INTO reports (report_id, assessment_id, report_type, title, format, report_data, status, "
                    "generated_at) SELECT id, %s, 'compliance', %s, %s, d::jsonb, 'completed', now() "
                    "FROM unnest(%s::uuid[], %s::text[]) AS t(id, d) RETURNING report_id::text, report_data::text",
                    (assessment, title, fmt, ids, list(docs)))
        return dict(cur.fetchall())


def new_report(conn, data, fmt="json", assessment=ASSESSMENT, title="it"):
    """Inserts a report with the given JSON text and returns its id."""
    rid = str(uuid.uuid4())
    with conn.cursor() as cur:
        cur.execute("INSERT INTO reports (report_id, assessment_id, report_type, title, format, report_data, status, "
                    "generated_at) VALUES (%s, %s, 'compliance', %s, %s, %s::jsonb, 'completed', now())",
                    (rid, assessment, title, fmt, data))
    return rid


def report_state(conn, rid):
    """(report_data as text or None, minio_path or None)."""
    with conn.cursor() as cur:
        cur.execute("SELECT report_data::text, minio_path FROM reports WHERE report_id = %s", (rid,))
        return cur.fetchone()


def jsonb_text(conn, data):
    """The canonical jsonb text of a JSON document (what report_data::text gives)."""
    return value(conn, "SELECT %s::jsonb::text", (data,))


def offload(conn, rid):
    return value(conn, "SELECT report_offload(%s)", (rid,))


def fetch_text(conn, rid):
    return value(conn, "SELECT report_fetch(%s)::text", (rid,))


def query_error(conn, sql, args=None):
    """Runs sql, which must fail; returns the psycopg2 error."""
    with conn.cursor() as cur:
        try:
            cur.execute(sql, args)
        except psycopg2.Error as e:
            return e
    fail("expected %r to fail, it returned normally" % sql)


def error_text(e):
    """Everything an error tells the client: message, detail, hint, context."""
    d = e.diag
    return "\n".join(x for x in (d.message_primary, d.message_detail, d.message_hint, d.context) if x)


# ------------------------------------------------------------------ S3

def bucket():
    return os.environ.get("S3_BUCKET") or "reports"


def object_key(rid, fmt="json"):
    return "reports/%s/report.%s" % (rid, fmt)


def object_path(rid, fmt="json", bucket_name=None):
    return "s3://%s/%s" % (bucket_name or env("S3_BUCKET"), object_key(rid, fmt))


def key_regex(rid, fmt="json"):
    """path_regex for fault rules that only hit this report's object."""
    return re.escape("/%s/%s" % (env("S3_BUCKET"), object_key(rid, fmt)))


def read_env_file(path):
    """The S3_* and RGW_* variables of a sourceable file (test/harness/s3stack.sh's s3.env)."""
    out = subprocess.check_output(["bash", "-c", 'set -a; . "$1"; env -0', "x", path])
    found = {}
    for item in out.split(b"\0"):
        k, _, v = item.decode().partition("=")
        if k.startswith(("S3_", "RGW_")):
            found[k] = v
    return found


class S3Control:
    """The S3 front's control API (test/harness/README.md): stats, faults, credentials."""

    def __init__(self, url):
        self.url = url

    def call(self, method, path, body=None, timeout=10):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            text = resp.read()
            return json.loads(text) if text else None

    _call = call

    def stats(self):
        return self.call("GET", "/stats")

    def faults(self, *rules):
        return self.call("POST", "/faults", {"rules": list(rules)})

    def clear_faults(self):
        return self.call("DELETE", "/faults")

    def reset(self, stats_only=False):
        return self.call("POST", "/reset", {"stats_only": True} if stats_only else None)

    def expect_failures(self, enabled):
        return self.call("POST", "/expect_failures", {"enabled": enabled})

    def credentials(self, **kw):
        return self.call("POST", "/credentials", kw)

    @contextlib.contextmanager
    def expecting_failures(self):
        """Requests the front rejects inside the block are deliberate."""
        self.expect_failures(True)
        try:
            yield
        finally:
            self.expect_failures(False)


def s3_backend_client(endpoint=None, verify=None, settings=None, retries=1):
    """boto3 client talking straight to the S3 server (not through the front) with its real
    credentials: the oracle. endpoint/verify: e.g. RGW's https port and its CA file.
    settings: a dict of S3_* variables instead of the environment."""
    import boto3
    from botocore.config import Config
    get = (lambda k: settings[k]) if settings is not None else env
    return boto3.client("s3", endpoint_url=endpoint or get("S3_BACKEND_ENDPOINT"),
                        aws_access_key_id=get("S3_BACKEND_ACCESS_KEY"),
                        aws_secret_access_key=get("S3_BACKEND_SECRET_KEY"), region_name=get("S3_REGION"),
                        verify=verify,
                        config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                                      retries={"max_attempts": retries}))


def front_log_lines(regex, stack_dir=None):
    """Lines of the S3 front's request log (DIR/s3front.log) that match regex."""
    pat = re.compile(regex)
    path = os.path.join(stack_dir or env("S3_STACK_DIR"), "s3front.log")
    with open(path, encoding="utf-8", errors="replace") as f:
        return [line.rstrip("\n") for line in f if pat.search(line.rstrip("\n"))]


def object_requests(method, rid, fmt="json", status=None):
    """Lines of the S3 front's request log for this report's object and method (and status)."""
    return front_log_lines(r" %s /%s(\?\S*)? -> %s$" % (
        method, re.escape("%s/%s" % (env("S3_BUCKET"), object_key(rid, fmt))), status if status else r"\d+"))
