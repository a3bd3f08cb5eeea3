"""Attacks on reportstore, written as a hostile database user would write them.

Each test runs an attack that once worked, or a variant, and asserts that it
fails and that no role gained rights:
* hostile operators and functions in the caller's search_path, pg_temp
  shadowing, against every SQL-callable function;
* the table owner's trigger, CHECK constraint and index expression, run by
  run_once() and by the background worker (they must run as the owner);
* minio_path aimed at another bucket or at another tenant's deleted report;
* an object deleted by orphans() although a point-in-time restore needs it;
* credentials in the endpoint, or per database/role.
"""
import contextlib
import os
import shutil
import subprocess
import tempfile
import time
import uuid

import psycopg2
import pytest

from conftest import (ROOT, Cluster, connect, env, error_text, fetch_text, free_port, jsonb_text, object_key,
                      object_path, offload, query_error, report_json, report_state, rows, run_sql_file,
                      s3_backend_client, server_log_path, value, wait_until)

ASSESSMENT = "a0000000-0000-4000-8000-000000000001"
SUFFIX = uuid.uuid4().hex[:8]
OWNER = "sec_owner_" + SUFFIX        # owns the reports table
READER = "sec_reader_" + SUFFIX      # SELECT on reports, its own schema
WRITER = "sec_writer_" + SUFFIX      # INSERT/UPDATE/SELECT on reports
TENANT_A = "sec_tenant_a_" + SUFFIX  # RLS tenants
TENANT_B = "sec_tenant_b_" + SUFFIX
ADMIN = "sec_admin_" + SUFFIX        # reportstore_admin exactly as the README grants it
ROLES = [OWNER, READER, WRITER, TENANT_A, TENANT_B, ADMIN]

# The attacker's payload: escalate if ever run by a superuser, and leave a
# trace of every call and of who ran it.
PAYLOAD = """
CREATE TABLE {schema}.hits (who name, super boolean, what text);
GRANT ALL ON {schema}.hits TO PUBLIC;
CREATE FUNCTION {schema}.payload(what text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    s boolean := (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user);
BEGIN
    INSERT INTO {schema}.hits VALUES (current_user, s, what);
    IF s THEN
        EXECUTE pg_catalog.format('ALTER ROLE %I SUPERUSER', '{beneficiary}');
    END IF;
    RETURN true;
END $$;
GRANT EXECUTE ON FUNCTION {schema}.payload(text) TO PUBLIC;
"""


def is_superuser(conn, role):
    return value(conn, "SELECT rolsuper FROM pg_roles WHERE rolname = %s", (role,))


def as_role(dbname, role):
    conn = psycopg2.connect(host=env("PGHOST"), port=env("PGPORT"), user=role, dbname=dbname)
    conn.autocommit = True
    return conn


@pytest.fixture(scope="module")
def sec(dbname):
    """The module's database with roles, grants, and the reports table owned by OWNER."""
    admin = connect(dbname)
    with admin.cursor() as cur:
        for role in ROLES:
            cur.execute("CREATE ROLE %s LOGIN" % role)
        cur.execute("GRANT CREATE ON DATABASE %s TO %s, %s" % (dbname, READER, OWNER))
        cur.execute("GRANT CREATE ON SCHEMA public TO %s" % OWNER)
        cur.execute("ALTER TABLE reports OWNER TO %s" % OWNER)
        cur.execute("ALTER TABLE assessments OWNER TO %s" % OWNER)
        cur.execute("GRANT USAGE ON SCHEMA public TO PUBLIC")
        cur.execute("GRANT SELECT ON reports TO %s" % READER)
        cur.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON reports TO %s, %s, %s" % (WRITER, TENANT_A, TENANT_B))
        cur.execute("GRANT SELECT ON assessments TO %s, %s, %s" % (WRITER, TENANT_A, TENANT_B))
        # The README's operator role, word for word.
        cur.execute("GRANT USAGE ON SCHEMA reportstore TO %s" % ADMIN)
        cur.execute("GRANT SELECT ON ALL TABLES IN SCHEMA reportstore TO %s" % ADMIN)
        cur.execute("GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA reportstore TO %s" % ADMIN)
    yield admin
    with admin.cursor() as cur:
        cur.execute("ALTER TABLE reports OWNER TO postgres")
        cur.execute("ALTER TABLE assessments OWNER TO postgres")
        for role in ROLES:
            cur.execute("DROP OWNED BY %s" % role)
    admin.close()
    drop = connect()
    with drop.cursor() as cur:
        for role in ROLES:
            cur.execute("DROP ROLE IF EXISTS %s" % role)
    drop.close()


def insert_report(conn, text, rid=None, fmt="json"):
    rid = rid or str(uuid.uuid4())
    with conn.cursor() as cur:
        cur.execute("INSERT INTO reports (report_id, assessment_id, report_type, title, format, report_data, status, "
                    "generated_at) VALUES (%s, %s, 'compliance', 'sec', %s, %s::jsonb, 'completed', now())",
                    (rid, ASSESSMENT, fmt, text))
    return rid


def offloaded(conn, seed):
    text = report_json(500, seed)
    rid = insert_report(conn, text)
    assert offload(conn, rid) == object_path(rid)
    return rid, jsonb_text(conn, text)


@contextlib.contextmanager
def attacker_schema(dbname, role, schema):
    """role's own schema holding the payload, hostile operators on uuid, text
    and varchar, and hostile look-alikes of functions reportstore calls."""
    conn = as_role(dbname, role)
    with conn.cursor() as cur:
        cur.execute("CREATE SCHEMA %s" % schema)
        cur.execute(PAYLOAD.format(schema=schema, beneficiary=role))
        for left, right in (("uuid", "uuid"), ("text", "text"), ("varchar", "text"), ("varchar", "varchar")):
            fn = "%s.eq_%s_%s" % (schema, left, right)
            cur.execute("CREATE FUNCTION %s(a %s, b %s) RETURNS boolean LANGUAGE sql AS "
                        "$$ SELECT %s.payload('operator =(%s, %s)') AND a::text OPERATOR(pg_catalog.=) b::text $$"
                        % (fn, left, right, schema, left, right))
            cur.execute("CREATE OPERATOR %s.= (LEFTARG = %s, RIGHTARG = %s, FUNCTION = %s)" % (schema, left, right, fn))
        for name, args in (("lower", "text"), ("now", ""), ("format", "text, text"), ("count", "text"),
                           ("unnest", "text[]"), ("pg_column_size", "jsonb")):
            cur.execute("CREATE FUNCTION %s.%s(%s) RETURNS text LANGUAGE sql AS $$ SELECT %s.payload('%s')::text $$"
                        % (schema, name, ", ".join("a%d %s" % (i, t.strip()) for i, t in enumerate(args.split(","))
                                                   if t.strip()), schema, name))
    try:
        yield conn
    finally:
        with conn.cursor() as cur:
            cur.execute("DROP SCHEMA %s CASCADE" % schema)
        conn.close()


def hits(conn, schema):
    return rows(conn, "SELECT who, super, what FROM %s.hits" % schema)


# 1. Hostile search_path ------------------------------------------------------------------

def test_hostile_operators_in_search_path_never_run(sec, dbname):
    rid, text = offloaded(sec, 1)
    in_db = insert_report(sec, report_json(300, 2))
    with attacker_schema(dbname, READER, "evil_" + SUFFIX) as evil:
        schema = "evil_" + SUFFIX
        with evil.cursor() as cur:
            # the attacker's own query resolves its operator: the trap works
            cur.execute("SET search_path = %s, pg_catalog, public" % schema)
            cur.execute("SELECT count(*) FROM reports WHERE report_id = %s::uuid", (rid,))
        assert [h[2] for h in hits(evil, schema)] == ["operator =(uuid, uuid)"]
        with evil.cursor() as cur:
            cur.execute("TRUNCATE %s.hits" % schema)
        for sql in ("SELECT report_fetch(report_id)::text FROM public.reports "
                    "WHERE report_id OPERATOR(pg_catalog.=) '%s'" % rid,
                    "SELECT report_fetch('%s')::text" % rid, "SELECT report_fetch('%s')::text" % in_db,
                    "SELECT report_url('%s')" % rid, "SELECT report_url('%s', '1 hour')" % in_db):
            with evil.cursor() as cur:
                cur.execute(sql)
                result = cur.fetchone()[0]
            assert result is None or result
        assert fetch_text(evil, rid) == text
        # The attacker may not offload (no UPDATE privilege); the refusal runs nothing of theirs either.
        e = query_error(evil, "SELECT report_offload(%s)", (in_db,))
        assert e.pgcode == "42501", error_text(e)
        assert hits(evil, schema) == [], "the attacker's code ran inside reportstore"
        assert not is_superuser(sec, READER)


def test_pg_temp_shadowing_is_ignored(sec, dbname):
    rid, text = offloaded(sec, 3)
    conn = as_role(dbname, WRITER)
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TEMP TABLE reports (report_id uuid, report_data jsonb, minio_path text, format text)")
            cur.execute("INSERT INTO pg_temp.reports VALUES (%s, '{\"forged\": true}', NULL, 'json')", (rid,))
            cur.execute("CREATE TEMP TABLE objects (report_id uuid, path text, size bigint, sha256 text, "
                        "version_id text)")
            cur.execute("SET search_path = pg_temp, public, pg_catalog")
        assert fetch_text(conn, rid) == text
        with conn.cursor() as cur:
            cur.execute("SELECT report_url(%s)", (rid,))
            assert object_key(rid) in cur.fetchone()[0]
    finally:
        conn.close()


def test_dba_functions_under_hostile_search_path(sec, dbname):
    to_recall, text = offloaded(sec, 4)
    pending = insert_report(sec, report_json(400, 5))
    schema = "evil_admin_" + SUFFIX
    with attacker_schema(dbname, READER, schema) as evil:
        with evil.cursor() as cur:
            cur.execute("GRANT USAGE ON SCHEMA %s TO %s" % (schema, ADMIN))
            cur.execute("GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA %s TO PUBLIC" % schema)
        dba = as_role(dbname, ADMIN)
        try:
            with dba.cursor() as cur:
                cur.execute("SET search_path = %s, pg_temp, pg_catalog, public" % schema)
                for sql in ("SELECT * FROM reportstore.status", "SELECT * FROM reportstore.stats()",
                            "SELECT * FROM reportstore.worker_info()", "SELECT * FROM reportstore.progress",
                            "SELECT * FROM reportstore.verify()", "SELECT * FROM reportstore.verify(true)",
                            "SELECT * FROM reportstore.orphans()", "SELECT reportstore.run_once()",
                            "SELECT * FROM reportstore.phase3_report()", "SELECT * FROM reportstore.lifecycle()",
                            "SELECT reportstore.recall('%s')" % to_recall, "SELECT reportstore.release_kept_data()",
                            "SELECT reportstore.recall_many(ARRAY['%s'::uuid])" % to_recall):
                    cur.execute(sql)
                    cur.fetchall()
        finally:
            dba.close()
        assert hits(evil, schema) == []
        assert not is_superuser(sec, READER)
    assert report_state(sec, pending)[1] == object_path(pending)  # run_once offloaded it
    assert report_state(sec, to_recall) == (text, None)  # recall brought it back


# 2. The table owner's code runs as the owner --------------------------------------------

OWNER_TRAPS = """
CREATE SCHEMA owner_traps;
{payload}
CREATE FUNCTION owner_traps.guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM owner_traps.payload('trigger');
    RETURN NEW;
END $$;
CREATE TRIGGER zz_owner_trap BEFORE UPDATE ON public.reports FOR EACH ROW EXECUTE FUNCTION owner_traps.guard();
CREATE FUNCTION owner_traps.ok(uuid) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN owner_traps.payload('check or index');
END $$;
ALTER TABLE public.reports ADD CONSTRAINT owner_trap_check CHECK (owner_traps.ok(report_id)) NOT VALID;
CREATE INDEX owner_trap_index ON public.reports (owner_traps.ok(report_id));
"""


@contextlib.contextmanager
def owner_traps(conn, beneficiary):
    with conn.cursor() as cur:
        cur.execute(OWNER_TRAPS.format(payload=PAYLOAD.format(schema="owner_traps", beneficiary=beneficiary)))
    try:
        yield
    finally:
        with conn.cursor() as cur:
            cur.execute("DROP SCHEMA owner_traps CASCADE")


def test_owner_code_runs_as_owner_in_run_once_and_recall(sec, dbname):
    owner = as_role(dbname, OWNER)
    try:
        with owner_traps(owner, OWNER):
            rid = insert_report(owner, report_json(500, 6))
            with sec.cursor() as cur:  # a superuser runs the DBA functions
                cur.execute("SELECT reportstore.run_once()")
                cur.execute("SELECT reportstore.recall(%s)", (rid,))
            assert report_state(sec, rid)[1] is None
            calls = hits(owner, "owner_traps")
            assert calls and all(who == OWNER and not superuser for who, superuser, _ in calls), calls
            assert {"trigger", "check or index"} <= {what for _, _, what in calls}
        assert not is_superuser(sec, OWNER)
    finally:
        owner.close()


# 3. minio_path names only the report's own key in an allowed bucket ---------------------

def test_writer_cannot_point_a_row_at_another_bucket(sec, dbname):
    conn = as_role(dbname, WRITER)
    try:
        for bucket in ("otherbucket", "a..b", "127.0.0.1", env("S3_BUCKET") + "x"):
            rid = str(uuid.uuid4())
            e = query_error(conn, "INSERT INTO reports (report_id, assessment_id, report_type, title, format, "
                                  "report_data, minio_path, status, generated_at) VALUES (%s, %s, 'compliance', 'x', "
                                  "'json', NULL, %s, 'completed', now())",
                            (rid, ASSESSMENT, "s3://%s/reports/%s/report.json" % (bucket, rid)))
            assert e.pgcode == "23514", error_text(e)
        # The right bucket, but set by hand: only reportstore or the owner may.
        rid = str(uuid.uuid4())
        e = query_error(conn, "INSERT INTO reports (report_id, assessment_id, report_type, title, format, "
                              "report_data, minio_path, status, generated_at) VALUES (%s, %s, 'compliance', 'x', "
                              "'json', NULL, %s, 'completed', now())", (rid, ASSESSMENT, object_path(rid)))
        assert e.pgcode == "42501", error_text(e)
        victim, _ = offloaded(sec, 7)
        mine = insert_report(conn, report_json(200, 8))
        e = query_error(conn, "UPDATE reports SET report_data = NULL, minio_path = %s WHERE report_id = %s",
                        (object_path(victim), mine))
        assert e.pgcode == "23514", error_text(e)
    finally:
        conn.close()


def test_rows_written_around_the_guard_are_not_followed(sec, dbname):
    """A row pointing elsewhere (written with the trigger disabled, or before
    1.2) makes report_fetch and report_url refuse, not read another object."""
    rid, _ = offloaded(sec, 9)
    other = "s3://otherbucket/reports/%s/report.json" % rid
    with sec.cursor() as cur:
        cur.execute("ALTER TABLE reports DISABLE TRIGGER reportstore_guard")
        cur.execute("UPDATE reports SET minio_path = %s WHERE report_id = %s", (other, rid))
        cur.execute("ALTER TABLE reports ENABLE TRIGGER reportstore_guard")
    try:
        for sql in ("SELECT report_fetch(%s)", "SELECT report_url(%s)"):
            e = query_error(sec, sql, (rid,))
            assert e.pgcode == "22023" and "allowed_buckets" in error_text(e), error_text(e)
        problems = rows(sec, "SELECT problem FROM reportstore.verify() WHERE report_id = %s", (rid,))
        assert problems == [("invalid path",)]
    finally:
        with sec.cursor() as cur:
            cur.execute("ALTER TABLE reports DISABLE TRIGGER reportstore_guard")
            cur.execute("UPDATE reports SET minio_path = %s WHERE report_id = %s", (object_path(rid), rid))
            cur.execute("ALTER TABLE reports ENABLE TRIGGER reportstore_guard")


# 4. Another tenant's deleted report ------------------------------------------------------

def test_tenant_cannot_claim_a_deleted_report_of_another_tenant(sec, dbname):
    with sec.cursor() as cur:
        cur.execute("ALTER TABLE reports ADD COLUMN IF NOT EXISTS tenant name DEFAULT current_user")
        cur.execute("ALTER TABLE reports ENABLE ROW LEVEL SECURITY")
        cur.execute("CREATE POLICY tenant_isolation ON reports USING (tenant = current_user)")
    victim = as_role(dbname, TENANT_A)
    tenant = as_role(dbname, TENANT_B)
    try:
        text = report_json(800, 10)
        rid = insert_report(victim, text)
        assert offload(victim, rid) == object_path(rid)
        # RLS hides it from the other tenant.
        e = query_error(tenant, "SELECT report_fetch(%s)", (rid,))
        assert e.pgcode == "P0002", error_text(e)
        with victim.cursor() as cur:
            cur.execute("DELETE FROM reports WHERE report_id = %s", (rid,))
        # Same id, no data, the victim's path: refused.
        e = query_error(tenant, "INSERT INTO reports (report_id, assessment_id, report_type, title, format, "
                                "report_data, minio_path, status, generated_at) VALUES (%s, %s, 'compliance', 'x', "
                                "'json', NULL, %s, 'completed', now())", (rid, ASSESSMENT, object_path(rid)))
        assert e.pgcode == "42501", error_text(e)
        # Even the owner may not claim an object queued for deletion.
        owner = as_role(dbname, OWNER)
        try:
            with owner.cursor() as cur:
                cur.execute("SET row_security = off")
            e = query_error(owner, "INSERT INTO reports (report_id, assessment_id, report_type, title, format, "
                                   "report_data, minio_path, status, generated_at) VALUES (%s, %s, 'compliance', 'x', "
                                   "'json', NULL, %s, 'completed', now())", (rid, ASSESSMENT, object_path(rid)))
            assert e.pgcode == "55006", error_text(e)
        finally:
            owner.close()
        assert value(sec, "SELECT count(*) FROM reportstore.delete_queue WHERE path = %s AND delete_object",
                     (object_path(rid),)) == 1
        e = query_error(tenant, "SELECT report_fetch(%s)", (rid,))
        assert e.pgcode == "P0002", error_text(e)
    finally:
        victim.close()
        tenant.close()
        with sec.cursor() as cur:
            cur.execute("DROP POLICY tenant_isolation ON reports")
            cur.execute("ALTER TABLE reports DISABLE ROW LEVEL SECURITY")
            cur.execute("ALTER TABLE reports DROP COLUMN tenant")


# 5. Point-in-time restore ----------------------------------------------------------------

def test_recalled_object_survives_orphans_for_a_restore(sec, dbname):
    rid, text = offloaded(sec, 11)
    base = os.path.dirname(os.path.abspath(env("PGHOST")))
    tmp = tempfile.mkdtemp(prefix="sec-dump.", dir=base if os.access(base, os.W_OK) else None)
    os.chmod(tmp, 0o777)
    dump = os.path.join(tmp, "before_recall.sql")
    target = dbname + "_pitr"

    def as_postgres(cmd):
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--"] + cmd
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        return r

    as_postgres(["pg_dump", "-h", env("PGHOST"), "-p", env("PGPORT"), "-U", "postgres", "-d", dbname, "-f", dump])
    assert value(sec, "SELECT reportstore.recall(%s)", (rid,)) is True
    # recall() keeps the object (delete_object => false), and says so in the queue.
    assert rows(sec, "SELECT delete_object FROM reportstore.delete_queue WHERE path = %s", (object_path(rid),)) == \
        [(False,)]
    actions = rows(sec, "SELECT key, action FROM reportstore.orphans(delete => true, min_age => '0')")
    assert (object_key(rid), "kept: released less than reportstore.delete_delay ago") in actions, actions
    s3_backend_client().head_object(Bucket=env("S3_BUCKET"), Key=object_key(rid))
    # A restore to before the recall still finds the object.
    admin = connect()
    try:
        with admin.cursor() as cur:
            cur.execute("DROP DATABASE IF EXISTS %s WITH (FORCE)" % target)
            cur.execute("CREATE DATABASE %s" % target)
        as_postgres(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", env("PGHOST"), "-p", env("PGPORT"),
                     "-U", "postgres", "-d", target, "-f", dump])
        restored = connect(target)
        try:
            assert report_state(restored, rid) == (None, object_path(rid))
            assert fetch_text(restored, rid) == text
        finally:
            restored.close()
    finally:
        with admin.cursor() as cur:
            cur.execute("DROP DATABASE IF EXISTS %s WITH (FORCE)" % target)
        admin.close()
        shutil.rmtree(tmp, ignore_errors=True)


# 6. Credentials ---------------------------------------------------------------------------

def test_endpoint_with_credentials_is_refused_and_never_logged(sec):
    secret = "SK" + uuid.uuid4().hex
    offset = os.path.getsize(server_log_path())
    e = query_error(sec, "SET reportstore.endpoint = %s", ("http://AKID:%s@127.0.0.1:9000" % secret,))
    assert e.pgcode == "22023" and secret not in error_text(e), error_text(e)
    e = query_error(sec, "ALTER SYSTEM SET reportstore.endpoint = %s", ("http://AKID:%s@127.0.0.1:9000" % secret,))
    assert secret not in error_text(e)
    # Written straight into postgresql.conf, it is refused at reload, unechoed.
    conf = os.path.join(env("PGHOST"), "data", "postgresql.conf")
    with open(conf) as f:
        original = f.read()
    try:
        with open(conf, "a") as f:
            f.write("\nreportstore.endpoint = 'http://AKID:%s@127.0.0.1:9000'\n" % secret)
        with sec.cursor() as cur:
            cur.execute("SELECT pg_reload_conf()")
        deadline = time.time() + 10
        while time.time() < deadline:
            with open(server_log_path(), "rb") as f:
                f.seek(offset)
                logged = f.read().decode("utf-8", "replace")
            if "reportstore.endpoint" in logged:
                break
            time.sleep(0.1)
        assert "the URL contains user information" in logged, logged
        assert secret not in logged
    finally:
        with open(conf, "w") as f:
            f.write(original)
        with sec.cursor() as cur:
            cur.execute("SELECT pg_reload_conf()")
    assert secret not in value(sec, "SELECT current_setting('reportstore.endpoint')")


def test_credentials_refused_per_database_and_role(sec, dbname):
    secret = "hunter" + uuid.uuid4().hex
    for sql in ("ALTER DATABASE %s SET reportstore.secret_access_key = '%s'" % (dbname, secret),
                "ALTER ROLE %s SET reportstore.access_key_id = '%s'" % (WRITER, secret),
                "ALTER ROLE %s IN DATABASE %s SET reportstore.session_token = '%s'" % (WRITER, dbname, secret)):
        e = query_error(sec, sql)
        assert e.pgcode == "42501" and secret not in error_text(e), error_text(e)
    reader = as_role(dbname, READER)
    try:
        assert value(reader, "SELECT count(*) FROM pg_db_role_setting WHERE setconfig::text LIKE %s",
                     ("%" + secret + "%",)) == 0
    finally:
        reader.close()


# 7. The background worker runs the owner's code as the owner ----------------------------

def test_worker_runs_owner_code_as_owner():
    base = os.path.dirname(os.path.abspath(env("PGHOST")))
    top = tempfile.mkdtemp(prefix="sec-worker.", dir=base if os.access(base, os.W_OK) else None)
    os.chmod(top, 0o755)
    directory = os.path.join(top, "pg")
    port = free_port()
    pgcluster = os.path.join(ROOT, "test", "pgcluster.sh")
    conf = ["reportstore.database = 'sec_worker'", "reportstore.worker_enabled = on", "reportstore.naptime = '1h'"]
    started = subprocess.run([pgcluster, "start", directory, str(port)] + conf, capture_output=True, text=True,
                             timeout=120)
    assert started.returncode == 0, started.stderr
    try:
        cluster = Cluster(directory, port)
        cluster.query("CREATE DATABASE sec_worker", dbname="postgres")
        cluster.query("CREATE ROLE %s LOGIN" % OWNER, dbname="postgres")
        conn = cluster.connect("sec_worker")
        run_sql_file(conn, "test/fixtures/seed_schema_before.sql")
        with conn.cursor() as cur:
            cur.execute("CREATE EXTENSION reportstore")
            cur.execute("INSERT INTO assessments VALUES (%s, 'sec')", (ASSESSMENT,))
            cur.execute("ALTER TABLE reports OWNER TO %s" % OWNER)
            cur.execute("GRANT CREATE ON DATABASE sec_worker TO %s" % OWNER)
            cur.execute("GRANT CREATE ON SCHEMA public TO %s" % OWNER)
        conn.close()
        owner = psycopg2.connect(host=directory, port=port, user=OWNER, dbname="sec_worker")
        owner.autocommit = True
        try:
            with owner_traps(owner, OWNER):
                rid = insert_report(owner, report_json(700, 12))
                wait_until(lambda: cluster.query("SELECT minio_path IS NOT NULL FROM reports WHERE report_id = %s",
                                                 (rid,), dbname="sec_worker")[0][0], 30,
                           "the worker to offload the report")
                calls = hits(owner, "owner_traps")
                assert calls and all(who == OWNER and not superuser for who, superuser, _ in calls), calls
            assert not cluster.query("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (OWNER,),
                                     dbname="sec_worker")[0][0]
        finally:
            owner.close()
    finally:
        subprocess.run([pgcluster, "stop", directory], capture_output=True, timeout=120)
        shutil.rmtree(top, ignore_errors=True)
