"""Fixtures for the integration tests.

test/run_all.sh starts PostgreSQL (PGHOST/PGPORT/PGUSER) and the S3 stack
(S3_* variables from test/harness/s3stack.sh) and runs pytest with them in
the environment. Each test module gets its own database with the seed's schema
and the extension installed.
"""
import contextlib
import json
import os
import re
import subprocess
import time
import urllib.request
import uuid

import psycopg2
import psycopg2.extensions
import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def env(name):
    value = os.environ.get(name)
    if not value:
        pytest.fail("%s is not set: run the integration tests through test/run_all.sh" % name)
    return value


class S3Control:
    """The S3 front's control API: stats, fault injection, credentials."""

    def __init__(self, url):
        self.url = url

    def _call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            text = resp.read()
            return json.loads(text) if text else None

    def stats(self):
        return self._call("GET", "/stats")

    def faults(self, *rules):
        return self._call("POST", "/faults", {"rules": list(rules)})

    def clear_faults(self):
        return self._call("DELETE", "/faults")

    def expect_failures(self, enabled):
        return self._call("POST", "/expect_failures", {"enabled": enabled})

    def credentials(self, **kw):
        return self._call("POST", "/credentials", kw)

    @contextlib.contextmanager
    def expecting_failures(self):
        """Requests the front rejects inside the block are deliberate."""
        self.expect_failures(True)
        try:
            yield
        finally:
            self.expect_failures(False)


@pytest.fixture(scope="session")
def s3():
    control = S3Control(env("S3_CONTROL"))
    yield control
    control.clear_faults()


@pytest.fixture(autouse=True)
def no_leftover_faults(s3):
    yield
    s3.clear_faults()
    s3.expect_failures(False)
    s3.credentials(restore=True)


def connect(dbname="postgres", autocommit=True, **kw):
    conn = psycopg2.connect(host=env("PGHOST"), port=env("PGPORT"), user=os.environ.get("PGUSER", "postgres"),
                            dbname=dbname, **kw)
    conn.autocommit = autocommit
    return conn


def run_sql_file(conn, path):
    with open(os.path.join(ROOT, path)) as f, conn.cursor() as cur:
        cur.execute(f.read())


@pytest.fixture(scope="module")
def dbname(request):
    name = "it_" + request.module.__name__.split(".")[-1].replace("test_", "")[:40]
    admin = connect()
    try:
        with admin.cursor() as cur:
            cur.execute("DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)
            cur.execute("CREATE DATABASE %s" % name)
    finally:
        admin.close()  # a psycopg2 "with conn" block commits but does not close
    conn = connect(name)
    run_sql_file(conn, "test/fixtures/seed_schema_before.sql")
    with conn.cursor() as cur:
        cur.execute("CREATE EXTENSION reportstore")
        cur.execute("INSERT INTO assessments VALUES ('a0000000-0000-4000-8000-000000000001', 'it')")
    conn.close()
    yield name


@pytest.fixture
def db(dbname):
    conn = connect(dbname)
    yield conn
    conn.close()


def new_report(conn, data, fmt="json"):
    """Inserts a report with the given JSON text and returns its id."""
    rid = str(uuid.uuid4())
    with conn.cursor() as cur:
        cur.execute("INSERT INTO reports (report_id, assessment_id, report_type, title, format, report_data, status, "
                    "generated_at) VALUES (%s, 'a0000000-0000-4000-8000-000000000001', 'compliance', 'it', %s, "
                    "%s::jsonb, 'completed', now())", (rid, fmt, data))
    return rid


def report_state(conn, rid):
    """(report_data as text or None, minio_path or None)."""
    with conn.cursor() as cur:
        cur.execute("SELECT report_data::text, minio_path FROM reports WHERE report_id = %s", (rid,))
        return cur.fetchone()


def s3_backend_client(endpoint=None, verify=None):
    """boto3 client talking straight to the S3 server (not through the front) with its real
    credentials: the oracle. endpoint/verify: e.g. RGW's https port and its CA file."""
    import boto3
    from botocore.config import Config
    return boto3.client("s3", endpoint_url=endpoint or env("S3_BACKEND_ENDPOINT"),
                        aws_access_key_id=env("S3_BACKEND_ACCESS_KEY"),
                        aws_secret_access_key=env("S3_BACKEND_SECRET_KEY"), region_name=env("S3_REGION"),
                        verify=verify,
                        config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                                      retries={"max_attempts": 1}))


def rgw_only():
    """Skips a test that needs the Ceph RGW backend (its https ports, STS, KMS)."""
    if os.environ.get("S3_BACKEND") != "rgw":
        pytest.skip("needs the rgw backend (test/harness/s3stack.sh with S3_BACKEND=rgw)")


def session_credentials():
    """(access key, secret, session token) that the S3 server accepts: temporary
    credentials from RGW's STS (GetSessionToken), or, for moto and s3rver, where only
    the front checks tokens, the stack's keys with a made-up token."""
    if os.environ.get("S3_BACKEND") != "rgw":
        return env("S3_ACCESS_KEY"), env("S3_SECRET_KEY"), "tok-123"
    import boto3
    sts = boto3.client("sts", endpoint_url=env("S3_BACKEND_ENDPOINT"), region_name=env("S3_REGION"),
                       aws_access_key_id=env("S3_BACKEND_ACCESS_KEY"),
                       aws_secret_access_key=env("S3_BACKEND_SECRET_KEY"))
    c = sts.get_session_token(DurationSeconds=3600)["Credentials"]
    return c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"]


def server_log_path():
    return os.path.join(env("PGHOST"), "server.log")


def object_key(rid, fmt="json"):
    return "reports/%s/report.%s" % (rid, fmt)


def object_path(rid, fmt="json"):
    return "s3://%s/%s" % (env("S3_BUCKET"), object_key(rid, fmt))


def key_regex(rid, fmt="json"):
    """path_regex for fault rules that only hit this report's object."""
    return re.escape("/%s/%s" % (env("S3_BUCKET"), object_key(rid, fmt)))


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


def jsonb_text(conn, data):
    """The canonical jsonb text of a JSON document (what report_data::text gives)."""
    with conn.cursor() as cur:
        cur.execute("SELECT %s::jsonb::text", (data,))
        return cur.fetchone()[0]


def query_error(conn, sql, args=None):
    """Runs sql, which must fail; returns the psycopg2 error."""
    with conn.cursor() as cur:
        try:
            cur.execute(sql, args)
        except psycopg2.Error as e:
            return e
    pytest.fail("expected %r to fail, it returned normally" % sql)


def offload(conn, rid):
    with conn.cursor() as cur:
        cur.execute("SELECT report_offload(%s)", (rid,))
        return cur.fetchone()[0]


def fetch_text(conn, rid):
    with conn.cursor() as cur:
        cur.execute("SELECT report_fetch(%s)::text", (rid,))
        return cur.fetchone()[0]


def error_text(e):
    """Everything an error tells the client: message, detail, hint, context."""
    d = e.diag
    return "\n".join(x for x in (d.message_primary, d.message_detail, d.message_hint, d.context) if x)


def front_requests(method, rid, fmt="json"):
    """Lines of the S3 front's request log for this report's object and method."""
    path = os.path.join(env("S3_STACK_DIR"), "s3front.log")
    pat = re.compile(r" %s /%s(\?\S*)? -> \d+$" % (method, re.escape("%s/%s" % (env("S3_BUCKET"), object_key(rid, fmt)))))
    with open(path, encoding="utf-8", errors="replace") as f:
        return [line.rstrip("\n") for line in f if pat.search(line.rstrip("\n"))]


def read_server_log(offset=0):
    with open(server_log_path(), "rb") as f:
        f.seek(offset)
        return f.read().decode("utf-8", errors="replace")


def server_log_size():
    return os.path.getsize(server_log_path())


def reload_conf_and_wait(name, expected, timeout=10):
    """pg_reload_conf(), then waits until new sessions see name = expected.

    Credentials only ever show as a mask ('********' when set, '' when not),
    so for them the wait is on the mask, after a pause that lets the
    postmaster finish the reload."""
    if name in ("reportstore.access_key_id", "reportstore.secret_access_key", "reportstore.session_token"):
        expected = "********" if expected else ""
        time.sleep(0.5)
    conn = connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_reload_conf()")
    finally:
        conn.close()
    deadline = time.time() + timeout
    value = None
    while time.time() < deadline:
        conn = connect()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT current_setting(%s)", (name,))
                value = cur.fetchone()[0]
        finally:
            conn.close()
        if value == expected:
            return
        time.sleep(0.1)
    pytest.fail("after pg_reload_conf(), %s is %r, not %r" % (name, value, expected))
