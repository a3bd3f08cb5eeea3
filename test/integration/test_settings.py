"""Settings that take effect through ALTER SYSTEM + pg_reload_conf(), the
session token, and credentials never showing up in errors or the server log.

The credentials test does not put the stack's real secret ($S3_SECRET_KEY)
into postgresql.auto.conf: PostgreSQL logs every reloaded value ("parameter
... changed to ..."), see test_reload_does_not_log_secret_settings. Instead the
front is switched to the stack's second key pair ($S3_ALT_ACCESS_KEY, which the
S3 server knows too), which also proves the settings are used (the
environment's credentials are then wrong).
"""
import os
import secrets
import time

import pytest

from conftest import (connect, env, error_text, fetch_text, jsonb_text, new_report, object_path, offload,
                      query_error, read_server_log, reload_conf_and_wait, report_json, report_state,
                      session_credentials)

GUC_KEY_ID = os.environ.get("S3_ALT_ACCESS_KEY", "")
GUC_SECRET = os.environ.get("S3_ALT_SECRET_KEY", "")
WRONG_SECRET = "wrong-secret-" + secrets.token_hex(8)
TOKENS = []  # the session tokens the tests used
SECRET_SETTINGS = ("reportstore.access_key_id", "reportstore.secret_access_key", "reportstore.session_token",
                   "reportstore.bucket")

# every error text the tests received, checked for credentials at the end
SEEN_ERRORS = []


def alter_system(sql, args=None):
    conn = connect()
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
    finally:
        conn.close()


@pytest.fixture
def clean_system_settings():
    yield
    for name in SECRET_SETTINGS:
        alter_system("ALTER SYSTEM RESET %s" % name)
    reload_conf_and_wait("reportstore.access_key_id", "")
    reload_conf_and_wait("reportstore.bucket", env("S3_BUCKET"))


def fresh_report(conn, size=500):
    data = report_json(size)
    rid = new_report(conn, data)
    return rid, jsonb_text(conn, data)


def offload_error(conn, rid, original):
    e = query_error(conn, "SELECT report_offload(%s)", (rid,))
    SEEN_ERRORS.append(error_text(e))
    assert report_state(conn, rid) == (original, None), "a failed offload changed the row"
    return e


def assert_works(conn, rid, original, bucket=None):
    path = offload(conn, rid)
    assert path == object_path(rid) if bucket is None else path.startswith("s3://%s/" % bucket)
    assert report_state(conn, rid) == (None, path)
    assert fetch_text(conn, rid) == original


def test_credentials_from_settings(dbname, s3, clean_system_settings):
    # the front now accepts only a key pair the server's environment does not have
    s3.credentials(access_key=GUC_KEY_ID, secret_key=GUC_SECRET)
    conn = connect(dbname)
    try:
        rid, original = fresh_report(conn)
        with s3.expecting_failures():
            e = offload_error(conn, rid, original)
        assert e.pgcode == "28000", error_text(e)
    finally:
        conn.close()

    # right credentials through ALTER SYSTEM + reload: new sessions use them
    alter_system("ALTER SYSTEM SET reportstore.access_key_id = %s", (GUC_KEY_ID,))
    alter_system("ALTER SYSTEM SET reportstore.secret_access_key = %s", (GUC_SECRET,))
    reload_conf_and_wait("reportstore.access_key_id", GUC_KEY_ID)
    reload_conf_and_wait("reportstore.secret_access_key", GUC_SECRET)
    conn = connect(dbname)
    try:
        assert_works(conn, rid, original)
    finally:
        conn.close()

    # a wrong secret (decoy key id: the front knows it, nobody knows its secret)
    alter_system("ALTER SYSTEM SET reportstore.access_key_id = 'rstest-decoy-key'")
    alter_system("ALTER SYSTEM SET reportstore.secret_access_key = %s", (WRONG_SECRET,))
    reload_conf_and_wait("reportstore.access_key_id", "rstest-decoy-key")
    conn = connect(dbname)
    try:
        rid2, original2 = fresh_report(conn)
        e = offload_error(conn, rid2, original2)
        assert e.pgcode == "28000", error_text(e)
        assert e.diag.severity == "ERROR"
        assert object_path(rid2) in e.diag.message_primary
        hint = e.diag.message_hint or ""
        assert "reportstore.access_key_id" in hint and "reportstore.secret_access_key" in hint, hint
        assert WRONG_SECRET not in error_text(e)
    finally:
        conn.close()

    # RESET + reload: back to the environment's credentials (front restored too)
    s3.credentials(restore=True)
    alter_system("ALTER SYSTEM RESET reportstore.access_key_id")
    alter_system("ALTER SYSTEM RESET reportstore.secret_access_key")
    reload_conf_and_wait("reportstore.access_key_id", "")
    reload_conf_and_wait("reportstore.secret_access_key", "")
    conn = connect(dbname)
    try:
        assert_works(conn, rid2, original2)
    finally:
        conn.close()


def test_session_token(db, s3):
    """Temporary credentials: key, secret and session token (from RGW's STS)."""
    key, secret, token = session_credentials()
    TOKENS.append(token)
    s3.credentials(access_key=key, secret_key=secret, session_token=token)
    with db.cursor() as cur:
        cur.execute("SET reportstore.access_key_id = %s", (key,))
        cur.execute("SET reportstore.secret_access_key = %s", (secret,))
    try:
        rid, original = fresh_report(db)
        with s3.expecting_failures():
            e = offload_error(db, rid, original)
        assert e.pgcode in ("28000", "42501"), error_text(e)
        assert token not in error_text(e) and secret not in error_text(e)
        assert s3.stats()["expected_failures"], "the front did not reject the token-less request"

        with db.cursor() as cur:
            cur.execute("SET reportstore.session_token = %s", (token,))
        assert_works(db, rid, original)
    finally:
        with db.cursor() as cur:
            cur.execute("RESET reportstore.session_token")
            cur.execute("RESET reportstore.access_key_id")
            cur.execute("RESET reportstore.secret_access_key")


def test_bucket_setting_takes_effect_on_reload(dbname, s3, clean_system_settings):
    alter_system("ALTER SYSTEM SET reportstore.bucket = 'no-such-bucket'")
    reload_conf_and_wait("reportstore.bucket", "no-such-bucket")
    conn = connect(dbname)
    try:
        rid, original = fresh_report(conn)
        e = offload_error(conn, rid, original)
        assert e.pgcode == "42704", error_text(e)
        assert "s3://no-such-bucket/reports/%s/report.json" % rid in e.diag.message_primary
        assert "bucket" in (e.diag.message_hint or "").lower(), error_text(e)
    finally:
        conn.close()

    alter_system("ALTER SYSTEM RESET reportstore.bucket")
    reload_conf_and_wait("reportstore.bucket", env("S3_BUCKET"))
    conn = connect(dbname)
    try:
        assert_works(conn, rid, original)
    finally:
        conn.close()


def test_no_credentials_in_errors_or_server_log():
    assert SEEN_ERRORS, "run with the rest of the module: it checks the errors the other tests received"
    for text in SEEN_ERRORS:
        for secret in [env("S3_SECRET_KEY"), GUC_SECRET, WRONG_SECRET] + TOKENS:
            assert secret not in text, "an error message contains a credential:\n" + text
    time.sleep(0.2)
    log = read_server_log()
    for secret in [env("S3_SECRET_KEY")] + TOKENS:
        assert secret not in log, "the server log contains a credential (%s...)" % secret[:6]


def test_reload_does_not_log_secret_settings(clean_system_settings):
    marker = "rstest-reload-marker-" + secrets.token_hex(8)
    start = os.path.getsize(os.path.join(env("PGHOST"), "server.log"))
    alter_system("ALTER SYSTEM SET reportstore.secret_access_key = %s", (marker,))
    reload_conf_and_wait("reportstore.secret_access_key", marker)
    time.sleep(0.5)
    assert marker not in read_server_log(start), "the secret access key was logged on reload"
