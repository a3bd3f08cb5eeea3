"""Fixtures for the integration tests.

test/run_all.sh starts PostgreSQL (PGHOST/PGPORT/PGUSER) and the S3 stack
(S3_* variables from test/harness/s3stack.sh) and runs pytest with them in
the environment. Each test module gets its own database with the seed's schema
and the extension installed.
"""
import json
import os
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
    with connect() as admin:
        with admin.cursor() as cur:
            cur.execute("DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)
            cur.execute("CREATE DATABASE %s" % name)
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


def s3_backend_client():
    """boto3 client talking straight to the backend (no signature front): the oracle."""
    import boto3
    from botocore.config import Config
    return boto3.client("s3", endpoint_url=env("S3_BACKEND_ENDPOINT"), aws_access_key_id="S3RVER",
                        aws_secret_access_key="S3RVER", region_name=env("S3_REGION"),
                        config=Config(signature_version="s3v4", retries={"max_attempts": 1}))


def server_log_path():
    return os.path.join(env("PGHOST"), "server.log")
