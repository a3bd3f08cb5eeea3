#!/usr/bin/python3
"""s3front: a SigV4-verifying, fault-injecting front for a local S3 backend.

Runs with the plain Debian /usr/bin/python3 (stdlib only).

Every request (except the unsigned control API under /__control/) is
verified with an independent AWS Signature Version 4 implementation and,
if valid, forwarded to the backend. With --pass-through (a backend that checks
signatures itself, Ceph RGW) the request goes on unchanged: same target, Host,
Authorization and x-amz-* headers and body, so the server checks the client's
own signature too. Without it (moto, s3rver) the client's authentication is
stripped and replaced by a signature for the backend's own credentials.
STS requests (POST / with Action=AssumeRole or GetSessionToken, signed for
service "sts"; AssumeRoleWithWebIdentity, unsigned) are verified and
forwarded the same way, and the temporary credentials in STS's answers are
accepted from then on, until they expire.
Verification failures are answered with an S3-style XML error and recorded;
the secret key is never logged or returned.

Usage:
  s3front.py --port 9310 --backend http://127.0.0.1:9311 [--pass-through] \
      --access-key AK --secret-key SK [--session-token T] [--region us-east-1] \
      [--log FILE]
  s3front.py --create-bucket NAME --endpoint http://127.0.0.1:9310 \
      --access-key AK --secret-key SK [--session-token T] [--region us-east-1]
"""

import argparse
import base64
import binascii
import datetime
import hashlib
import hmac
import http.client
import http.server
import json
import os
import random
import re
import select
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
import urllib.parse
import uuid

CONTROL_PREFIX = "/__control"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MAX_SKEW = 15 * 60
UNRESERVED = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~"
)
HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
    "te", "trailer", "trailers", "transfer-encoding", "upgrade",
}
DEFAULT_CODES = {
    400: "BadRequest", 403: "AccessDenied", 404: "NoSuchKey",
    409: "OperationAborted", 412: "PreconditionFailed", 416: "InvalidRange",
    429: "SlowDown", 500: "InternalError", 501: "NotImplemented",
    502: "BadGateway", 503: "SlowDown", 504: "GatewayTimeout",
}
FAULT_ACTIONS = ("status", "delay", "stall", "reset", "truncate",
                 "wrong_etag", "corrupt_body")

STOPPING = threading.Event()
# STS actions the front verifies (signed for service "sts") and learns the
# credentials of; AssumeRoleWithWebIdentity is unsigned (the token is the proof).
STS_SIGNED_ACTIONS = ("AssumeRole", "GetSessionToken")
STS_UNSIGNED_ACTIONS = ("AssumeRoleWithWebIdentity",)


# --------------------------------------------------------------------------
# SigV4 primitives (independent implementation, stdlib only)
# --------------------------------------------------------------------------

def _hmac(key, msg):
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def signing_key(secret, date, region, service):
    k = _hmac(("AWS4" + secret).encode("utf-8"), date)
    k = _hmac(k, region)
    k = _hmac(k, service)
    return _hmac(k, "aws4_request")


def uri_encode(s, safe=""):
    """RFC 3986 encoding as SigV4 wants it (uppercase hex, unreserved kept)."""
    out = []
    for b in s.encode("utf-8"):
        c = chr(b)
        if c in UNRESERVED or c in safe:
            out.append(c)
        else:
            out.append("%%%02X" % b)
    return "".join(out)


def check_encoded_path(path):
    """Return None if `path` is a valid, canonically once-encoded S3 path,
    otherwise a reason string."""
    if not path.startswith("/"):
        return "path does not start with '/'"
    raw = bytearray()
    i = 0
    n = len(path)
    while i < n:
        c = path[i]
        if c == "%":
            hx = path[i + 1:i + 3]
            if len(hx) != 2 or any(h not in "0123456789abcdefABCDEF" for h in hx):
                return "invalid percent-escape at offset %d" % i
            if hx != hx.upper():
                return "lowercase hex in percent-escape %%%s (must be uppercase)" % hx
            b = int(hx, 16)
            if chr(b) in UNRESERVED:
                return ("unreserved character %r percent-encoded as %%%s "
                        "(not canonical)" % (chr(b), hx))
            raw.append(b)
            i += 3
            continue
        if c in UNRESERVED or c == "/":
            raw.append(ord(c))
            i += 1
            continue
        return "character %r in path is not percent-encoded" % c
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return "decoded path is not valid UTF-8"
    return None


def parse_query(query):
    """Raw query string -> list of (decoded_name, decoded_value)."""
    pairs = []
    if not query:
        return pairs
    for part in query.split("&"):
        if part == "":
            continue
        if "=" in part:
            k, v = part.split("=", 1)
        else:
            k, v = part, ""
        pairs.append((urllib.parse.unquote(k), urllib.parse.unquote(v)))
    return pairs


def canonical_query(pairs, exclude=()):
    enc = [(uri_encode(k), uri_encode(v)) for k, v in pairs if k not in exclude]
    enc.sort()
    return "&".join("%s=%s" % kv for kv in enc)


def canonical_header_value(values):
    return ",".join(re.sub(r"\s+", " ", v.strip()) for v in values)


def amz_date_to_epoch(s):
    d = datetime.datetime.strptime(s, "%Y%m%dT%H%M%SZ")
    return d.replace(tzinfo=datetime.timezone.utc).timestamp()


def sign_request(method, path, query_pairs, headers, body, access_key, secret,
                 region, session_token=None, service="s3", now=None,
                 payload_hash=None):
    """Sign a request (header auth). `headers` is a dict (modified and
    returned). `path` must be already encoded."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    date = amz_date[:8]
    payload_hash = payload_hash or hashlib.sha256(body or b"").hexdigest()
    headers = {k.lower(): v for k, v in headers.items()}
    headers["x-amz-date"] = amz_date
    headers["x-amz-content-sha256"] = payload_hash
    if session_token:
        headers["x-amz-security-token"] = session_token
    signed = sorted(headers)
    creq = "\n".join([
        method, path, canonical_query(query_pairs),
        "".join("%s:%s\n" % (h, canonical_header_value([headers[h]])) for h in signed),
        ";".join(signed), payload_hash,
    ])
    scope = "%s/%s/%s/aws4_request" % (date, region, service)
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                     hashlib.sha256(creq.encode("utf-8")).hexdigest()])
    sig = hmac.new(signing_key(secret, date, region, service),
                   sts.encode("utf-8"), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s"
        % (access_key, scope, ";".join(signed), sig))
    return headers


# Access key id whose secret nobody knows (see verify()).
DECOY_ACCESS_KEY = "rstest-decoy-key"


class AuthError(Exception):
    def __init__(self, status, code, message, reason=None, detail=None):
        Exception.__init__(self, message)
        self.status = status
        self.code = code
        self.message = message
        self.reason = reason or message
        self.detail = detail or {}


def _sigfail(reason, detail=None):
    return AuthError(403, "SignatureDoesNotMatch",
                     "The request signature we calculated does not match the "
                     "signature you provided. Check your key and signing method.",
                     reason, detail)


# --------------------------------------------------------------------------
# Shared state
# --------------------------------------------------------------------------

class State:
    def __init__(self, access_key, secret_key, session_token, region):
        self.lock = threading.Lock()
        self.initial_creds = (access_key, secret_key, session_token)
        self.access_key, self.secret_key, self.session_token = self.initial_creds
        self.region = region
        self.sts_learned = {}
        self.reset_all()

    def reset_stats(self):
        with self.lock:
            self.requests = 0
            self.verified = 0
            self.verified_by_key = {}  # access key id -> requests verified with it
            self.forwarded = 0
            self.signature_failures = []
            self.expected_failures = []
            self.faults_injected = {}

    def reset_all(self):
        self.reset_stats()
        with self.lock:
            self.rules = []
            self.rule_seq = 0
            self.expect_failures = False
            self.access_key, self.secret_key, self.session_token = self.initial_creds

    def creds(self):
        with self.lock:
            return self.access_key, self.secret_key, self.session_token

    # Temporary credentials STS issued through this front (AssumeRole,
    # GetSessionToken, AssumeRoleWithWebIdentity answers it relayed). They are
    # real credentials of the backend, so they stay accepted, like there,
    # until they expire (a reset does not forget them).
    def learn_sts_credentials(self, access_key, secret_key, session_token, expires_at, action):
        with self.lock:
            self.sts_learned[access_key] = {
                "access_key": access_key, "secret_key": secret_key, "session_token": session_token,
                "expires_at": expires_at, "action": action, "learned_at": time.time()}

    def sts_credentials(self, access_key):
        with self.lock:
            c = self.sts_learned.get(access_key)
            return dict(c) if c else None

    def all_sts_credentials(self):
        with self.lock:
            return [dict(c) for c in self.sts_learned.values()]

    def record_failure(self, entry):
        with self.lock:
            entry["expected"] = self.expect_failures or bool(entry.get("decoy"))
            if entry["expected"]:
                self.expected_failures.append(entry)
            else:
                self.signature_failures.append(entry)

    def count_fault(self, kind):
        with self.lock:
            self.faults_injected[kind] = self.faults_injected.get(kind, 0) + 1

    def stats(self):
        with self.lock:
            return {
                "requests": self.requests,
                "verified": self.verified,
                "verified_by_key": dict(self.verified_by_key),
                "forwarded": self.forwarded,
                "signature_failures": list(self.signature_failures),
                "expected_failures": list(self.expected_failures),
                "faults_injected": dict(self.faults_injected),
                "expect_failures": self.expect_failures,
                "active_faults": [dict(r) for r in self.rules],
                "access_key": self.access_key,
                "session_token_required": self.session_token is not None,
                "region": self.region,
            }

    def set_rules(self, rules, append=False):
        checked = []
        for r in rules:
            if not isinstance(r, dict):
                raise ValueError("rule must be an object")
            action = r.get("action")
            if action not in FAULT_ACTIONS:
                raise ValueError("unknown action %r (one of %s)"
                                 % (action, ", ".join(FAULT_ACTIONS)))
            r = dict(r)
            if r.get("path_regex") is not None:
                re.compile(r["path_regex"])
            r["count"] = int(r.get("count", 1))
            p = r.get("probability")
            if p is not None and not (0 <= float(p) <= 1):
                raise ValueError("probability must be within 0..1")
            checked.append(r)
        with self.lock:
            if not append:
                self.rules = []
            for r in checked:
                self.rule_seq += 1
                r["id"] = self.rule_seq
                self.rules.append(r)
            return [dict(r) for r in self.rules]

    def take_fault(self, method, target, actions):
        """Find the first active rule matching the request whose action is in
        `actions`; consume one use of it and return a copy, else None."""
        with self.lock:
            for r in self.rules:
                if r["action"] not in actions or r["count"] == 0:
                    continue
                m = r.get("method")
                if m:
                    ms = [m] if isinstance(m, str) else list(m)
                    if method.upper() not in [x.upper() for x in ms]:
                        continue
                rx = r.get("path_regex")
                if rx and not re.search(rx, target):
                    continue
                p = r.get("probability")
                if p is not None and random.random() >= float(p):
                    continue
                if r["count"] > 0:
                    r["count"] -= 1
                    r["applied"] = r.get("applied", 0) + 1
                else:
                    r["applied"] = r.get("applied", 0) + 1
                self.faults_injected[r["action"]] = \
                    self.faults_injected.get(r["action"], 0) + 1
                out = dict(r)
                self.rules = [x for x in self.rules if x["count"] != 0]
                return out
        return None


# --------------------------------------------------------------------------
# Request handler
# --------------------------------------------------------------------------

class Front(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "s3front"
    sys_version = ""
    timeout = 300  # idle keep-alive connections

    # set by main()
    state = None
    backend = None          # urllib.parse.SplitResult
    backend_access_key = "S3RVER"
    backend_secret_key = "S3RVER"
    backend_region = "us-east-1"
    pass_through = False
    logf = None
    sts_action = None       # the STS action of the request being served, if it is one

    # -- logging ----------------------------------------------------------
    def log_message(self, fmt, *args):
        log("%s %s" % (self.address_string(), fmt % args))

    def send_response_only(self, code, message=None):
        # A presigned URL's session token is a secret: never in the log.
        target = re.sub(r"(X-Amz-Security-Token=)[^&\s]*", r"\1REDACTED", getattr(self, "target", self.path))
        log("%s %s %s -> %d" % (self.address_string(), self.command, target, code))
        http.server.BaseHTTPRequestHandler.send_response_only(self, code, message)

    # -- dispatch ---------------------------------------------------------
    def do_GET(self):
        self.dispatch()

    do_PUT = do_POST = do_DELETE = do_HEAD = do_OPTIONS = do_PATCH = do_GET

    def dispatch(self):
        self.request_id = uuid.uuid4().hex[:16].upper()
        self.aws_chunked_decoded = False
        target = self.path
        if target.startswith("http://") or target.startswith("https://"):
            target = "/" + target.split("/", 3)[3] if target.count("/") >= 3 else "/"
        self.target = target
        path, _, query = target.partition("?")
        if path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/"):
            return self.control(path[len(CONTROL_PREFIX):], query)
        with self.state.lock:
            self.state.requests += 1

        # 'reset' faults act before the body has been read
        rule = self.state.take_fault(self.command, target, ("reset",))
        if rule:
            return self.fault_reset(rule)

        try:
            body = self.read_body()
        except Exception as e:  # noqa: BLE001
            log("bad request body for %s %s: %s" % (self.command, target, e))
            self.close_connection = True
            return self.send_error_xml(400, "IncompleteBody", str(e))

        raw_body = body
        self.sts_action = self.sts_action_of(path, body)
        try:
            body = self.verify(path, query, body)
        except AuthError as e:
            entry = {
                "time": time.time(), "method": self.command, "path": target,
                "code": e.code, "status": e.status, "reason": e.reason,
                "request_id": self.request_id,
            }
            entry.update(e.detail)
            self.state.record_failure(entry)
            log("REJECT %s %s -> %d %s: %s" % (self.command, target, e.status,
                                               e.code, e.reason))
            return self.send_error_xml(e.status, e.code, e.message)
        with self.state.lock:
            self.state.verified += 1

        rule = self.state.take_fault(
            self.command, target,
            ("status", "delay", "stall", "truncate", "wrong_etag", "corrupt_body"))
        if rule:
            log("FAULT %s on %s %s" % (rule["action"], self.command, target))
            a = rule["action"]
            if a == "status":
                st = int(rule.get("status", 500))
                code = rule.get("code") or DEFAULT_CODES.get(st, "InternalError")
                msg = rule.get("message") or "Injected fault"
                extra = {}
                if rule.get("retry_after") is not None:
                    extra["Retry-After"] = str(rule["retry_after"])
                return self.send_error_xml(st, code, msg, extra)
            if a == "stall":
                return self.fault_stall(rule)
            if a == "delay":
                if self.wait_or_client_gone(float(rule.get("seconds", 5))):
                    return
                rule = None
        try:
            if self.pass_through:
                status, reason, headers, rbody = self.forward_unchanged(raw_body)
            else:
                status, reason, headers, rbody = self.forward(path, query, body)
        except ConnectionRefusedError as e:
            if self.pass_through:
                # The server is down (e.g. radosgw restarting): the client sees a dropped
                # connection, as it would without the front, rather than an HTTP answer.
                log("backend down for %s %s (%s): connection reset" % (self.command, target, e))
                return self.hard_close(rst=True)
            log("backend error for %s %s: %r" % (self.command, target, e))
            return self.send_error_xml(502, "BadGateway", "backend error: %s" % e)
        except Exception as e:  # noqa: BLE001
            log("backend error for %s %s: %r" % (self.command, target, e))
            return self.send_error_xml(502, "BadGateway", "backend error: %s" % e)

        if self.sts_action and status == 200:
            self.learn_from_sts_answer(rbody)
        truncate = False
        if rule:
            a = rule["action"]
            if a == "wrong_etag":
                fake = '"%s"' % hashlib.md5(os.urandom(16)).hexdigest()
                found = False
                for i, (k, v) in enumerate(headers):
                    if k.lower() == "etag":
                        headers[i] = (k, fake)
                        found = True
                if not found:
                    headers.append(("ETag", fake))
                if rbody and b"<ETag>" in rbody:
                    rbody = re.sub(rb"<ETag>[^<]*</ETag>",
                                   b"<ETag>" + fake.replace('"', "&quot;").encode() + b"</ETag>",
                                   rbody)
            elif a == "corrupt_body":
                if rbody:
                    b = bytearray(rbody)
                    nflip = int(rule.get("bytes", 1))
                    positions = rule.get("offsets") or [
                        (len(b) // 2 + i * 7) % len(b) for i in range(nflip)]
                    for p in positions:
                        b[p % len(b)] ^= 0xFF
                    rbody = bytes(b)
            elif a == "truncate":
                truncate = True
        self.relay(status, reason, headers, rbody, truncate,
                   float(rule.get("fraction", 0.5)) if truncate else 0.5)

    # -- body handling ----------------------------------------------------
    def read_exact(self, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = self.rfile.read(min(n - len(buf), 1 << 20))
            if not chunk:
                raise IOError("client closed connection after %d of %d body bytes"
                              % (len(buf), n))
            buf += chunk
        return bytes(buf)

    def read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            body = bytearray()
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    raise IOError("eof in chunked body")
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while True:  # trailers
                        t = self.rfile.readline(65537)
                        if t in (b"\r\n", b"\n", b""):
                            break
                    break
                body += self.read_exact(size)
                self.rfile.readline(3)
            return bytes(body)
        cl = self.headers.get("Content-Length")
        if cl is None:
            return b""
        n = int(cl)
        if n < 0:
            raise IOError("negative Content-Length")
        return self.read_exact(n)

    # -- SigV4 verification -----------------------------------------------
    def sts_action_of(self, path, body):
        """The STS action of a POST / with a form body (STS's Query API), else None."""
        if self.command != "POST" or path != "/":
            return None
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            return None
        try:
            form = dict(urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError:
            return None
        action = form.get("Action")
        return action if action in STS_SIGNED_ACTIONS + STS_UNSIGNED_ACTIONS else None

    def learn_from_sts_answer(self, body):
        """Remembers the credentials of an STS answer (never logs the secrets)."""
        try:
            import xml.etree.ElementTree as ET
            root = ET.fromstring(body)
        except Exception as e:  # noqa: BLE001
            log("STS %s answer not parsed: %s" % (self.sts_action, e))
            return
        found = None
        for el in root.iter():
            if el.tag.rsplit("}", 1)[-1] == "Credentials":
                found = {c.tag.rsplit("}", 1)[-1]: (c.text or "").strip() for c in el}
                break
        if not found or not found.get("AccessKeyId"):
            log("STS %s answer without credentials" % self.sts_action)
            return
        expires_at = None
        exp = found.get("Expiration", "")
        m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)", exp)
        if m:
            expires_at = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(
                tzinfo=datetime.timezone.utc).timestamp()
        self.state.learn_sts_credentials(found["AccessKeyId"], found.get("SecretAccessKey", ""),
                                         found.get("SessionToken") or None, expires_at, self.sts_action)
        log("STS %s issued credentials %s (expire %s)" % (self.sts_action, found["AccessKeyId"], exp))

    def verify(self, path, query, body):
        st = self.state
        access_key, secret, token = st.creds()
        region = st.region
        h = self.headers
        if self.sts_action in STS_UNSIGNED_ACTIONS and h.get("Authorization") is None:
            return body  # the web identity token is the proof; STS checks it
        expected_service = "sts" if self.sts_action in STS_SIGNED_ACTIONS else "s3"
        pairs = parse_query(query)
        qdict = {}
        for k, v in pairs:
            qdict.setdefault(k, v)
        auth = h.get("Authorization")
        presigned = "X-Amz-Algorithm" in qdict or "X-Amz-Signature" in qdict
        if auth is None and not presigned and "AWSAccessKeyId" in qdict:
            raise AuthError(403, "AccessDenied", "Only AWS4-HMAC-SHA256 is accepted",
                            "SigV2 presigned query (AWSAccessKeyId/Signature) not supported")
        if auth is None and not presigned:
            raise AuthError(403, "AccessDenied", "Access Denied",
                            "unsigned request (no Authorization header and no "
                            "presigned query parameters)")
        if auth is not None and presigned:
            raise AuthError(400, "InvalidArgument",
                            "Only one auth mechanism allowed",
                            "both Authorization header and presigned query present")
        now = time.time()

        if auth is not None:
            if not auth.startswith("AWS4-HMAC-SHA256 "):
                raise AuthError(400 if auth.startswith("AWS ") else 403,
                                "InvalidRequest" if auth.startswith("AWS ") else "AccessDenied",
                                "Unsupported authorization mechanism",
                                "unsupported Authorization scheme %r" % auth.split(" ", 1)[0])
            fields = {}
            for part in auth[len("AWS4-HMAC-SHA256 "):].split(","):
                part = part.strip()
                if "=" not in part:
                    raise AuthError(400, "AuthorizationHeaderMalformed",
                                    "The authorization header is malformed",
                                    "malformed Authorization component %r" % part)
                k, v = part.split("=", 1)
                fields[k.strip()] = v.strip()
            for k in ("Credential", "SignedHeaders", "Signature"):
                if k not in fields:
                    raise AuthError(400, "AuthorizationHeaderMalformed",
                                    "The authorization header is malformed",
                                    "Authorization header lacks %s" % k)
            credential = fields["Credential"]
            signed_headers = fields["SignedHeaders"]
            signature = fields["Signature"]
            amz_date = h.get("x-amz-date") or None
            if amz_date is None and h.get("Date"):
                try:
                    d = datetime.datetime.strptime(h.get("Date"),
                                                   "%a, %d %b %Y %H:%M:%S GMT")
                    amz_date = d.strftime("%Y%m%dT%H%M%SZ")
                except ValueError:
                    pass
            if amz_date is None:
                raise AuthError(403, "AccessDenied",
                                "AWS authentication requires a valid Date or x-amz-date header",
                                "missing x-amz-date/Date header")
            payload_hash = h.get("x-amz-content-sha256")
            if payload_hash is None and expected_service != "s3":
                # Other services than S3 hash the payload themselves (botocore sends no header).
                payload_hash = hashlib.sha256(body).hexdigest()
            if payload_hash is None:
                raise AuthError(400, "InvalidRequest",
                                "Missing required header for this request: x-amz-content-sha256",
                                "missing x-amz-content-sha256 header")
            request_token = h.get("x-amz-security-token")
        else:
            if qdict.get("X-Amz-Algorithm") != "AWS4-HMAC-SHA256":
                raise AuthError(400, "AuthorizationQueryParametersError",
                                "X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\"",
                                "bad X-Amz-Algorithm %r" % qdict.get("X-Amz-Algorithm"))
            for k in ("X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires",
                      "X-Amz-SignedHeaders", "X-Amz-Signature"):
                if k not in qdict:
                    raise AuthError(400, "AuthorizationQueryParametersError",
                                    "Query-string authentication requires %s" % k,
                                    "presigned URL lacks %s" % k)
            credential = qdict["X-Amz-Credential"]
            signed_headers = qdict["X-Amz-SignedHeaders"]
            signature = qdict["X-Amz-Signature"]
            amz_date = qdict["X-Amz-Date"]
            payload_hash = h.get("x-amz-content-sha256") or "UNSIGNED-PAYLOAD"
            request_token = qdict.get("X-Amz-Security-Token")
            if request_token is None:
                request_token = h.get("x-amz-security-token")

        # credential scope
        cparts = credential.split("/")
        if len(cparts) != 5:
            raise AuthError(400, "AuthorizationHeaderMalformed",
                            "The authorization header is malformed; the Credential is mal-formed",
                            "malformed credential %r" % credential)
        cred_key, cred_date, cred_region, cred_service, cred_term = cparts
        if cred_key.startswith("rstest-decoy") and cred_key != DECOY_ACCESS_KEY:
            raise AuthError(403, "InvalidAccessKeyId",
                            "The AWS Access Key Id you provided does not exist in our records.",
                            "decoy access key id %r (deliberately unknown)" % cred_key, {"decoy": True})
        if cred_key == DECOY_ACCESS_KEY:
            # Tests that need "a wrong secret" use this key id: its secret is
            # known to nobody, so the mismatch is deliberate, and recorded as
            # expected rather than as a signing bug.
            raise AuthError(403, "SignatureDoesNotMatch",
                            "The request signature we calculated does not match the signature "
                            "you provided. Check your key and signing method.",
                            "decoy access key (deliberately wrong secret)", {"decoy": True})
        if cred_key != access_key:
            learned = st.sts_credentials(cred_key)
            if learned is None:
                raise AuthError(403, "InvalidAccessKeyId",
                                "The AWS Access Key Id you provided does not exist in our records.",
                                "unknown access key id %r" % cred_key)
            if learned["expires_at"] is not None and time.time() > learned["expires_at"]:
                raise AuthError(400, "ExpiredToken", "The provided token has expired.",
                                "temporary credentials %s expired %.0f s ago"
                                % (cred_key, time.time() - learned["expires_at"]))
            secret, token = learned["secret_key"], learned["session_token"]
        if cred_region != region:
            raise AuthError(400, "AuthorizationHeaderMalformed",
                            "The authorization header is malformed; the region '%s' is wrong; "
                            "expecting '%s'" % (cred_region, region),
                            "credential scope region %r != %r" % (cred_region, region))
        if cred_service != expected_service or cred_term != "aws4_request":
            raise AuthError(400, "AuthorizationHeaderMalformed",
                            "The authorization header is malformed; incorrect service or terminator",
                            "credential scope service/terminator %r/%r"
                            % (cred_service, cred_term))
        try:
            t_req = amz_date_to_epoch(amz_date)
        except ValueError:
            raise AuthError(403, "AccessDenied", "Invalid date format",
                            "malformed date %r" % amz_date)
        if cred_date != amz_date[:8]:
            raise AuthError(400, "AuthorizationHeaderMalformed",
                            "The authorization header is malformed; Invalid credential date.",
                            "credential scope date %r != request date %r"
                            % (cred_date, amz_date[:8]))
        if auth is not None:
            if abs(now - t_req) > MAX_SKEW:
                raise AuthError(403, "RequestTimeTooSkewed",
                                "The difference between the request time and the "
                                "current time is too large.",
                                "x-amz-date %s is %.0f s from server time"
                                % (amz_date, t_req - now))
        else:
            try:
                expires = int(qdict["X-Amz-Expires"])
            except ValueError:
                expires = -1
            if expires < 1 or expires > 604800:
                raise AuthError(400, "AuthorizationQueryParametersError",
                                "X-Amz-Expires must be between 1 and 604800 seconds",
                                "bad X-Amz-Expires %r" % qdict["X-Amz-Expires"])
            if t_req - now > MAX_SKEW:
                raise AuthError(403, "AccessDenied", "Request is not valid yet",
                                "presigned X-Amz-Date %s lies in the future" % amz_date)
            if now > t_req + expires:
                raise AuthError(403, "AccessDenied", "Request has expired",
                                "presigned URL expired %.0f s ago"
                                % (now - t_req - expires))

        # session token
        if token is not None:
            if request_token is None:
                raise AuthError(403, "InvalidToken",
                                "The provided token is malformed or otherwise invalid.",
                                "missing x-amz-security-token (session token required)")
            if not hmac.compare_digest(request_token.encode(), token.encode()):
                raise AuthError(403, "InvalidToken",
                                "The provided token is malformed or otherwise invalid.",
                                "x-amz-security-token does not match")
        elif request_token is not None:
            raise AuthError(403, "InvalidToken",
                            "The provided token is malformed or otherwise invalid.",
                            "x-amz-security-token sent but the stack has no session token")

        # canonical URI
        bad = check_encoded_path(path)
        if bad:
            raise _sigfail("invalid canonical URI %r: %s" % (path, bad))

        # signed headers
        sh_list = signed_headers.split(";")
        if any(x != x.lower() or not x for x in sh_list):
            raise _sigfail("SignedHeaders %r not lowercase/non-empty" % signed_headers)
        if sh_list != sorted(sh_list) or len(set(sh_list)) != len(sh_list):
            raise _sigfail("SignedHeaders %r not sorted/unique" % signed_headers)
        if "host" not in sh_list:
            raise _sigfail("'host' is not a signed header")
        present = {}
        for k, v in h.items():
            present.setdefault(k.lower(), []).append(v)
        for name in present:
            if name.startswith("x-amz-") and name not in sh_list:
                if auth is None and name == "x-amz-content-sha256":
                    continue
                raise AuthError(403, "AccessDenied",
                                "There were headers present in the request which were not signed",
                                "header %r present but not signed" % name)
        if auth is not None and "x-amz-content-sha256" not in sh_list and (
                expected_service == "s3" or "x-amz-content-sha256" in present):
            raise _sigfail("x-amz-content-sha256 is not a signed header")
        for name in sh_list:
            if name not in present:
                raise _sigfail("signed header %r missing from request" % name)

        # payload
        streaming = None
        if payload_hash == "UNSIGNED-PAYLOAD":
            pass
        elif payload_hash in ("STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
                              "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
                              "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"):
            streaming = payload_hash
        elif re.fullmatch(r"[0-9a-f]{64}", payload_hash):
            actual = hashlib.sha256(body).hexdigest()
            if actual != payload_hash:
                raise AuthError(400, "XAmzContentSHA256Mismatch",
                                "The provided 'x-amz-content-sha256' header does not "
                                "match what was computed.",
                                "x-amz-content-sha256 %s != sha256(body) %s (%d bytes)"
                                % (payload_hash, actual, len(body)))
        else:
            raise AuthError(400, "InvalidArgument",
                            "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, "
                            "STREAMING-... or a lowercase hex SHA-256",
                            "invalid x-amz-content-sha256 %r" % payload_hash)

        creq = "\n".join([
            self.command,
            path,
            canonical_query(pairs, exclude=("X-Amz-Signature",) if auth is None else ()),
            "".join("%s:%s\n" % (n, canonical_header_value(present[n])) for n in sh_list),
            signed_headers,
            payload_hash,
        ])
        scope = "/".join(cparts[1:])
        sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                         hashlib.sha256(creq.encode("utf-8")).hexdigest()])
        skey = signing_key(secret, cred_date, cred_region, cred_service)
        expected = hmac.new(skey, sts.encode("utf-8"), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature.lower()) or signature != signature.lower():
            raise _sigfail("signature mismatch", {
                "canonical_request": creq, "string_to_sign": sts})

        if streaming:
            body = self.decode_aws_chunked(body, streaming, skey, amz_date,
                                           scope, signature)
        # Content-MD5 checked against the actual object data
        md5 = h.get("Content-MD5")
        if md5 is not None:
            try:
                want = base64.b64decode(md5.strip(), validate=True)
            except (binascii.Error, ValueError):
                want = b""
            if len(want) != 16:
                raise AuthError(400, "InvalidDigest",
                                "The Content-MD5 you specified was invalid.",
                                "malformed Content-MD5 %r" % md5)
            if hashlib.md5(body).digest() != want:
                raise AuthError(400, "BadDigest",
                                "The Content-MD5 you specified did not match what we received.",
                                "Content-MD5 mismatch")
        with st.lock:
            st.verified_by_key[cred_key] = st.verified_by_key.get(cred_key, 0) + 1
        return body

    def decode_aws_chunked(self, body, mode, skey, amz_date, scope, seed_sig):
        """Decode an aws-chunked body (checking chunk signatures for the
        signed variants). Returns the decoded payload."""
        signed = mode.startswith("STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
        out = bytearray()
        pos = 0
        prev = seed_sig
        while True:
            eol = body.find(b"\r\n", pos)
            if eol < 0:
                raise _sigfail("aws-chunked: truncated chunk header")
            line = body[pos:eol].decode("latin-1")
            pos = eol + 2
            size_s, _, ext = line.partition(";")
            try:
                size = int(size_s, 16)
            except ValueError:
                raise _sigfail("aws-chunked: bad chunk size %r" % size_s)
            data = body[pos:pos + size]
            if len(data) != size:
                raise _sigfail("aws-chunked: truncated chunk data")
            pos += size
            if signed:
                m = re.fullmatch(r"chunk-signature=([0-9a-f]{64})", ext.strip())
                if not m:
                    raise _sigfail("aws-chunked: missing chunk-signature")
                csts = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, prev,
                                  EMPTY_SHA256, hashlib.sha256(data).hexdigest()])
                exp = hmac.new(skey, csts.encode(), hashlib.sha256).hexdigest()
                if exp != m.group(1):
                    raise _sigfail("aws-chunked: chunk signature mismatch")
                prev = exp
            out += data
            if size == 0:
                break
            if body[pos:pos + 2] == b"\r\n":
                pos += 2
        dl = self.headers.get("x-amz-decoded-content-length")
        if dl is not None and int(dl) != len(out):
            raise AuthError(400, "IncompleteBody",
                            "x-amz-decoded-content-length mismatch",
                            "x-amz-decoded-content-length %s != %d" % (dl, len(out)))
        self.aws_chunked_decoded = True
        return bytes(out)

    # -- forwarding -------------------------------------------------------
    def forward_unchanged(self, raw_body):
        """Pass-through mode: the request exactly as the client sent it (target, Host,
        Authorization, x-amz-* and every other end-to-end header, the body as received,
        aws-chunked framing included), so that the server checks the client's own
        signature. Only hop-by-hop headers go; a body that came with Transfer-Encoding:
        chunked is sent with a Content-Length (framing is not part of the signature)."""
        signed = set()
        auth = self.headers.get("Authorization") or ""
        m = re.search(r"SignedHeaders=([^,\s]+)", auth)
        if m:
            signed = set(m.group(1).split(";"))
        else:
            q = dict(parse_query(self.target.partition("?")[2]))
            signed = set((q.get("X-Amz-SignedHeaders") or "").split(";"))
        chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
        conn = http.client.HTTPConnection(self.backend.hostname, self.backend.port, timeout=120)
        try:
            conn.putrequest(self.command, self.target, skip_host=True, skip_accept_encoding=True)
            have_cl = False
            for k, v in self.headers.items():
                lk = k.lower()
                if lk in HOP_BY_HOP and lk not in signed:
                    continue
                if lk == "expect" and lk not in signed:
                    continue
                if lk == "content-length":
                    have_cl = True
                conn.putheader(k, v)
            if not have_cl and (raw_body or chunked or self.command in ("PUT", "POST")):
                conn.putheader("Content-Length", str(len(raw_body)))
            conn.endheaders()
            if raw_body:
                conn.send(raw_body)
            resp = conn.getresponse()
            rbody = b"" if self.command == "HEAD" else resp.read()
            if self.command == "HEAD":
                resp.read()
            with self.state.lock:
                self.state.forwarded += 1
            return resp.status, resp.reason, list(resp.getheaders()), rbody
        finally:
            conn.close()

    def forward(self, path, query, body):
        drop_q = {"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date",
                  "X-Amz-Expires", "X-Amz-SignedHeaders", "X-Amz-Signature",
                  "X-Amz-Security-Token"}
        raw_parts = [p for p in query.split("&") if p] if query else []
        kept = [p for p in raw_parts
                if urllib.parse.unquote(p.split("=", 1)[0]) not in drop_q]
        pairs = parse_query("&".join(kept))
        target = path + ("?" + "&".join(kept) if kept else "")
        headers = {}
        chunked = getattr(self, "aws_chunked_decoded", False)
        for k, v in self.headers.items():
            lk = k.lower()
            if lk in HOP_BY_HOP or lk in ("host", "authorization", "content-length",
                                          "x-amz-security-token", "x-amz-date",
                                          "x-amz-content-sha256", "expect"):
                continue
            if chunked and lk in ("x-amz-decoded-content-length", "x-amz-trailer"):
                continue
            if chunked and lk == "content-encoding":
                rest = ",".join(x for x in v.split(",") if x.strip().lower() != "aws-chunked")
                if rest.strip():
                    headers[lk] = rest
                continue
            if lk in headers:
                headers[lk] += "," + v
            else:
                headers[lk] = v
        headers["host"] = self.backend.netloc
        send_body = body if (body or self.command in ("PUT", "POST", "PATCH")) else None
        if send_body is not None:
            headers["content-length"] = str(len(body))
        signed = sign_request(self.command, path, pairs, headers, body,
                              self.backend_access_key, self.backend_secret_key,
                              self.backend_region, payload_hash="UNSIGNED-PAYLOAD")
        conn = http.client.HTTPConnection(self.backend.hostname, self.backend.port,
                                          timeout=120)
        try:
            conn.putrequest(self.command, target, skip_host=True,
                            skip_accept_encoding=True)
            for k, v in signed.items():
                conn.putheader(k, v)
            conn.endheaders(send_body)
            resp = conn.getresponse()
            if self.command == "HEAD":
                rbody = b""
                resp.read()
            else:
                rbody = resp.read()
            with self.state.lock:
                self.state.forwarded += 1
            return resp.status, resp.reason, list(resp.getheaders()), rbody
        finally:
            conn.close()

    def relay(self, status, reason, headers, body, truncate=False, fraction=0.5):
        self.send_response_only(status, reason)
        have_cl = None
        for k, v in headers:
            lk = k.lower()
            if lk in HOP_BY_HOP:
                continue
            if lk == "content-length":
                have_cl = v
                continue
            self.send_header(k, v)
        if self.command == "HEAD" or status in (204, 304) or 100 <= status < 200:
            if have_cl is not None and self.command == "HEAD":
                self.send_header("Content-Length", have_cl)
            elif status not in (204, 304):
                self.send_header("Content-Length", "0")
            body = b""
        else:
            self.send_header("Content-Length", str(len(body)))
        if truncate:
            self.send_header("Connection", "close")
        self.end_headers()
        if truncate:
            cut = int(len(body) * fraction)
            try:
                self.wfile.write(body[:cut])
                self.wfile.flush()
            except OSError:
                pass
            self.close_connection = True
            self.hard_close(rst=False)
            return
        if body:
            self.wfile.write(body)

    # -- responses --------------------------------------------------------
    def send_error_xml(self, status, code, message, extra_headers=None):
        resource = self.target.split("?", 1)[0] if hasattr(self, "target") else ""
        xml = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code>'
               "<Message>%s</Message><Resource>%s</Resource>"
               "<RequestId>%s</RequestId></Error>" % (
                   _xml_escape(code), _xml_escape(message),
                   _xml_escape(resource), self.request_id))
        data = xml.encode("utf-8")
        self.send_response_only(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("x-amz-request-id", self.request_id)
        self.send_header("Date", self.date_time_string())
        for k, v in (extra_headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_json(self, status, obj):
        data = json.dumps(obj, indent=1, default=str).encode("utf-8")
        self.send_response_only(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    # -- faults -----------------------------------------------------------
    def hard_close(self, rst=True):
        try:
            self.wfile.flush()
        except OSError:
            pass
        try:
            if rst:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack("ii", 1, 0))
            else:
                self.connection.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self.close_connection = True

    def wait_or_client_gone(self, seconds):
        """Sleep up to `seconds`; return True if the client disconnected or
        the server is stopping (the caller must then give up)."""
        deadline = time.time() + seconds
        sock = self.connection
        while True:
            left = deadline - time.time()
            if left <= 0:
                return False
            if STOPPING.is_set():
                self.close_connection = True
                return True
            r, _, _ = select.select([sock], [], [], min(left, 0.2))
            if r:
                try:
                    data = sock.recv(65536, socket.MSG_PEEK)
                except OSError:
                    data = b""
                if not data:
                    self.close_connection = True
                    return True
                # pipelined data: keep waiting without consuming it
                time.sleep(min(left, 0.2))

    def fault_stall(self, rule):
        seconds = float(rule.get("seconds", 600))
        self.wait_or_client_gone(seconds)
        self.close_connection = True
        self.hard_close(rst=True)

    def fault_reset(self, rule):
        log("FAULT reset on %s %s" % (self.command, self.target))
        cl = self.headers.get("Content-Length")
        n = int(cl) if cl and cl.isdigit() else 0
        after = rule.get("after_bytes")
        after = int(after) if after is not None else n // 2
        after = min(after, n)
        try:
            got = 0
            while got < after:
                chunk = self.rfile.read1(min(after - got, 65536)) \
                    if hasattr(self.rfile, "read1") else self.rfile.read(min(after - got, 65536))
                if not chunk:
                    break
                got += len(chunk)
        except OSError:
            pass
        self.hard_close(rst=True)

    # -- control API ------------------------------------------------------
    def control(self, sub, query):
        self.request_id = "CONTROL"
        try:
            body = self.read_body()
            data = json.loads(body.decode("utf-8")) if body.strip() else {}
        except Exception as e:  # noqa: BLE001
            return self.send_json(400, {"error": "bad JSON body: %s" % e})
        st = self.state
        m = self.command
        try:
            if sub in ("/stats", "/stats/") and m in ("GET", "HEAD"):
                return self.send_json(200, st.stats())
            if sub in ("/health", "/ping") and m in ("GET", "HEAD"):
                return self.send_json(200, {"ok": True})
            if sub == "/reset" and m == "POST":
                if data.get("stats_only"):
                    st.reset_stats()
                else:
                    st.reset_all()
                log("CONTROL reset%s" % (" (stats only)" if data.get("stats_only") else ""))
                return self.send_json(200, {"ok": True})
            if sub == "/faults":
                if m == "GET":
                    return self.send_json(200, {"rules": st.stats()["active_faults"]})
                if m == "DELETE":
                    st.set_rules([])
                    log("CONTROL faults cleared")
                    return self.send_json(200, {"ok": True, "rules": []})
                if m in ("POST", "PUT"):
                    append = False
                    if isinstance(data, list):
                        rules = data
                    elif "rules" in data:
                        rules = data["rules"]
                        append = bool(data.get("append"))
                    else:
                        rules = [data]
                    try:
                        out = st.set_rules(rules, append=append)
                    except (ValueError, TypeError, re.error) as e:
                        return self.send_json(400, {"error": str(e)})
                    log("CONTROL faults set: %s" % json.dumps(out))
                    return self.send_json(200, {"ok": True, "rules": out})
            if sub == "/credentials" and m == "POST":
                with st.lock:
                    if data.get("restore"):
                        st.access_key, st.secret_key, st.session_token = st.initial_creds
                    else:
                        if "access_key" in data:
                            st.access_key = data["access_key"]
                        if "secret_key" in data:
                            st.secret_key = data["secret_key"]
                        if "session_token" in data:
                            st.session_token = data["session_token"] or None
                    ak, tok = st.access_key, st.session_token
                log("CONTROL credentials changed (access key %s, token %s)"
                    % (ak, "set" if tok else "none"))
                return self.send_json(200, {"ok": True, "access_key": ak,
                                            "session_token_required": tok is not None})
            if sub == "/sts_credentials" and m == "GET":
                # Test-only, loopback: the temporary credentials STS issued through the
                # front, so that a test can look for them in logs and outputs.
                return self.send_json(200, {"credentials": st.all_sts_credentials()})
            if sub == "/expect_failures" and m == "POST":
                with st.lock:
                    st.expect_failures = bool(data.get("enabled", True))
                    en = st.expect_failures
                log("CONTROL expect_failures=%s" % en)
                return self.send_json(200, {"ok": True, "enabled": en})
            if sub == "/clear_failures" and m == "POST":
                with st.lock:
                    st.signature_failures = []
                    st.expected_failures = []
                return self.send_json(200, {"ok": True})
        except Exception as e:  # noqa: BLE001
            return self.send_json(500, {"error": repr(e)})
        return self.send_json(404, {"error": "unknown control endpoint %s %s" % (m, sub)})


def _xml_escape(s):
    return (str(s).replace("&", "&amp;").replace("<", "&lt;")
            .replace(">", "&gt;").replace('"', "&quot;"))


_LOG_LOCK = threading.Lock()
_LOG_FILE = None


def log(msg):
    line = "%s %s\n" % (datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3], msg)
    with _LOG_LOCK:
        if _LOG_FILE is not None:
            _LOG_FILE.write(line)
            _LOG_FILE.flush()
        else:
            sys.stderr.write(line)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


# --------------------------------------------------------------------------
# --create-bucket helper
# --------------------------------------------------------------------------

def signed_call(endpoint, method, path, access_key, secret, region,
                session_token=None, body=b""):
    u = urllib.parse.urlsplit(endpoint)
    headers = {"host": u.netloc}
    if body:
        headers["content-length"] = str(len(body))
    headers = sign_request(method, path, [], headers, body, access_key, secret,
                           region, session_token)
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=30)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.endheaders(body or None)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def create_bucket(args):
    st, data = signed_call(args.endpoint, "PUT", "/" + uri_encode(args.create_bucket),
                           args.access_key, args.secret_key, args.region,
                           args.session_token)
    if st == 200 or (st == 409 and (b"BucketAlreadyOwnedByYou" in data
                                    or b"BucketAlreadyExists" in data)):
        print("bucket %s ready (HTTP %d)" % (args.create_bucket, st))
        return 0
    sys.stderr.write("create bucket failed: HTTP %d %s\n"
                     % (st, data.decode("utf-8", "replace")[:500]))
    return 1


# --------------------------------------------------------------------------

def main(argv=None):
    p = argparse.ArgumentParser(description="SigV4-verifying S3 front")
    p.add_argument("--port", type=int, default=9310)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--backend", default="http://127.0.0.1:9311")
    p.add_argument("--pass-through", action="store_true",
                   help="forward every verified request unchanged (the backend checks the "
                        "client's own signature, e.g. Ceph RGW) instead of re-signing it")
    p.add_argument("--backend-access-key", default="S3RVER")
    p.add_argument("--backend-secret-key", default="S3RVER")
    p.add_argument("--access-key", default="rstest-access-key")
    p.add_argument("--secret-key", default=os.environ.get("S3FRONT_SECRET_KEY"))
    p.add_argument("--session-token", default=None)
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--log", default=None)
    p.add_argument("--create-bucket", metavar="NAME", default=None)
    p.add_argument("--endpoint", default=None,
                   help="with --create-bucket: the front's URL")
    args = p.parse_args(argv)
    if not args.secret_key:
        p.error("--secret-key (or S3FRONT_SECRET_KEY) is required")

    if args.create_bucket:
        if not args.endpoint:
            args.endpoint = "http://127.0.0.1:%d" % args.port
        return create_bucket(args)

    global _LOG_FILE
    if args.log:
        _LOG_FILE = open(args.log, "a", encoding="utf-8")

    Front.state = State(args.access_key, args.secret_key, args.session_token,
                        args.region)
    Front.backend = urllib.parse.urlsplit(args.backend)
    Front.backend_access_key = args.backend_access_key
    Front.backend_secret_key = args.backend_secret_key
    Front.backend_region = args.region
    Front.pass_through = args.pass_through

    httpd = Server((args.host, args.port), Front)

    def on_signal(signum, frame):
        if STOPPING.is_set():
            return
        STOPPING.set()
        log("signal %d: shutting down" % signum)
        threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log("s3front listening on %s:%d, backend %s (%s), access key %s, region %s, "
        "session token %s" % (args.host, args.port, args.backend,
                              "pass-through" if args.pass_through else "re-signed",
                              args.access_key, args.region,
                              "required" if args.session_token else "none"))
    try:
        httpd.serve_forever(poll_interval=0.2)
    finally:
        STOPPING.set()
        httpd.server_close()
        log("s3front stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
