"""https endpoints: certificate and host name verification, reportstore.ca_file, verify_tls = off.

Against Ceph RGW (the suite's default S3 server), the requests go straight to
radosgw's own https ports (beast, test/harness/rgw.sh), one per certificate.
With the moto or s3rver backends, a TLS terminator (stunnel4, installed with
apt-get when missing) listens on 127.0.0.1 and forwards to the S3 front
instead. The certificates come from a throwaway CA made with openssl:

* "good":     signed by the test CA, for 127.0.0.1 and localhost;
* "wrongname": signed by the test CA, for another host name only;
* "rogue":    for 127.0.0.1 and localhost, but signed by another CA.

Each test sets the endpoint (and the TLS settings) in its own superuser
session, so the rest of the suite keeps using plain http. Whether a request
reached the server is read from the bucket itself (the oracle client).
"""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import psycopg2
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "harness"))
from freeport import free_port  # noqa: E402

from conftest import (env, error_text, fetch_text, jsonb_text, new_report, object_key, object_path, offload,
                      query_error, report_json, report_state, s3_backend_client)

pytestmark = pytest.mark.usefixtures("s3")

OPENSSL = "openssl"


# ------------------------------------------------------------ certificates

def _openssl(*args, cwd):
    subprocess.run((OPENSSL,) + args, cwd=cwd, check=True, capture_output=True, timeout=60)


def _make_ca(d, name):
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "2",
             "-subj", "/CN=reportstore test %s" % name, "-keyout", name + ".key", "-out", name + ".pem",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             cwd=d)


def _make_server_cert(d, name, ca, cn, san):
    with open(os.path.join(d, name + ".ext"), "w") as f:
        f.write("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\nsubjectAltName=%s\n" % san)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-sha256", "-subj", "/CN=%s" % cn,
             "-keyout", name + ".key", "-out", name + ".csr", cwd=d)
    _openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key", "-CAcreateserial",
             "-days", "2", "-sha256", "-extfile", name + ".ext", "-out", name + ".pem", cwd=d)


def _free_port():
    return free_port()


def _stunnel_binary():
    for name in ("stunnel4", "stunnel"):
        path = shutil.which(name)
        if path:
            return path
    install = subprocess.run(["apt-get", "install", "-y", "-q", "stunnel4"], capture_output=True, text=True,
                             timeout=600, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    for name in ("stunnel4", "stunnel"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("stunnel4 is missing and 'apt-get install -y stunnel4' failed:\n%s%s"
                % (install.stdout[-2000:], install.stderr[-2000:]))


class Tls:
    """The terminator's ports and the CA bundle."""

    def __init__(self, directory, ports, server):
        self.dir = directory
        self.ports = ports
        self.server = server
        self.ca_file = os.path.join(directory, "ca.pem")
        self.other_ca_file = os.path.join(directory, "otherca.pem")

    def endpoint(self, service="good", host="127.0.0.1"):
        return "https://%s:%d" % (host, self.ports[service])


@pytest.fixture(scope="session")
def tls():
    if os.environ.get("S3_BACKEND") == "rgw":
        # radosgw's own https ports, certificates made by test/harness/rgw.sh
        ports = {name: int(env(var).rsplit(":", 1)[1]) for name, var in (
            ("good", "RGW_HTTPS_ENDPOINT"), ("wrongname", "RGW_HTTPS_WRONGNAME_ENDPOINT"),
            ("rogue", "RGW_HTTPS_ROGUE_ENDPOINT"))}
        d = os.path.dirname(env("RGW_CA_FILE"))
        assert os.stat(d).st_mode & 0o005 == 0o005 and os.stat(env("RGW_CA_FILE")).st_mode & 0o004, \
            "the server (OS user postgres) cannot read %s" % env("RGW_CA_FILE")
        yield Tls(d, ports, "Ceph RGW %s (beast)" % os.environ.get("RGW_VERSION", ""))
        return
    yield from _stunnel_tls()


def _stunnel_tls():
    stunnel = _stunnel_binary()
    front = env("S3_ENDPOINT")
    assert front.startswith("http://127.0.0.1:"), front
    front_port = int(front.rsplit(":", 1)[1].rstrip("/"))
    d = tempfile.mkdtemp(prefix="reportstore-tls.")
    os.chmod(d, 0o755)  # the server (OS user postgres) reads ca.pem
    proc = None
    try:
        _make_ca(d, "ca")
        _make_ca(d, "otherca")
        _make_server_cert(d, "good", "ca", "127.0.0.1", "IP:127.0.0.1,DNS:localhost")
        _make_server_cert(d, "wrongname", "ca", "s3.other.invalid", "DNS:s3.other.invalid")
        _make_server_cert(d, "rogue", "otherca", "127.0.0.1", "IP:127.0.0.1,DNS:localhost")
        for name in ("ca.pem", "otherca.pem"):
            os.chmod(os.path.join(d, name), 0o644)
        ports = {name: _free_port() for name in ("good", "wrongname", "rogue")}
        conf = os.path.join(d, "stunnel.conf")
        with open(conf, "w") as f:
            f.write("foreground = yes\npid =\ndebug = warning\noutput = %s\n" % os.path.join(d, "stunnel.log"))
            for name, port in ports.items():
                f.write("\n[%s]\naccept = 127.0.0.1:%d\nconnect = 127.0.0.1:%d\ncert = %s\nkey = %s\n"
                        "TIMEOUTclose = 0\n" % (name, port, front_port, os.path.join(d, name + ".pem"),
                                                os.path.join(d, name + ".key")))
        proc = subprocess.Popen([stunnel, conf], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)
        deadline = time.time() + 20
        pending = set(ports)
        while pending:
            if proc.poll() is not None:
                pytest.fail("stunnel exited (%s): %s" % (proc.returncode, proc.stderr.read().decode()[-2000:]))
            if time.time() > deadline:
                pytest.fail("stunnel did not listen on %s" % sorted(pending))
            for name in list(pending):
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", ports[name])) == 0:
                        pending.discard(name)
            time.sleep(0.1)
        yield Tls(d, ports, "stunnel in front of %s" % os.environ.get("S3_BACKEND"))
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        shutil.rmtree(d, ignore_errors=True)


def https_session(db, endpoint, **settings):
    """Points db's (superuser) session at endpoint with the given reportstore.* settings."""
    with db.cursor() as cur:
        cur.execute("SET reportstore.endpoint = %s", (endpoint,))
        for name, value in settings.items():
            cur.execute("SET reportstore.%s = %%s" % name, (value,))


@pytest.fixture
def report(db):
    def make(size=2000):
        data = report_json(size)
        rid = new_report(db, data)
        return rid, jsonb_text(db, data)
    return make


def assert_tls_refused(e, rid):
    text = error_text(e)
    assert e.pgcode == "08001", "SQLSTATE %s, expected 08001:\n%s" % (e.pgcode, text)
    assert e.diag.severity == "ERROR"
    assert object_path(rid) in e.diag.message_primary, text
    assert "certificate" in text.lower(), "the error does not mention the certificate:\n%s" % text
    assert "reportstore.ca_file" in text, "the error does not point at reportstore.ca_file:\n%s" % text
    assert env("S3_SECRET_KEY") not in text


def stored_object(rid):
    """The object's bytes in the bucket, or None."""
    client = s3_backend_client()
    try:
        return client.get_object(Bucket=env("S3_BUCKET"), Key=object_key(rid))["Body"].read()
    except client.exceptions.NoSuchKey:
        return None


def assert_untouched(db, rid, original):
    assert report_state(db, rid) == (original, None), "the report changed although the upload was refused"
    assert stored_object(rid) is None, "an object was stored through a refused TLS connection"


# ------------------------------------------------------------ tests

def test_self_signed_ca_refused_by_default(db, tls, report):
    rid, original = report()
    with db.cursor() as cur:
        cur.execute("SHOW reportstore.verify_tls")
        assert cur.fetchone()[0] == "on"
        cur.execute("SHOW reportstore.ca_file")
        assert cur.fetchone()[0] == ""
    https_session(db, tls.endpoint())
    e = query_error(db, "SELECT report_offload(%s)", (rid,))
    assert_tls_refused(e, rid)
    assert_untouched(db, rid, original)
    # the session is still usable and nothing is half-done
    assert report_state(db, rid) == (original, None)


def test_fetch_over_untrusted_https_refused(db, tls, report):
    rid, original = report()
    assert offload(db, rid) == object_path(rid)  # over plain http
    https_session(db, tls.endpoint())
    e = query_error(db, "SELECT report_fetch(%s)", (rid,))
    assert_tls_refused(e, rid)
    assert report_state(db, rid) == (None, object_path(rid))


def test_private_ca_trusted(db, tls, report):
    rid, original = report(20_000)
    https_session(db, tls.endpoint(), ca_file=tls.ca_file)
    db.notices.clear()
    assert offload(db, rid) == object_path(rid)
    assert report_state(db, rid) == (None, object_path(rid))
    assert fetch_text(db, rid) == original
    assert stored_object(rid) == original.encode(), "the upload over https did not store the report (%s)" % tls.server
    assert not [n for n in db.notices if n.startswith("WARNING")], db.notices


def test_private_ca_by_host_name(db, tls, report):
    rid, original = report()
    https_session(db, tls.endpoint(host="localhost"), ca_file=tls.ca_file)
    assert offload(db, rid) == object_path(rid)
    assert fetch_text(db, rid) == original


def test_host_name_mismatch_refused(db, tls, report):
    """The certificate is signed by the trusted CA, but for another host name."""
    rid, original = report()
    https_session(db, tls.endpoint("wrongname"), ca_file=tls.ca_file)
    e = query_error(db, "SELECT report_offload(%s)", (rid,))
    assert_tls_refused(e, rid)
    assert_untouched(db, rid, original)


def test_certificate_of_another_ca_refused(db, tls, report):
    """reportstore.ca_file trusts that CA only, not any certificate."""
    rid, original = report()
    https_session(db, tls.endpoint("rogue"), ca_file=tls.ca_file)
    e = query_error(db, "SELECT report_offload(%s)", (rid,))
    assert_tls_refused(e, rid)
    assert_untouched(db, rid, original)


def test_missing_ca_file_refused(db, tls, report):
    rid, original = report()
    https_session(db, tls.endpoint(), ca_file=os.path.join(tls.dir, "no-such-ca.pem"))
    e = query_error(db, "SELECT report_offload(%s)", (rid,))
    assert e.pgcode == "08001", error_text(e)
    assert "reportstore.ca_file" in error_text(e)
    assert_untouched(db, rid, original)


def test_relative_ca_file_rejected(db):
    e = query_error(db, "SET reportstore.ca_file = 'ca.pem'")
    assert e.pgcode == "22023", error_text(e)
    assert "absolute" in error_text(e)


def test_verify_off_succeeds(db, tls, report):
    """verify_tls = off accepts any certificate (here: another CA's, no ca_file)."""
    rid, original = report()
    https_session(db, tls.endpoint("rogue"), verify_tls="off")
    assert offload(db, rid) == object_path(rid)
    assert report_state(db, rid) == (None, object_path(rid))
    assert fetch_text(db, rid) == original


def test_verify_off_warns(db, tls, report):
    rid, original = report()
    https_session(db, tls.endpoint(), verify_tls="off")
    db.notices.clear()
    assert offload(db, rid) == object_path(rid)
    warnings = [n for n in db.notices if n.startswith("WARNING")]
    assert warnings, "no WARNING about verify_tls = off; notices: %r" % db.notices
    assert any("verif" in w.lower() or "certificate" in w.lower() for w in warnings), warnings
    assert fetch_text(db, rid) == original


def test_verify_back_on_refuses_again(db, tls, report):
    """Turning verification back on in the same session applies to the next request."""
    rid, original = report()
    https_session(db, tls.endpoint(), verify_tls="off")
    assert offload(db, rid) == object_path(rid)
    rid2, original2 = report()
    with db.cursor() as cur:
        cur.execute("SET reportstore.verify_tls = on")
    e = query_error(db, "SELECT report_offload(%s)", (rid2,))
    assert_tls_refused(e, rid2)
    assert_untouched(db, rid2, original2)
    e = query_error(db, "SELECT report_fetch(%s)", (rid,))
    assert_tls_refused(e, rid)


def test_verify_tls_needs_superuser(dbname):
    """Only superusers may turn verification off."""
    admin = psycopg2.connect(host=env("PGHOST"), port=env("PGPORT"), user="postgres", dbname=dbname)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute("DROP ROLE IF EXISTS rs_tls_app")
            cur.execute("CREATE ROLE rs_tls_app LOGIN")
        app = psycopg2.connect(host=env("PGHOST"), port=env("PGPORT"), user="rs_tls_app", dbname=dbname)
        app.autocommit = True
        try:
            for sql in ("SET reportstore.verify_tls = off", "SET reportstore.ca_file = '/tmp/x.pem'"):
                e = query_error(app, sql)
                assert e.pgcode == "42501", error_text(e)
        finally:
            app.close()
    finally:
        with admin.cursor() as cur:
            cur.execute("DROP ROLE IF EXISTS rs_tls_app")
        admin.close()
