"""A hot standby of the test cluster: report_fetch works there (from the
database or from S3), report_offload is refused as read-only.
"""
import os
import shutil
import tempfile
import time

import psycopg2
import pytest

from conftest import (env, free_port, jsonb_text, new_report, object_path, offload, pg_bindir, report_json,
                      report_state)
from conftest import as_postgres as _as_postgres


def as_postgres(*cmd, **kw):
    return _as_postgres(list(cmd), **kw)


@pytest.fixture(scope="module")
def standby(dbname):
    import pwd
    pg = pwd.getpwnam("postgres")
    tmp = tempfile.mkdtemp(prefix="rs-standby-")
    os.chown(tmp, pg.pw_uid, pg.pw_gid)
    os.chmod(tmp, 0o700)
    data = os.path.join(tmp, "standby")
    log = os.path.join(tmp, "standby.log")
    port = free_port()
    bindir = pg_bindir()
    started = False
    try:
        r = as_postgres(os.path.join(bindir, "pg_basebackup"), "-h", env("PGHOST"), "-p", env("PGPORT"),
                        "-U", "postgres", "-D", data, "-R", "-X", "stream", "--no-sync", "--checkpoint=fast",
                        timeout=120)
        assert r.returncode == 0, "pg_basebackup failed: %s" % r.stderr
        with open(os.path.join(data, "postgresql.auto.conf"), "a") as f:
            f.write("port = %d\nunix_socket_directories = '%s'\nhot_standby = on\n" % (port, tmp))
        cmd = ["env", "AWS_ACCESS_KEY_ID=" + env("S3_ACCESS_KEY"), "AWS_SECRET_ACCESS_KEY=" + env("S3_SECRET_KEY"),
               os.path.join(bindir, "pg_ctl"), "-D", data, "-l", log, "-w", "-t", "60", "start"]
        r = as_postgres(*cmd, timeout=90)
        started = True
        if r.returncode != 0:
            with open(log) as f:
                pytest.fail("standby did not start: %s\n%s" % (r.stderr, f.read()[-3000:]))
        yield {"host": tmp, "port": port, "log": log}
    finally:
        if started:
            as_postgres(os.path.join(bindir, "pg_ctl"), "-D", data, "-m", "fast", "-w", "-t", "30", "stop", timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)


def standby_connect(standby, dbname):
    conn = psycopg2.connect(host=standby["host"], port=standby["port"], user="postgres", dbname=dbname)
    conn.autocommit = True
    return conn


def wait_replicated(standby, dbname, rid, expected_state, timeout=30):
    """Polls the standby until it has dbname and the report in expected_state."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            conn = standby_connect(standby, dbname)
        except psycopg2.OperationalError as e:
            last = e
            time.sleep(0.2)
            continue
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_is_in_recovery()")
                assert cur.fetchone()[0] is True, "the standby is not in recovery"
            last = report_state(conn, rid)
            if last == expected_state:
                return conn
        except Exception:
            conn.close()
            raise
        conn.close()
        time.sleep(0.2)
    pytest.fail("the standby did not replicate report %s within %d s (last: %r)" % (rid, timeout, last))


def fetch_on(conn, rid):
    with conn.cursor() as cur:
        cur.execute("SELECT report_fetch(%s)::text", (rid,))
        return cur.fetchone()[0]


def test_standby_fetches_and_refuses_offload(db, dbname, s3, standby):
    # written after the base backup: they reach the standby by streaming
    data_s3 = report_json(4000, seed=1)
    rid_s3 = new_report(db, data_s3)
    text_s3 = jsonb_text(db, data_s3)
    assert offload(db, rid_s3) == object_path(rid_s3)
    data_db = report_json(1000, seed=2)
    rid_db = new_report(db, data_db)
    text_db = jsonb_text(db, data_db)

    wait_replicated(standby, dbname, rid_db, (text_db, None)).close()
    conn = wait_replicated(standby, dbname, rid_s3, (None, object_path(rid_s3)))
    try:
        gets_before = s3.stats()["forwarded"]
        assert fetch_on(conn, rid_s3) == text_s3          # downloaded and verified
        assert s3.stats()["forwarded"] > gets_before, "the standby did not read the object from S3"
        assert fetch_on(conn, rid_db) == text_db          # still in the database

        with conn.cursor() as cur:
            with pytest.raises(psycopg2.Error) as info:
                cur.execute("SELECT report_offload(%s)", (rid_db,))
        assert info.value.pgcode == "25006", "%s: %s" % (info.value.pgcode, info.value.diag.message_primary)
        assert report_state(conn, rid_db) == (text_db, None)
    finally:
        conn.close()
    assert report_state(db, rid_db) == (text_db, None)
