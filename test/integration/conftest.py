"""Fixtures for the integration tests.

test/run_all.sh starts PostgreSQL (PGHOST/PGPORT/PGUSER) and the S3 stack
(S3_* variables from test/harness/s3stack.sh) and runs pytest with them in
the environment. Each test module gets its own database with the seed's schema
and the extension installed.
"""
import os
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
# The shared test library; the names are re-exported for the test modules (from conftest import ...).
from rstest import (ASSESSMENT, ROOT, Cluster, S3Control, as_postgres, connect, create_report_database,  # noqa: E402,F401
                    dict_row, drop_database, env, error_text, fetch_text, free_port, front_log_lines, insert_reports,
                    jsonb_text, key_regex, new_report, note_secret, object_key, object_path, offload, pg_bindir, query_error,
                    report_json, report_state, rows, run_sql_file, s3_backend_client, scratch_dir, system_settings,
                    value, wait_until)
from rstest import object_requests as front_requests  # noqa: E402,F401


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


@pytest.fixture(scope="module")
def dbname(request):
    name = "it_" + request.module.__name__.split(".")[-1].replace("test_", "")[:40]
    create_report_database(connect, name).close()
    yield name


@pytest.fixture
def db(dbname):
    conn = connect(dbname)
    yield conn
    conn.close()


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
    note_secret(c["SecretAccessKey"], c["SessionToken"])
    return c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"]


def server_log_path():
    return os.path.join(env("PGHOST"), "server.log")


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
        rows(conn, "SELECT pg_reload_conf()")
    finally:
        conn.close()
    deadline = time.time() + timeout
    got = None
    while time.time() < deadline:
        conn = connect()
        try:
            got = value(conn, "SELECT current_setting(%s)", (name,))
        finally:
            conn.close()
        if got == expected:
            return
        time.sleep(0.1)
    pytest.fail("after pg_reload_conf(), %s is %r, not %r" % (name, got, expected))
