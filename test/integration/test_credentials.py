"""Credentials without long-lived keys (issue 15): STS AssumeRole on Ceph RGW,
web identity and instance roles against local fakes, refresh before expiry in
backends and workers, and secrets that never show.

The module runs a cluster of its own whose environment has no access key but
AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE, as on EKS, with
reportstore.credential_source = 'auto' (so: web identity, from the
environment). Its worker serves database cred_worker; backend tests use
cred_backend. The fake STS and IMDS (fake_aws.py) listen on 127.0.0.1 and
hand out real RGW temporary credentials with a short announced expiry; the
instance metadata endpoint is always set to the fake: nothing is ever sent
to 169.254.169.254 or any other non-loopback address.

Secrets: every temporary secret, session token and web identity token these
tests meet is looked for in the server logs, the front's logs, pg_settings
and pg_stat_activity at the end, and noted with rstest.note_secret
(test/run_all.sh then looks for them in every log and output of the
suite). The one exception is the session token of the presigned-URL test:
a URL signed with temporary credentials carries its token in its query
string by design, so the S3 server's access log has it.
"""
import os
import secrets
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
import uuid

import psycopg2
import psycopg2.extras
import pytest

from conftest import (ROOT, env, note_secret, object_path, query_error, report_json, rgw_only, run_sql_file,
                      system_settings, wait_until)
from fake_aws import FakeImds, FakeSts, RealCredentials

PGCLUSTER = os.path.join(ROOT, "test", "pgcluster.sh")
ASSESSMENT = "a0000000-0000-4000-8000-000000000001"
WORKER_DB = "cred_worker"
BACKEND_DB = "cred_backend"
WEB_ROLE = "arn:aws:iam::123456789012:role/reportstore-web-identity"

# What the end of the module looks for (values, never printed).
SEEN_SECRETS = []        # temporary secrets, session tokens, web identity tokens
URL_TOKENS = []          # session tokens handed out inside presigned URLs, by design


def new_token(label):
    """A JWT-shaped web identity token."""
    token = "eyJhbGciOiJSUzI1NiIsImtpZCI6IiJ9.%s.%s" % (label, secrets.token_urlsafe(24))
    SEEN_SECRETS.append(token)
    return token


class Cluster:
    def __init__(self, directory, port):
        self.dir = directory
        self.port = port
        self.log_path = os.path.join(directory, "server.log")

    def connect(self, dbname, autocommit=True):
        conn = psycopg2.connect(host=self.dir, port=self.port, user="postgres", dbname=dbname)
        conn.autocommit = autocommit
        return conn

    def query(self, sql, args=None, dbname=WORKER_DB):
        conn = self.connect(dbname)
        try:
            with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                cur.execute(sql, args)
                return [dict(r) for r in cur.fetchall()] if cur.description else None
        finally:
            conn.close()

    def row(self, sql, args=None, dbname=WORKER_DB):
        return self.query(sql, args, dbname)[0]

    def status(self, dbname=WORKER_DB):
        return self.row("SELECT * FROM reportstore.status", dbname=dbname)

    def credentials(self, dbname=WORKER_DB):
        return self.row("SELECT * FROM reportstore.credentials_info()", dbname=dbname)

    def read_log(self, offset=0):
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", errors="replace")

    def log_size(self):
        return os.path.getsize(self.log_path)

    def reload_and_wait(self):
        loaded = self.row("SELECT pg_conf_load_time() AS t")["t"]
        time.sleep(0.01)
        self.query("SELECT pg_reload_conf()")
        wait_until(lambda: self.row("SELECT pg_conf_load_time() AS t")["t"] > loaded, 10, "the reload")


def insert_report(conn, data=None, rid=None):
    rid = rid or str(uuid.uuid4())
    with conn.cursor() as cur:
        cur.execute("INSERT INTO reports (report_id, assessment_id, report_type, title, format, report_data, status, "
                    "generated_at) VALUES (%s, %s, 'compliance', 'cred', 'json', %s::jsonb, 'completed', now())",
                    (rid, ASSESSMENT, data or report_json(300, seed=len(rid))))
    return rid


def offload(conn, rid):
    with conn.cursor() as cur:
        cur.execute("SELECT report_offload(%s)", (rid,))
        return cur.fetchone()[0]


def fetch(conn, rid):
    with conn.cursor() as cur:
        cur.execute("SELECT report_fetch(%s)::text", (rid,))
        return cur.fetchone()[0]


def session(cluster, dbname=BACKEND_DB, **settings):
    """A backend session with these settings SET (dots as __)."""
    conn = cluster.connect(dbname)
    with conn.cursor() as cur:
        for name, value in settings.items():
            cur.execute("SELECT set_config(%s, %s, false)", (name.replace("__", "."), value))
    return conn


def full_text(e):
    d = e.diag
    return "\n".join(x for x in (d.message_primary, d.message_detail, d.message_hint) if x)


def wait_idle(cluster):
    wait_until(lambda: cluster.status()["worker_state"] == "idle", 60, "the workers to be idle")


def pending(cluster, ids):
    return cluster.row("SELECT count(*) AS n FROM reports WHERE report_id = ANY(%s::uuid[]) AND minio_path IS NULL",
                       (list(ids),))["n"]


def sts_issued(s3):
    """Temporary credentials STS issued through the front, oldest first."""
    return sorted(s3._call("GET", "/sts_credentials")["credentials"], key=lambda c: c["learned_at"])


def write_token(path, token):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(token + "\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)  # how Kubernetes swaps the projected file: atomically


def verified_with(s3, keys):
    """Requests the front verified with any of these access key ids."""
    counts = s3.stats()["verified_by_key"]
    return sum(counts.get(k, 0) for k in keys)


@pytest.fixture(scope="module")
def world():
    """The fakes, the token file and the cluster."""
    real = RealCredentials(env("S3_ENDPOINT"), env("S3_ACCESS_KEY"), env("S3_SECRET_KEY"), env("S3_REGION"))
    sts = FakeSts(real, WEB_ROLE)
    imds = FakeImds(real)
    base = os.path.dirname(os.path.abspath(env("PGHOST")))
    top = tempfile.mkdtemp(prefix="cred-cluster.", dir=base if os.access(base, os.W_OK) else None)
    os.chmod(top, 0o755)
    token_file = os.path.join(top, "token")
    sts.accepted_token = new_token("first")
    write_token(token_file, sts.accepted_token)
    directory = os.path.join(top, "pg")
    port = subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "test", "harness", "freeport.py"), "1"],
                          capture_output=True, text=True, check=True).stdout.strip()
    conf = [
        "reportstore.database = '%s'" % WORKER_DB,
        "reportstore.worker_enabled = on",
        "reportstore.naptime = '1h'",  # only wake-ups, and the credentials' refresh, move the worker
        "reportstore.retry_base_delay = '200ms'",
        "reportstore.systemic_backoff_max = '2s'",
        "reportstore.credential_source = 'auto'",
        "reportstore.sts_endpoint = '%s'" % sts.url,
        "reportstore.imds_endpoint = '%s'" % imds.url,  # never the real one
    ]
    # As on EKS: no keys, a role and a token file in the environment.
    cluster_env = dict(os.environ, S3_ACCESS_KEY="", S3_SECRET_KEY="", S3_SESSION_TOKEN="", AWS_ROLE_ARN=WEB_ROLE,
                       AWS_WEB_IDENTITY_TOKEN_FILE=token_file)
    cluster = None
    try:
        started = subprocess.run([PGCLUSTER, "start", directory, port] + conf, capture_output=True, text=True,
                                 timeout=120, env=cluster_env)
        if started.returncode != 0:
            pytest.fail("test/pgcluster.sh start failed: %s%s" % (started.stdout, started.stderr))
        cluster = Cluster(directory, int(port))
        for db in (WORKER_DB, BACKEND_DB):
            cluster.query("CREATE DATABASE %s" % db, dbname="postgres")
            conn = cluster.connect(db)
            try:
                run_sql_file(conn, "test/fixtures/seed_schema_before.sql")
                with conn.cursor() as cur:
                    cur.execute("CREATE EXTENSION reportstore")
                    cur.execute("INSERT INTO assessments VALUES (%s, 'cred')", (ASSESSMENT,))
            finally:
                conn.close()
        yield {"cluster": cluster, "sts": sts, "imds": imds, "token_file": token_file, "real": real}
    finally:
        subprocess.run([PGCLUSTER, "stop", directory], capture_output=True, timeout=120, env=cluster_env)
        shutil.rmtree(os.path.join(directory, "data"), ignore_errors=True)  # server.log stays, for the grep
        sts.stop()
        imds.stop()


@pytest.fixture
def cluster(world):
    return world["cluster"]


@pytest.fixture(autouse=True)
def fakes_behave(world):
    """Each test starts with well-behaved fakes and ends without violations."""
    sts, imds = world["sts"], world["imds"]
    sts.hang = imds.hang = False
    sts.lifetime = imds.lifetime = 60
    yield
    assert sts.violations == [], "the fake STS received malformed requests"
    assert imds.violations == [], "the fake IMDS received malformed requests"


# --- Static keys: unchanged -------------------------------------------------------------------------------------


def test_static_keys_by_default(db):
    """The suite's own cluster: static keys from the environment, no expiry, nothing fetched."""
    with db.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute("SELECT current_setting('reportstore.credential_source') AS s")
        assert cur.fetchone()["s"] == "static"
        cur.execute("SELECT * FROM reportstore.credentials_info()")
        info = cur.fetchone()
    assert info["source"] == "static"
    assert info["expires_at"] is None and info["obtained_at"] is None and info["last_error"] is None


# --- Web identity from the environment (auto) --------------------------------------------------------------------


def test_auto_takes_web_identity_from_the_environment(world, s3):
    cluster, sts = world["cluster"], world["sts"]
    conn = cluster.connect(BACKEND_DB)
    try:
        rid = insert_report(conn, '{"from": "web identity"}')
        before = verified_with(s3, sts.keys)
        assert offload(conn, rid) == object_path(rid)
        assert fetch(conn, rid) == '{"from": "web identity"}'
        # Both requests were signed with credentials the fake STS handed out (RGW's, through the front).
        assert verified_with(s3, sts.keys) - before >= 2
    finally:
        conn.close()
    current_token_sent = sts.tokens_seen()[-1] == sts.accepted_token
    assert current_token_sent, "STS did not get the token of the file named by AWS_WEB_IDENTITY_TOKEN_FILE"
    assert sts.requests[-1]["form"]["RoleArn"] == WEB_ROLE  # AWS_ROLE_ARN
    assert sts.requests[-1]["form"]["RoleSessionName"] == "reportstore"
    info = cluster.credentials(BACKEND_DB)
    assert info["source"] == "auto: web_identity"
    remaining = (info["expires_at"] - info["obtained_at"]).total_seconds()
    assert 30 <= remaining <= 90, remaining  # the fake announces 60 s
    status = cluster.status(BACKEND_DB)
    assert status["credential_source"] == "auto: web_identity"
    assert status["credentials_expire_at"] == info["expires_at"]


def test_changed_token_file_is_read_again(world):
    """Kubernetes rotates the token file: every refresh reads it again."""
    cluster, sts = world["cluster"], world["sts"]
    sts.lifetime = 20  # refreshed 5 s after they were obtained (half their usable life)
    conn = cluster.connect(BACKEND_DB)
    try:
        offload(conn, insert_report(conn))
        rotated = new_token("rotated")
        sts.expired_tokens.add(sts.accepted_token)
        sts.accepted_token = rotated
        write_token(world["token_file"], rotated)
        # The next refresh (by this backend, or by the worker ahead of need) reads the new token.
        wait_until(lambda: offload(conn, insert_report(conn)) and sts.tokens_seen()[-1] == rotated, 60,
                   "a refresh with the rotated token", interval=1)
        rid = insert_report(conn)
        assert offload(conn, rid) == object_path(rid)
        assert cluster.credentials(BACKEND_DB)["last_error"] is None
    finally:
        conn.close()


def test_refused_token_names_the_step_and_never_echoes_the_token(world):
    cluster, sts = world["cluster"], world["sts"]
    bad = new_token("unknown")
    saved = open(world["token_file"]).read().strip()
    write_token(world["token_file"], bad)
    try:
        # Another session name: other settings, so no cached credentials to fall back on.
        conn = session(cluster, reportstore__role_session_name="refused-token")
        try:
            rid = insert_report(conn)
            e = query_error(conn, "SELECT report_offload(%s)", (rid,))
            text = full_text(e)
            assert e.pgcode == "28000"
            assert e.diag.message_primary == "could not obtain S3 credentials from STS (AssumeRoleWithWebIdentity)"
            redacted = "InvalidIdentityToken: Unknown token [redacted]" in text  # the fake repeated it
            assert redacted, "the repeated token was not redacted"
            shown = bad in text or bad.split(".")[-1] in text
            assert not shown, "the refused token shows in the error"
            info = cluster.row("SELECT * FROM reportstore.credentials_info()", dbname=BACKEND_DB)
            assert info["source"] == "auto: web_identity"
        finally:
            conn.close()
        # A missing file: the step is the file, and STS is not asked.
        os.unlink(world["token_file"])
        asked = len(sts.requests)
        conn = session(cluster, reportstore__role_session_name="missing-file")
        try:
            e = query_error(conn, "SELECT report_offload(%s)", (insert_report(conn),))
            assert e.pgcode == "28000"
            assert e.diag.message_primary == 'could not read the web identity token file "%s"' % world["token_file"]
            assert "No such file or directory" in e.diag.message_detail
        finally:
            conn.close()
        assert len(sts.requests) == asked
    finally:
        write_token(world["token_file"], saved)


# --- The worker: an expired token stops uploads cleanly, then it resumes by itself --------------------------------


def test_expired_token_stops_the_worker_cleanly_and_it_resumes(world, s3):
    cluster, sts = world["cluster"], world["sts"]
    sts.lifetime = 60  # refreshed after 25 s, unusable after 50 s
    fresh = new_token("worker")
    sts.accepted_token = fresh
    write_token(world["token_file"], fresh)
    # Settings of its own (a session name): credentials obtained now, for this test. The workers
    # read new settings when they are idle.
    wait_idle(cluster)
    with system_settings(cluster, reportstore__role_session_name="expiry-test"):
        conn = cluster.connect(WORKER_DB)
        try:
            first = insert_report(conn)
            wait_until(lambda: pending(cluster, [first]) == 0, 30, "the first report to be offloaded")
            info = cluster.credentials()
            assert info["source"] == "auto: web_identity" and info["last_error"] is None
            expires = info["expires_at"]

            # The token expires and nobody renews it: refreshes fail from now on.
            sts.expired_tokens.add(fresh)
            sts.accepted_token = None
            log_offset = cluster.log_size()
            # The worker's refresh ahead of need fails; the credentials are still valid.
            wait_until(lambda: cluster.credentials()["last_error"], 60, "a failed refresh")
            assert cluster.credentials()["expires_at"] == expires
            during = insert_report(conn)
            wait_until(lambda: pending(cluster, [during]) == 0, 20, "an upload with the still valid credentials")

            # Past their expiry (less the safety skew) nothing is signed with them.
            wait_until(lambda: cluster.row("SELECT now() > %s - interval '10 s' AS past", (expires,))["past"], 60,
                       "the credentials to expire")
            before = s3.stats()
            stopped = [insert_report(conn) for _ in range(3)]
            status = wait_until(lambda: (lambda st: st if st["worker_state"] == "backing off" else None)(
                cluster.status()), 30, "the worker to back off")
            assert status["last_error"].startswith(
                "could not obtain S3 credentials from STS (AssumeRoleWithWebIdentity)")
            assert "ExpiredTokenException" in status["last_error"]
            assert status["credential_source"] == "auto: web_identity"
            assert status["credentials_expire_at"] == expires
            assert pending(cluster, stopped) == 3
            # Not the reports' fault: no attempt charged; and no request went out with them.
            assert cluster.row("SELECT count(*) AS n FROM reportstore.offload_state "
                               "WHERE report_id = ANY(%s::uuid[])", (stopped,))["n"] == 0
            after = s3.stats()
            assert after["signature_failures"] == []
            assert len(after["expected_failures"]) == len(before["expected_failures"])
            with open(os.path.join(env("S3_STACK_DIR"), "s3front.log"), encoding="utf-8", errors="replace") as f:
                front_log = f.read()
            assert not any(rid in front_log for rid in stopped), "a request for a stopped report reached S3"
            log = cluster.read_log(log_offset)
            assert "WARNING:  reportstore: could not obtain S3 credentials from STS (AssumeRoleWithWebIdentity)" in log

            # Kubernetes writes a new token: the worker resumes by itself.
            renewed = new_token("renewed")
            sts.accepted_token = renewed
            write_token(world["token_file"], renewed)
            wait_until(lambda: pending(cluster, stopped) == 0, 60, "the worker to resume by itself")
            assert cluster.credentials()["expires_at"] > expires
            wait_until(lambda: "resumed: the object store accepts requests again" in cluster.read_log(log_offset), 10,
                       "the worker's log line")
            log = cluster.read_log(log_offset)
            # A failure is logged once, not by every worker or at every retry; once more when
            # the credentials have expired meanwhile (its detail says so).
            assert log.count("WARNING:  reportstore: could not obtain S3 credentials") <= 2
        finally:
            conn.close()


# --- Instance roles (IMDSv2) ----------------------------------------------------------------------------------------


def test_instance_role_from_imds(world, s3):
    cluster, imds = world["cluster"], world["imds"]
    conn = session(cluster, reportstore__credential_source="instance")
    try:
        asked = len(imds.requests)
        rid = insert_report(conn, '{"from": "instance"}')
        assert offload(conn, rid) == object_path(rid)
        assert fetch(conn, rid) == '{"from": "instance"}'
        with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            cur.execute("SELECT * FROM reportstore.credentials_info()")
            info = cur.fetchone()
        assert info["source"] == "instance"
        assert info["expires_at"] is not None
    finally:
        conn.close()
    steps = [(r["method"], r["path"]) for r in imds.requests[asked:]]
    assert steps == [("PUT", "/latest/api/token"), ("GET", "/latest/meta-data/iam/security-credentials/"),
                     ("GET", "/latest/meta-data/iam/security-credentials/reportstore-instance-role")]
    assert imds.requests[asked]["headers"].get("X-aws-ec2-metadata-token-ttl-seconds") == "21600"
    assert verified_with(s3, imds.keys[-1:]) >= 2


def test_hanging_imds_is_bounded_by_its_timeout(world):
    cluster, imds = world["cluster"], world["imds"]
    imds.hang = True
    conn = session(cluster, reportstore__credential_source="instance", reportstore__role_session_name="imds-hangs")
    try:
        rid = insert_report(conn)
        started = time.time()
        e = query_error(conn, "SELECT report_offload(%s)", (rid,))
        elapsed = time.time() - started
        assert elapsed < 30, "a hanging IMDS held the backend %.0f s" % elapsed
        assert e.pgcode == "08001"
        assert e.diag.message_primary == "could not obtain S3 credentials from the instance metadata service (IMDS)"
        assert "IMDSv2 session token request (PUT /latest/api/token)" in e.diag.message_detail
        assert "no answer within 2000 ms" in e.diag.message_detail
        with conn.cursor() as cur:
            cur.execute("SELECT report_data IS NOT NULL, minio_path FROM reports WHERE report_id = %s", (rid,))
            assert cur.fetchone() == (True, None)
    finally:
        conn.close()
        imds.hang = False


# --- A real STS: AssumeRole on Ceph RGW ---------------------------------------------------------------------------


def test_rgw_checks_the_session_token_of_every_request():
    """What the AssumeRole tests rely on: RGW refuses temporary credentials without their token
    (AccessDenied) or with a tampered one (InvalidArgument)."""
    rgw_only()
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ClientError
    sts = boto3.client("sts", endpoint_url=env("S3_BACKEND_ENDPOINT"), region_name=env("S3_REGION"),
                       aws_access_key_id=env("S3_BACKEND_ACCESS_KEY"), aws_secret_access_key=env("S3_BACKEND_SECRET_KEY"))
    c = sts.assume_role(RoleArn=env("RGW_ROLE_ARN"), RoleSessionName="token-check")["Credentials"]
    SEEN_SECRETS.extend([c["SecretAccessKey"], c["SessionToken"]])

    def head(token):
        client = boto3.client("s3", endpoint_url=env("S3_BACKEND_ENDPOINT"), region_name=env("S3_REGION"),
                              aws_access_key_id=c["AccessKeyId"], aws_secret_access_key=c["SecretAccessKey"],
                              aws_session_token=token, config=Config(retries={"max_attempts": 1}))
        try:
            client.head_bucket(Bucket=env("S3_BUCKET"))
            return "ok"
        except ClientError as e:
            return e.response["Error"]["Code"] or str(e.response["ResponseMetadata"]["HTTPStatusCode"])

    assert head(c["SessionToken"]) == "ok"
    assert head(None) in ("AccessDenied", "403")
    tampered = c["SessionToken"][:-8] + ("A" * 8 if not c["SessionToken"].endswith("A" * 8) else "B" * 8)
    assert head(tampered) in ("InvalidArgument", "400", "AccessDenied", "403")


def test_assume_role_on_rgw_offload_fetch_and_presigned_url(world, s3):
    rgw_only()
    cluster = world["cluster"]
    settings = dict(reportstore__credential_source="static", reportstore__access_key_id=env("S3_ACCESS_KEY"),
                    reportstore__secret_access_key=env("S3_SECRET_KEY"), reportstore__role_arn=env("RGW_ROLE_ARN"),
                    reportstore__sts_endpoint=env("S3_ENDPOINT"))  # MinIO and RGW: STS at the S3 endpoint
    issued_before = len(sts_issued(s3))
    conn = session(cluster, **settings)
    try:
        rid = insert_report(conn, '{"from": "assume role"}')
        assert offload(conn, rid) == object_path(rid)
        assert fetch(conn, rid) == '{"from": "assume role"}'
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM reportstore.verify(true) WHERE report_id = %s", (rid,))
            assert cur.fetchone()[0] == 0
        with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            cur.execute("SELECT * FROM reportstore.credentials_info()")
            info = cur.fetchone()
        assert info["source"] == "static + assume_role"
        assert 3000 <= (info["expires_at"] - info["obtained_at"]).total_seconds() <= 3700  # RGW's default hour
    finally:
        conn.close()
    issued = sts_issued(s3)[issued_before:]
    assumed = [c for c in issued if c["action"] == "AssumeRole"]
    round_trips = len(assumed)
    assert round_trips == 1  # one STS round trip for the whole session
    assert s3.stats()["verified_by_key"].get(assumed[0]["access_key"], 0) >= 3  # PUT, GET, HEAD/GET of verify
    SEEN_SECRETS.extend([assumed[0]["secret_key"], assumed[0]["session_token"]])

    # A presigned URL: the session token in its query string (and only there), valid at RGW.
    conn = session(cluster, reportstore__role_session_name="presigned-url", **settings)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT report_url(%s, '10 minutes')", (rid,))
            url = cur.fetchone()[0]
    finally:
        conn.close()
    url_creds = [c for c in sts_issued(s3) if c["action"] == "AssumeRole"][-1]
    URL_TOKENS.append(url_creds["session_token"])
    SEEN_SECRETS.append(url_creds["secret_key"])
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    token_in_query = query.get("X-Amz-Security-Token") == [url_creds["session_token"]]
    assert token_in_query, "the URL does not carry the session token in its query string"
    assert query["X-Amz-Credential"][0].startswith(url_creds["access_key"] + "/")
    secret_in_url = url_creds["secret_key"] in url
    assert not secret_in_url, "the secret is in the URL"
    with urllib.request.urlopen(url, timeout=30) as resp:
        assert resp.read() == b'{"from": "assume role"}'


def test_worker_assumes_a_role_and_refreshes_before_expiry(world, s3):
    """The worker signs with AssumeRole credentials from RGW and refreshes them margin before
    they expire, by itself; an upload in flight finishes with the old credentials; one STS
    round trip per refresh for both workers and every backend."""
    rgw_only()
    cluster = world["cluster"]
    wait_idle(cluster)  # the workers read new settings when they are idle
    issued_before = len(sts_issued(s3))  # (the workers obtain credentials as soon as they read them)
    # RGW's sessions last an hour: a margin of 3590 s makes the refresh due 10 s after.
    with system_settings(cluster, reportstore__credential_source="static",
                         reportstore__access_key_id=env("S3_ACCESS_KEY"),
                         reportstore__secret_access_key=env("S3_SECRET_KEY"),
                         reportstore__role_arn=env("RGW_ROLE_ARN"), reportstore__sts_endpoint=env("S3_ENDPOINT"),
                         reportstore__credentials_refresh_margin="3590s",
                         # settings of its own: nothing cached from the other tests
                         reportstore__role_session_name="worker-refresh"):
        log_offset = cluster.log_size()
        conn = cluster.connect(WORKER_DB)
        try:
            def assumed_here():
                return [c for c in sts_issued(s3)[issued_before:] if c["action"] == "AssumeRole"]

            first = insert_report(conn)
            wait_until(lambda: pending(cluster, [first]) == 0, 30, "the first report to be offloaded")
            info1 = cluster.credentials()
            assert info1["source"] == "static + assume_role"
            round_trips = len(assumed_here())
            assert round_trips == 1
            key1 = assumed_here()[0]["access_key"]
            assert s3.stats()["verified_by_key"].get(key1, 0) >= 1

            # An upload that takes 25 s, started with these credentials.
            slow = str(uuid.uuid4())
            s3.faults({"method": "PUT", "path_regex": slow, "action": "delay", "seconds": 25})
            verified1 = s3.stats()["verified_by_key"].get(key1, 0)
            insert_report(conn, rid=slow)
            wait_until(lambda: s3.stats()["verified_by_key"].get(key1, 0) > verified1, 20,
                       "the slow upload to be signed and received")
            # Meanwhile the refresh falls due: the idle worker does it ahead of need.
            wait_until(lambda: cluster.credentials()["obtained_at"] > info1["obtained_at"], 40,
                       "the proactive refresh")
            assert pending(cluster, [slow]) == 1, "the slow upload ended before the refresh"
            activity = cluster.query("SELECT query, backend_type FROM pg_stat_activity", dbname="postgres")
            world.setdefault("activity", []).extend(a["query"] or "" for a in activity)
            wait_until(lambda: pending(cluster, [slow]) == 0, 60, "the upload started before the refresh to finish")
            info2 = cluster.credentials()
            interval = (info2["obtained_at"] - info1["obtained_at"]).total_seconds()
            assert 5 <= interval <= 60, interval

            # New requests are signed with the new credentials (refreshed every 10 s here).
            later = insert_report(conn)
            wait_until(lambda: pending(cluster, [later]) == 0, 30, "a report after the refresh")
            newer = [c["access_key"] for c in assumed_here()[1:]]
            assert key1 not in newer and verified_with(s3, newer) >= 1
            assert s3.stats()["verified_by_key"].get(key1, 0) == 2  # the first report and the slow one
            assumed = assumed_here()
            for c in assumed:
                SEEN_SECRETS.extend([c["secret_key"], c["session_token"]])
            # One STS round trip per refresh, though two workers share the credentials: two
            # processes refreshing at once would make calls much closer than the 10 s cadence.
            round_trips = len(assumed)
            times = [c["learned_at"] for c in assumed]
            closest = min(b - a for a, b in zip(times, times[1:]))
            assert round_trips >= 2 and closest >= 4, (round_trips, closest)
            assert "reportstore: obtained S3 credentials (static + assume_role)" in cluster.read_log(log_offset)
            print("AssumeRole round trips at %s s (%d for two workers and the backends)"
                  % (", ".join("+%.1f" % (t - times[0]) for t in times), round_trips))
            assert s3.stats()["signature_failures"] == []
        finally:
            conn.close()


# --- Secrets -----------------------------------------------------------------------------------------------------------


def test_no_secret_anywhere(world, s3):
    """Last: every temporary secret, session token and web identity token met in this module,
    looked for in the logs of both clusters and the front, pg_settings and pg_stat_activity."""
    cluster = world["cluster"]
    for key, secret, token in world["real"].issued:
        SEEN_SECRETS.extend([secret, token])
    for c in sts_issued(s3):
        SEEN_SECRETS.append(c["secret_key"])
        if c["session_token"] not in URL_TOKENS:
            SEEN_SECRETS.append(c["session_token"])
    values = sorted(set(v for v in SEEN_SECRETS if v and v not in URL_TOKENS))
    assert len(values) >= 10
    note_secret(*values)

    texts = {}
    for path in (cluster.log_path, os.path.join(env("PGHOST"), "server.log"),
                 os.path.join(env("S3_STACK_DIR"), "s3front.log"), os.path.join(env("S3_STACK_DIR"), "front.log")):
        with open(path, encoding="utf-8", errors="replace") as f:
            texts[path] = f.read()
    for db in (WORKER_DB, BACKEND_DB):
        rows = cluster.query("SELECT name, setting FROM pg_settings WHERE name LIKE 'reportstore.%%'", dbname=db)
        texts["pg_settings of %s" % db] = "\n".join("%s=%s" % (r["name"], r["setting"]) for r in rows)
        rows = cluster.query("SELECT query, backend_type, wait_event FROM pg_stat_activity", dbname=db)
        texts["pg_stat_activity of %s" % db] = "\n".join(str(r) for r in rows)
    texts["pg_stat_activity during the refresh"] = "\n".join(world.get("activity", []))
    leaks = sorted(where for where, text in texts.items() if any(v in text for v in values))
    assert leaks == [], "a temporary secret or token appears in: %s" % ", ".join(leaks)
    # Web identity tokens are never sent anywhere but to STS, in a POST body.
    for entry in world["sts"].requests:
        assert "?" not in entry["path"]
