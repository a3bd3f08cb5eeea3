"""Small fake AWS services on 127.0.0.1 for the credentials tests.

FakeSts answers STS AssumeRoleWithWebIdentity, FakeImds the EC2 instance
metadata service (IMDSv2). Both hand out *real* temporary credentials of the
test S3 server: each answer gets fresh ones from RGW's STS (GetSessionToken,
signed with the stack's keys) through the verifying front, so the front and
RGW check every request made with them, session token included. What the
fakes change is the Expiration they announce (short, so that refreshes and
expiry happen within a test) and what they accept.

Both verify what they are sent and record every violation; a test asserts
that there were none. Both listen on loopback only, on free ports.
"""
import datetime
import http.server
import json
import re
import threading
import time
import urllib.parse

ISO = "%Y-%m-%dT%H:%M:%SZ"
SESSION_NAME = re.compile(r"^[\w+=,.@-]{2,64}$")


def iso(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime(ISO)


class RealCredentials:
    """Fresh temporary credentials from the S3 server's STS, through the front."""

    def __init__(self, endpoint, access_key, secret_key, region):
        import boto3
        self.sts = boto3.client("sts", endpoint_url=endpoint, region_name=region, aws_access_key_id=access_key,
                                aws_secret_access_key=secret_key)
        self.issued = []  # every (access key, secret, token) handed out
        self.lock = threading.Lock()

    def get(self):
        c = self.sts.get_session_token(DurationSeconds=900)["Credentials"]
        creds = (c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"])
        with self.lock:
            self.issued.append(creds)
        return creds


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False


class _Fake:
    def __init__(self, handler):
        self.lock = threading.Lock()
        self.requests = []    # what was received (never printed: it holds tokens)
        self.violations = []  # what a real service would have refused as malformed
        self.hang = False     # answer nothing for a minute
        self.lifetime = 60    # seconds of the announced Expiration
        fake = self

        class Handler(handler):
            owner = fake

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.server.server_address[1]

    def violation(self, what):
        with self.lock:
            self.violations.append(what)

    def record(self, entry):
        with self.lock:
            self.requests.append(entry)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    owner = None

    def log_message(self, fmt, *args):  # quiet, and never a token
        pass

    def reply(self, status, body, ctype="text/xml"):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def hang_if_asked(self):
        if self.owner.hang:
            time.sleep(60)
            return True
        return False


class _StsHandler(_Handler):
    def do_POST(self):
        sts = self.owner
        raw = self.body()
        form = dict(urllib.parse.parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
        sts.record({"path": self.path, "form": form, "headers": dict(self.headers)})
        if self.hang_if_asked():
            return
        # What AWS STS checks about the request itself.
        problems = []
        if self.path != "/":
            problems.append("target %r is not / (a token in the URL?)" % self.path.split("?")[0])
        if not (self.headers.get("Content-Type") or "").startswith("application/x-www-form-urlencoded"):
            problems.append("content type %r" % self.headers.get("Content-Type"))
        for name in ("Authorization", "X-Amz-Security-Token"):
            if self.headers.get(name) is not None:
                problems.append("%s header on an unsigned AssumeRoleWithWebIdentity" % name)
        if form.get("Action") != "AssumeRoleWithWebIdentity":
            problems.append("Action %r" % form.get("Action"))
        if form.get("Version") != "2011-06-15":
            problems.append("Version %r" % form.get("Version"))
        if not SESSION_NAME.match(form.get("RoleSessionName", "")):
            problems.append("RoleSessionName %r" % form.get("RoleSessionName"))
        expected = {"Action", "Version", "RoleArn", "RoleSessionName", "WebIdentityToken"}
        if set(form) - expected:
            problems.append("unexpected parameters %s" % sorted(set(form) - expected))
        if problems:
            for p in problems:
                sts.violation(p)
            return self.reply(400, sts.error("ValidationError", "; ".join(problems)))
        if form.get("RoleArn") != sts.role_arn:
            return self.reply(403, sts.error("AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity"))
        token = form.get("WebIdentityToken", "")
        if token in sts.expired_tokens:
            return self.reply(400, sts.error("ExpiredTokenException", "Token expired: current date/time is after exp"))
        if token != sts.accepted_token:
            # A careless server that repeats what it was sent: reportstore must not.
            return self.reply(400, sts.error("InvalidIdentityToken", "Unknown token %s" % token))
        try:
            key, secret, session = sts.real.get()
        except Exception as e:  # noqa: BLE001
            return self.reply(503, sts.error("ServiceUnavailable", "no credentials from the S3 server: %s" % e))
        with sts.lock:
            sts.keys.append(key)
        return self.reply(200, (
            '<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
            "<AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>%s</AccessKeyId>"
            "<SecretAccessKey>%s</SecretAccessKey><SessionToken>%s</SessionToken>"
            "<Expiration>%s</Expiration></Credentials><SubjectFromWebIdentityToken>system:serviceaccount:db:pg"
            "</SubjectFromWebIdentityToken><AssumedRoleUser><Arn>%s/%s</Arn><AssumedRoleId>AROA:%s</AssumedRoleId>"
            "</AssumedRoleUser></AssumeRoleWithWebIdentityResult><ResponseMetadata><RequestId>fake-%d</RequestId>"
            "</ResponseMetadata></AssumeRoleWithWebIdentityResponse>"
            % (key, secret, session, iso(time.time() + sts.lifetime), sts.role_arn, form["RoleSessionName"],
               form["RoleSessionName"], len(sts.requests))))


class FakeSts(_Fake):
    """AssumeRoleWithWebIdentity for one role and one accepted token."""

    def __init__(self, real, role_arn):
        self.real = real
        self.role_arn = role_arn
        self.accepted_token = None
        self.expired_tokens = set()
        self.keys = []  # access key ids handed out
        _Fake.__init__(self, _StsHandler)

    @staticmethod
    def error(code, message):
        return ('<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
                "<Code>%s</Code><Message>%s</Message></Error><RequestId>fake-error</RequestId></ErrorResponse>"
                % (code, message))

    def tokens_seen(self):
        with self.lock:
            return [r["form"].get("WebIdentityToken") for r in self.requests]


class _ImdsHandler(_Handler):
    def do_PUT(self):
        imds = self.owner
        self.body()
        imds.record({"method": "PUT", "path": self.path, "headers": dict(self.headers)})
        if self.hang_if_asked():
            return
        if self.path != "/latest/api/token":
            return self.reply(404, "not found", "text/plain")
        ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
        if not ttl or not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
            imds.violation("token request with TTL header %r" % ttl)
            return self.reply(400, "bad ttl", "text/plain")
        if self.headers.get("X-Forwarded-For"):
            imds.violation("token request through a proxy")  # IMDS refuses those
            return self.reply(403, "forbidden", "text/plain")
        return self.reply(200, imds.session_token, "text/plain")

    def do_GET(self):
        imds = self.owner
        imds.record({"method": "GET", "path": self.path, "headers": dict(self.headers)})
        if self.hang_if_asked():
            return
        if self.headers.get("X-aws-ec2-metadata-token") != imds.session_token:
            imds.violation("GET %s without the IMDSv2 token" % self.path)
            return self.reply(401, "unauthorized", "text/plain")
        base = "/latest/meta-data/iam/security-credentials/"
        if self.path == base:
            return self.reply(200, imds.role_name, "text/plain")
        if self.path == base + imds.role_name:
            try:
                key, secret, session = imds.real.get()
            except Exception:  # noqa: BLE001
                return self.reply(500, "no credentials from the S3 server", "text/plain")
            with imds.lock:
                imds.keys.append(key)
            return self.reply(200, json.dumps({
                "Code": "Success", "LastUpdated": iso(time.time()), "Type": "AWS-HMAC", "AccessKeyId": key,
                "SecretAccessKey": secret, "Token": session, "Expiration": iso(time.time() + imds.lifetime)},
                indent=2), "text/plain")
        return self.reply(404, "not found", "text/plain")


class FakeImds(_Fake):
    """IMDSv2 with one instance role."""

    def __init__(self, real, role_name="reportstore-instance-role"):
        self.real = real
        self.role_name = role_name
        self.session_token = "AQAEAFakeImdsSessionToken-%d==" % int(time.time() * 1000)
        self.keys = []  # access key ids handed out
        _Fake.__init__(self, _ImdsHandler)
