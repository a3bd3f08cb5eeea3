"""Self-test of the local S3 test stack (s3stack.sh + s3front.py).

Run with Debian's python (pytest + boto3 from apt):
    /usr/bin/python3 -m pytest test/harness/test_s3front.py
against Ceph RGW (the front in pass-through mode); S3_BACKEND=moto or
S3_BACKEND=s3rver selects those backends instead (the front re-signs).
"""

import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import datetime

import boto3
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import s3front  # noqa: E402  (only for the skewed-date signer)
from freeport import free_port  # noqa: E402

SECRET = "rstest-SECRET-do-not-log-7f3a9c"


def read_env(path):
    env = {}
    out = subprocess.check_output(
        ["bash", "-c", 'set -a; . "$1"; env -0', "x", path])
    for item in out.split(b"\0"):
        k, _, v = item.decode().partition("=")
        if k.startswith("S3_"):
            env[k] = v
    return env


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie of ours counts as gone
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="session")
def stack():
    d = tempfile.mkdtemp(prefix="s3stack-")
    script = os.path.join(HERE, "s3stack.sh")
    r = subprocess.run([script, "start", d], capture_output=True, text=True,
                       timeout=180)
    pids = []
    for n in ("front", "backend", "rgw/run/radosgw", "rgw/run/osd", "rgw/run/mon"):
        try:
            pids.append(int(open(os.path.join(d, n + ".pid")).read()))
        except (OSError, ValueError):
            pass
    if r.returncode != 0:
        subprocess.run([script, "stop", d])
        pytest.fail("s3stack start failed:\n%s\n%s" % (r.stdout, r.stderr))
    env = read_env(os.path.join(d, "s3.env"))
    env["dir"] = d
    assert env["S3_BACKEND"] == os.environ.get("S3_BACKEND", "rgw")
    yield env
    # session end: no unexpected signature failures may remain
    st = json.load(urllib.request.urlopen(env["S3_CONTROL"] + "/stats"))
    r = subprocess.run([script, "stop", d], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    r2 = subprocess.run([script, "stop", d], capture_output=True, text=True, timeout=60)
    assert r2.returncode == 0, "stop must be idempotent: " + r2.stderr
    for pid in pids:
        assert not alive(pid), "process %d survived stop" % pid
    for root, _, files in os.walk(d):
        for name in files:
            if not os.path.isfile(os.path.join(root, name)):
                continue  # sockets
            with open(os.path.join(root, name), "rb") as f:
                assert SECRET.encode() not in f.read() or name in ("s3.env", "rgw.env"), \
                    "the secret key is in %s" % os.path.join(root, name)
    if not os.environ.get("REPORTSTORE_KEEP_STACK_DIRS"):  # test/run_all.sh scans it for secrets
        shutil.rmtree(d, ignore_errors=True)
    assert st["signature_failures"] == []


def ctl(env, method, sub, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(env["S3_CONTROL"] + sub, data=data, method=method)
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"{}")


def client(env, secret=None, access_key=None, token=None, endpoint=None, timeout=10):
    return boto3.client(
        "s3", endpoint_url=endpoint or env["S3_ENDPOINT"],
        aws_access_key_id=access_key or env["S3_ACCESS_KEY"],
        aws_secret_access_key=secret or env["S3_SECRET_KEY"],
        aws_session_token=token, region_name=env["S3_REGION"],
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                      retries={"total_max_attempts": 1}, read_timeout=timeout,
                      connect_timeout=5))


def backend_client(env):
    return client(env, access_key=env["S3_BACKEND_ACCESS_KEY"], secret=env["S3_BACKEND_SECRET_KEY"],
                  endpoint=env["S3_BACKEND_ENDPOINT"])


def rgw_only(env):
    if env["S3_BACKEND"] != "rgw":
        pytest.skip("needs the rgw backend (pass-through front)")


@pytest.fixture(autouse=True)
def clean(stack):
    ctl(stack, "POST", "/reset")
    yield
    st = ctl(stack, "GET", "/stats")
    ctl(stack, "POST", "/reset")
    assert st["signature_failures"] == [], "unexpected signature failures"


@pytest.fixture
def expect_failures(stack):
    ctl(stack, "POST", "/expect_failures", {"enabled": True})
    yield
    ctl(stack, "POST", "/expect_failures", {"enabled": False})


def botocore_signed(env, method, path, body=b"", headers=None, secret=None, token=None):
    """Sign with botocore's signer (independent of s3front) -> headers dict."""
    url = env["S3_ENDPOINT"] + path
    req = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    creds = Credentials(env["S3_ACCESS_KEY"], secret or env["S3_SECRET_KEY"], token)
    S3SigV4Auth(creds, "s3", env["S3_REGION"]).add_auth(req)
    return dict(req.headers.items())


def raw(env, method, path, body=b"", headers=None, timeout=10, conn=None):
    u = urllib.parse.urlsplit(env["S3_ENDPOINT"])
    own = conn is None
    conn = conn or http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        conn.request(method, path, body=body or None, headers=headers or {})
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        if own:
            conn.close()


KEYS = ["plain.txt", "dir/with space.txt", "ünïcødé/ключ 文件.bin",
        "sym+bols!$&'()*,;=@.txt", "tilde~and-dots..txt"]


# ---------------------------------------------------------------- accepted

def test_boto3_roundtrip(stack):
    s3 = client(stack)
    b = stack["S3_BUCKET"]
    for k in KEYS:
        data = ("payload of " + k).encode() * 10
        s3.put_object(Bucket=b, Key=k, Body=data, ContentType="text/plain")
        assert s3.get_object(Bucket=b, Key=k)["Body"].read() == data
        h = s3.head_object(Bucket=b, Key=k)
        assert h["ContentLength"] == len(data)
        assert h["ETag"].strip('"') == hashlib.md5(data).hexdigest()
    listed = {o["Key"] for o in s3.list_objects_v2(Bucket=b)["Contents"]}
    assert set(KEYS) <= listed
    pre = [o["Key"] for o in s3.list_objects_v2(Bucket=b, Prefix="ünï")["Contents"]]
    assert pre == [KEYS[2]]
    r = s3.get_object(Bucket=b, Key=KEYS[0], Range="bytes=2-5")
    assert r["Body"].read() == ("payload of " + KEYS[0]).encode()[2:6]
    for k in KEYS:
        s3.delete_object(Bucket=b, Key=k)
    assert "Contents" not in s3.list_objects_v2(Bucket=b, Prefix="plain")
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=b, Key=KEYS[0])
    assert e.value.response["Error"]["Code"] in ("404", "NoSuchKey")
    st = ctl(stack, "GET", "/stats")
    assert st["requests"] == st["verified"] > 20


def test_multipart_and_oracle(stack):
    s3 = client(stack)
    b = stack["S3_BUCKET"]
    part = os.urandom(5 * 1024 * 1024)
    mp = s3.create_multipart_upload(Bucket=b, Key="mp/obj")
    p1 = s3.upload_part(Bucket=b, Key="mp/obj", UploadId=mp["UploadId"], PartNumber=1,
                        Body=part)
    p2 = s3.upload_part(Bucket=b, Key="mp/obj", UploadId=mp["UploadId"], PartNumber=2,
                        Body=b"tail")
    s3.complete_multipart_upload(
        Bucket=b, Key="mp/obj", UploadId=mp["UploadId"],
        MultipartUpload={"Parts": [{"ETag": p1["ETag"], "PartNumber": 1},
                                   {"ETag": p2["ETag"], "PartNumber": 2}]})
    got = backend_client(stack).get_object(Bucket=b, Key="mp/obj")["Body"].read()
    assert got == part + b"tail"
    s3.delete_objects(Bucket=b, Delete={"Objects": [{"Key": "mp/obj"}]})


def test_presigned_get_and_put(stack):
    s3 = client(stack)
    b = stack["S3_BUCKET"]
    k = "pre signed/ü.txt"
    url = s3.generate_presigned_url("put_object", Params={"Bucket": b, "Key": k},
                                    ExpiresIn=60)
    # explicit Content-Type: moto (werkzeug) swallows form-urlencoded bodies
    req = urllib.request.Request(url, data=b"presigned-put", method="PUT",
                                 headers={"Content-Type": "application/octet-stream"})
    assert urllib.request.urlopen(req).status == 200
    url = s3.generate_presigned_url("get_object", Params={"Bucket": b, "Key": k},
                                    ExpiresIn=60)
    assert urllib.request.urlopen(url).read() == b"presigned-put"


def test_keepalive_head_and_chunked(stack):
    s3 = client(stack)
    b = stack["S3_BUCKET"]
    s3.put_object(Bucket=b, Key="ka", Body=b"x" * 1000)
    u = urllib.parse.urlsplit(stack["S3_ENDPOINT"])
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    st, h, body = raw(stack, "HEAD", "/%s/ka" % b,
                      headers=botocore_signed(stack, "HEAD", "/%s/ka" % b), conn=conn)
    assert st == 200 and body == b"" and h["Content-Length"] == "1000"
    sock = conn.sock
    st, h, body = raw(stack, "GET", "/%s/ka" % b,
                      headers=botocore_signed(stack, "GET", "/%s/ka" % b), conn=conn)
    assert st == 200 and body == b"x" * 1000
    assert conn.sock is sock, "connection was not kept alive"
    # chunked transfer encoding with a signed payload hash
    data = b"chunked-body" * 100
    hdrs = botocore_signed(stack, "PUT", "/%s/chunked" % b, body=data)
    conn.putrequest("PUT", "/%s/chunked" % b, skip_accept_encoding=True)
    for k, v in hdrs.items():
        conn.putheader(k, v)
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    for i in range(0, len(data), 333):
        piece = data[i:i + 333]
        conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
    conn.send(b"0\r\n\r\n")
    r = conn.getresponse()
    r.read()
    assert r.status == 200
    conn.close()
    assert s3.get_object(Bucket=b, Key="chunked")["Body"].read() == data


def session_credentials(stack):
    """(access key, secret, token) the front is started with in test_session_token_front:
    temporary credentials from RGW's STS (RGW checks the token itself), or made-up ones
    for moto and s3rver (only the front checks them)."""
    if stack["S3_BACKEND"] != "rgw":
        return stack["S3_ACCESS_KEY"], SECRET, "FQoGZXIvYXdzE-session-token/with+chars=="
    sts = boto3.client("sts", endpoint_url=stack["S3_BACKEND_ENDPOINT"], region_name=stack["S3_REGION"],
                       aws_access_key_id=stack["S3_ACCESS_KEY"], aws_secret_access_key=SECRET)
    c = sts.get_session_token(DurationSeconds=3600)["Credentials"]
    return c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"]


def test_session_token_front(stack, tmp_path):
    port = free_port()
    access_key, secret, token = session_credentials(stack)
    logf = tmp_path / "tok.log"
    env = dict(os.environ, S3FRONT_SECRET_KEY=secret)
    mode = ["--pass-through"] if stack["S3_BACKEND"] == "rgw" else []
    p = subprocess.Popen([sys.executable, os.path.join(HERE, "s3front.py"),
                          "--port", str(port), "--backend", stack["S3_BACKEND_ENDPOINT"],
                          "--access-key", access_key, "--region", "us-east-1"] + mode +
                         ["--session-token", token, "--log", str(logf)], env=env)
    try:
        tenv = dict(stack, S3_ENDPOINT="http://127.0.0.1:%d" % port,
                    S3_CONTROL="http://127.0.0.1:%d/__control" % port)
        for _ in range(100):
            try:
                ctl(tenv, "GET", "/stats")
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.05)
        s3 = client(tenv, access_key=access_key, secret=secret, token=token)
        b = stack["S3_BUCKET"]
        s3.put_object(Bucket=b, Key="tok", Body=b"t")
        assert s3.get_object(Bucket=b, Key="tok")["Body"].read() == b"t"
        url = s3.generate_presigned_url("get_object", Params={"Bucket": b, "Key": "tok"})
        assert "X-Amz-Security-Token" in url
        assert urllib.request.urlopen(url).read() == b"t"
        with pytest.raises(ClientError) as e:
            client(tenv, access_key=access_key, secret=secret).get_object(Bucket=b, Key="tok")
        assert e.value.response["Error"]["Code"] == "InvalidToken"
        with pytest.raises(ClientError) as e:
            client(tenv, access_key=access_key, secret=secret, token="wrong").get_object(Bucket=b, Key="tok")
        assert e.value.response["Error"]["Code"] == "InvalidToken"
        st = ctl(tenv, "GET", "/stats")
        assert len(st["signature_failures"]) == 2
        # SIGTERM shuts down promptly even with a stalled request in flight
        ctl(tenv, "POST", "/faults", {"action": "stall", "count": 1})
        t = threading.Thread(target=lambda: pytest.raises(
            Exception, client(tenv, access_key=access_key, secret=secret, token=token,
                              timeout=30).get_object, Bucket=b, Key="tok"))
        t.start()
        time.sleep(0.5)
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=5) == 0
        t.join(10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    log = logf.read_text()
    assert SECRET not in log and secret not in log


def test_sts_credentials_learned_and_checked(stack, expect_failures):
    """STS through the front: AssumeRole (signed for "sts") is verified and forwarded, and the
    temporary credentials in its answer are accepted from then on, session token required;
    a presigned URL's token never reaches the front's log."""
    rgw_only(stack)
    sts = boto3.client("sts", endpoint_url=stack["S3_ENDPOINT"], region_name=stack["S3_REGION"],
                       aws_access_key_id=stack["S3_ACCESS_KEY"], aws_secret_access_key=SECRET)
    role = subprocess.check_output(["bash", "-c", '. "$1"; echo "$RGW_ROLE_ARN"', "x",
                                    os.path.join(stack["dir"], "s3.env")], text=True).strip()
    c = sts.assume_role(RoleArn=role, RoleSessionName="harness")["Credentials"]
    learned = {x["access_key"]: x for x in ctl(stack, "GET", "/sts_credentials")["credentials"]}
    assert c["AccessKeyId"] in learned and learned[c["AccessKeyId"]]["action"] == "AssumeRole"
    assert learned[c["AccessKeyId"]]["expires_at"] > time.time() + 600
    temp = client(stack, access_key=c["AccessKeyId"], secret=c["SecretAccessKey"], token=c["SessionToken"])
    b = stack["S3_BUCKET"]
    temp.put_object(Bucket=b, Key="sts-learned", Body=b"s")
    assert temp.get_object(Bucket=b, Key="sts-learned")["Body"].read() == b"s"
    assert ctl(stack, "GET", "/stats")["verified_by_key"][c["AccessKeyId"]] == 2
    url = temp.generate_presigned_url("get_object", Params={"Bucket": b, "Key": "sts-learned"})
    assert urllib.request.urlopen(url).read() == b"s"
    with pytest.raises(ClientError) as e:  # without its token
        client(stack, access_key=c["AccessKeyId"], secret=c["SecretAccessKey"]).get_object(Bucket=b, Key="sts-learned")
    assert e.value.response["Error"]["Code"] == "InvalidToken"
    with open(os.path.join(stack["dir"], "s3front.log")) as f:
        log = f.read()
    assert "X-Amz-Security-Token=REDACTED" in log
    leaked = c["SecretAccessKey"] in log or urllib.parse.quote(c["SessionToken"], safe="")[:40] in log
    assert not leaked, "a temporary secret or token is in the front's log"


def test_pass_through_server_checks_signature_itself(stack, expect_failures):
    """In pass-through mode the request reaches RGW unchanged: a signature the front
    accepts (its secret switched to one RGW does not know) is still refused by RGW, and
    a presigned URL (Host header and query signed) works through the front."""
    rgw_only(stack)
    b = stack["S3_BUCKET"]
    client(stack).put_object(Bucket=b, Key="pt", Body=b"pass-through")
    ctl(stack, "POST", "/credentials", {"secret_key": "known-to-the-front-only"})
    try:
        ctl(stack, "POST", "/reset", {"stats_only": True})
        with pytest.raises(ClientError) as e:
            client(stack, secret="known-to-the-front-only").get_object(Bucket=b, Key="pt")
        # RGW 16.2 answers AccessDenied instead of SignatureDoesNotMatch once its STS is enabled
        assert e.value.response["Error"]["Code"] in ("SignatureDoesNotMatch", "AccessDenied")
        assert e.value.response["ResponseMetadata"]["HTTPHeaders"]["x-amz-request-id"].startswith("tx"), \
            "the refusal did not come from RGW"
        st = ctl(stack, "GET", "/stats")
        assert st["verified"] == 1 and st["forwarded"] == 1 and st["expected_failures"] == []
    finally:
        ctl(stack, "POST", "/credentials", {"restore": True})
    url = client(stack).generate_presigned_url("get_object", Params={"Bucket": b, "Key": "pt"}, ExpiresIn=60)
    assert urllib.request.urlopen(url).read() == b"pass-through"
    # RGW itself refuses what the front would let through with another Host header
    path = "/%s/pt" % b
    h = botocore_signed(stack, "GET", path)
    h["Host"] = "127.0.0.1:1"
    st, _, body = raw(stack, "GET", path, headers=h)
    assert st == 403, (st, body)


# ---------------------------------------------------------------- rejected

def test_wrong_secret_rejected_and_recorded(stack, expect_failures):
    with pytest.raises(ClientError) as e:
        client(stack, secret="not-the-secret").put_object(
            Bucket=stack["S3_BUCKET"], Key="ws", Body=b"x")
    assert e.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    st = ctl(stack, "GET", "/stats")
    assert st["signature_failures"] == []
    f = st["expected_failures"]
    assert len(f) == 1 and f[0]["method"] == "PUT" and f[0]["path"] == "/reports/ws"
    assert f[0]["code"] == "SignatureDoesNotMatch" and "canonical_request" in f[0]
    assert SECRET not in json.dumps(st)
    assert st["forwarded"] == 0
    with pytest.raises(ClientError):
        backend_client(stack).head_object(Bucket=stack["S3_BUCKET"], Key="ws")


def test_unexpected_failure_is_recorded_then_reset(stack):
    with pytest.raises(ClientError):
        client(stack, secret="bad").head_object(Bucket=stack["S3_BUCKET"], Key="x")
    st = ctl(stack, "GET", "/stats")
    assert len(st["signature_failures"]) == 1 and st["expected_failures"] == []
    assert st["signature_failures"][0]["method"] == "HEAD"
    ctl(stack, "POST", "/reset")
    st = ctl(stack, "GET", "/stats")
    assert st["signature_failures"] == [] and st["requests"] == 0


def test_unknown_key_and_credentials_switch(stack, expect_failures):
    """The front accepts other credentials on request (the stack's second key pair, which
    RGW knows too): the first ones are then unknown to it."""
    b = stack["S3_BUCKET"]
    with pytest.raises(ClientError) as e:
        client(stack, access_key="nobody").list_objects_v2(Bucket=b)
    assert e.value.response["Error"]["Code"] == "InvalidAccessKeyId"
    alt_key, alt_secret = stack["S3_ALT_ACCESS_KEY"], stack["S3_ALT_SECRET_KEY"]
    ctl(stack, "POST", "/credentials", {"access_key": alt_key, "secret_key": alt_secret})
    try:
        with pytest.raises(ClientError) as e:
            client(stack).list_objects_v2(Bucket=b)
        assert e.value.response["Error"]["Code"] == "InvalidAccessKeyId"
        with pytest.raises(ClientError) as e:
            client(stack, access_key=alt_key, secret="rotated-secret").list_objects_v2(Bucket=b)
        assert e.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
        client(stack, access_key=alt_key, secret=alt_secret).list_objects_v2(Bucket=b)
    finally:
        ctl(stack, "POST", "/credentials", {"restore": True})
    client(stack).list_objects_v2(Bucket=b)
    st = ctl(stack, "GET", "/stats")
    assert [f["code"] for f in st["expected_failures"]] == [
        "InvalidAccessKeyId", "InvalidAccessKeyId", "SignatureDoesNotMatch"]
    assert "rotated-secret" not in json.dumps(st) and alt_secret not in json.dumps(st)


def test_tampering_rejected(stack, expect_failures):
    b = stack["S3_BUCKET"]
    path = "/%s/tamper" % b
    body = b"original body!"
    # tampered body (same length)
    h = botocore_signed(stack, "PUT", path, body=body)
    st, _, resp = raw(stack, "PUT", path, body=b"tampered body!", headers=h)
    assert st == 400 and b"<Code>XAmzContentSHA256Mismatch</Code>" in resp
    assert b"<RequestId>" in resp
    # tampered signed header
    h = botocore_signed(stack, "PUT", path, body=body,
                        headers={"Content-Type": "text/plain", "x-amz-meta-a": "1"})
    h["x-amz-meta-a"] = "2"
    st, _, resp = raw(stack, "PUT", path, body=body, headers=h)
    assert st == 403 and b"<Code>SignatureDoesNotMatch</Code>" in resp
    # unsigned x-amz-* header added afterwards
    h = botocore_signed(stack, "PUT", path, body=body)
    h["x-amz-meta-extra"] = "sneaky"
    st, _, resp = raw(stack, "PUT", path, body=body, headers=h)
    assert st == 403
    # unsigned request
    st, _, resp = raw(stack, "GET", path)
    assert st == 403 and b"<Code>AccessDenied</Code>" in resp
    # wrong Content-MD5 (signed, payload hash correct)
    h = botocore_signed(stack, "PUT", path, body=body,
                        headers={"Content-MD5": "AAAAAAAAAAAAAAAAAAAAAA=="})
    st, _, resp = raw(stack, "PUT", path, body=body, headers=h)
    assert st == 400 and b"<Code>BadDigest</Code>" in resp
    # date too far in the past (signed correctly otherwise)
    old = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=20)
    h = s3front.sign_request("GET", path, [], {"host": urllib.parse.urlsplit(
        stack["S3_ENDPOINT"]).netloc}, b"", stack["S3_ACCESS_KEY"], SECRET,
        "us-east-1", now=old)
    st, _, resp = raw(stack, "GET", path, headers=h)
    assert st == 403 and b"RequestTimeTooSkewed" in resp
    # wrong region in the credential scope
    s3 = boto3.client("s3", endpoint_url=stack["S3_ENDPOINT"], region_name="eu-west-1",
                      aws_access_key_id=stack["S3_ACCESS_KEY"],
                      aws_secret_access_key=SECRET,
                      config=Config(signature_version="s3v4",
                                    s3={"addressing_style": "path"},
                                    retries={"total_max_attempts": 1}))
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=b, Key="tamper")
    # path not canonically encoded (lowercase hex)
    p2 = "/%s/a%%2fb" % b
    h = s3front.sign_request("GET", p2, [], {"host": urllib.parse.urlsplit(
        stack["S3_ENDPOINT"]).netloc}, b"", stack["S3_ACCESS_KEY"], SECRET, "us-east-1")
    st, _, resp = raw(stack, "GET", p2, headers=h)
    assert st == 403
    stats = ctl(stack, "GET", "/stats")
    reasons = [f["reason"] for f in stats["expected_failures"]]
    # (botocore retries the wrong-region request once itself)
    assert len(set(reasons)) == 8, "\n".join(reasons)
    assert any("region" in r for r in reasons)
    assert any("lowercase hex" in r for r in reasons)
    assert any("not signed" in r for r in reasons)
    assert stats["forwarded"] == 0


def test_expired_presign_rejected(stack, expect_failures):
    s3 = client(stack)
    b = stack["S3_BUCKET"]
    s3.put_object(Bucket=b, Key="exp", Body=b"e")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": b, "Key": "exp"},
                                    ExpiresIn=1)
    time.sleep(2.1)
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url)
    assert e.value.code == 403
    assert b"expired" in e.value.read()
    # tampered presigned URL (other key)
    url = s3.generate_presigned_url("get_object", Params={"Bucket": b, "Key": "exp"},
                                    ExpiresIn=60)
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url.replace("/exp?", "/exq?"))
    assert e.value.code == 403
    st = ctl(stack, "GET", "/stats")
    assert [f["code"] for f in st["expected_failures"]] == [
        "AccessDenied", "SignatureDoesNotMatch"]


# ---------------------------------------------------------------- faults

def test_fault_status_with_filters(stack):
    s3 = client(stack)
    b = stack["S3_BUCKET"]
    s3.put_object(Bucket=b, Key="f/one", Body=b"1")
    ctl(stack, "POST", "/faults", {"rules": [
        {"method": "GET", "path_regex": "/f/one$", "action": "status", "status": 503,
         "count": 2},
        {"method": "PUT", "action": "status", "status": 500, "count": 1},
        {"action": "status", "status": 403, "count": 1, "probability": 0.0},
    ]})
    s3.head_object(Bucket=b, Key="f/one")  # HEAD is not matched
    for _ in range(2):
        with pytest.raises(ClientError) as e:
            s3.get_object(Bucket=b, Key="f/one")
        assert e.value.response["Error"]["Code"] == "SlowDown"
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert s3.get_object(Bucket=b, Key="f/one")["Body"].read() == b"1"
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=b, Key="f/two", Body=b"2")
    assert e.value.response["Error"]["Code"] == "InternalError"
    s3.put_object(Bucket=b, Key="f/two", Body=b"2")
    st = ctl(stack, "GET", "/stats")
    assert st["faults_injected"] == {"status": 3}
    assert [r["action"] for r in st["active_faults"]] == ["status"]  # p=0 rule left
    ctl(stack, "DELETE", "/faults")
    assert ctl(stack, "GET", "/faults")["rules"] == []
    # forever
    ctl(stack, "POST", "/faults", {"action": "status", "status": 403, "count": -1,
                                   "path_regex": "forever"})
    for _ in range(3):
        with pytest.raises(ClientError) as e:
            s3.get_object(Bucket=b, Key="forever")
        assert e.value.response["Error"]["Code"] == "AccessDenied"
    ctl(stack, "DELETE", "/faults")
    assert ctl(stack, "GET", "/stats")["faults_injected"] == {"status": 6}


def test_fault_delay_does_not_block_others(stack):
    s3 = client(stack)
    b = stack["S3_BUCKET"]
    s3.put_object(Bucket=b, Key="slow", Body=b"s")
    ctl(stack, "POST", "/faults", {"action": "delay", "seconds": 1.5,
                                   "path_regex": "slow", "count": 1})
    res = {}

    def slow():
        t0 = time.time()
        res["body"] = client(stack).get_object(Bucket=b, Key="slow")["Body"].read()
        res["t"] = time.time() - t0
    th = threading.Thread(target=slow)
    th.start()
    time.sleep(0.2)
    t0 = time.time()
    s3.list_objects_v2(Bucket=b)
    assert time.time() - t0 < 1.0
    th.join(10)
    assert res["body"] == b"s" and res["t"] >= 1.4
    assert ctl(stack, "GET", "/stats")["faults_injected"] == {"delay": 1}


def test_fault_stall(stack):
    b = stack["S3_BUCKET"]
    client(stack).put_object(Bucket=b, Key="stall", Body=b"z")
    ctl(stack, "POST", "/faults", {"action": "stall", "count": 1})
    t0 = time.time()
    with pytest.raises(Exception) as e:
        client(stack, timeout=1).get_object(Bucket=b, Key="stall")
    assert "timeout" in repr(e.value).lower() or "timed out" in str(e.value).lower()
    assert time.time() - t0 < 5
    assert client(stack).get_object(Bucket=b, Key="stall")["Body"].read() == b"z"
    assert ctl(stack, "GET", "/stats")["faults_injected"] == {"stall": 1}


def test_fault_reset_midway(stack):
    b = stack["S3_BUCKET"]
    data = os.urandom(2 * 1024 * 1024)
    ctl(stack, "POST", "/faults", {"method": "PUT", "action": "reset", "count": 1})
    path = "/%s/halfway" % b
    h = botocore_signed(stack, "PUT", path, body=data)
    with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
        raw(stack, "PUT", path, body=data, headers=h)
    with pytest.raises(ClientError):
        backend_client(stack).head_object(Bucket=b, Key="halfway")
    st = ctl(stack, "GET", "/stats")
    assert st["faults_injected"] == {"reset": 1} and st["verified"] == 0
    client(stack).put_object(Bucket=b, Key="halfway", Body=data)


def test_fault_truncate(stack):
    b = stack["S3_BUCKET"]
    data = os.urandom(100000)
    client(stack).put_object(Bucket=b, Key="trunc", Body=data)
    ctl(stack, "POST", "/faults", {"method": "GET", "action": "truncate", "count": 1})
    path = "/%s/trunc" % b
    u = urllib.parse.urlsplit(stack["S3_ENDPOINT"])
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    conn.request("GET", path, headers=botocore_signed(stack, "GET", path))
    r = conn.getresponse()
    assert r.status == 200 and int(r.getheader("Content-Length")) == len(data)
    with pytest.raises(http.client.IncompleteRead) as e:
        r.read()
    assert len(e.value.partial) == len(data) // 2
    conn.close()
    assert ctl(stack, "GET", "/stats")["faults_injected"] == {"truncate": 1}


def test_fault_wrong_etag_and_corrupt_body(stack):
    s3 = client(stack)
    b = stack["S3_BUCKET"]
    data = b"0123456789" * 100
    ctl(stack, "POST", "/faults", {"method": "PUT", "action": "wrong_etag", "count": 1})
    r = s3.put_object(Bucket=b, Key="etag", Body=data)
    assert r["ETag"].strip('"') != hashlib.md5(data).hexdigest()
    assert s3.head_object(Bucket=b, Key="etag")["ETag"].strip('"') == \
        hashlib.md5(data).hexdigest()
    ctl(stack, "POST", "/faults", {"method": "GET", "action": "corrupt_body", "count": 1})
    got = s3.get_object(Bucket=b, Key="etag")["Body"].read()
    assert len(got) == len(data) and got != data
    assert s3.get_object(Bucket=b, Key="etag")["Body"].read() == data
    st = ctl(stack, "GET", "/stats")
    assert st["faults_injected"] == {"wrong_etag": 1, "corrupt_body": 1}


def test_control_api_errors(stack):
    with pytest.raises(urllib.error.HTTPError) as e:
        ctl(stack, "POST", "/faults", {"action": "explode"})
    assert e.value.code == 400
    with pytest.raises(urllib.error.HTTPError) as e:
        ctl(stack, "GET", "/nope")
    assert e.value.code == 404
