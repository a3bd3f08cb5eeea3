#!/usr/bin/env python3
"""Generate S3 SigV4 test vectors with botocore, the signer of the AWS CLI and boto3.

The C++ unit test (sigv4_test.cpp, BotocoreVectors) feeds the same requests
through reportstore::aws::Signer and expects byte-identical Authorization
headers and the same presigned query parameters and signature, so our signer
agrees with an independent, widely deployed implementation.

Regenerate (needs only botocore; the unit test itself never runs Python):

    python3 test/unit/gen_botocore_vectors.py > test/unit/data/botocore_vectors.txt

Output format: one record per case, one field per line, fields separated by a
TAB, raw (not percent-encoded) UTF-8 values; the record ends with "end".

    case <name>            kind <header|presign>     method <GET|PUT|...>
    host <Host header>     path <raw path>           query <name> <value>   (0..n)
    header <name> <value>  (0..n)                    payload_hash <hex|UNSIGNED-PAYLOAD>
    region <r>             access_key <k>            secret <s>
    token <session token or empty>                   time <unix seconds>
    expires <seconds>      (presign only)
    authorization <value>  (header: botocore's Authorization header)
    presigned_query <q>    (presign: botocore's query string, signature last)
"""

import datetime
import hashlib
import sys
from unittest import mock
from urllib.parse import quote

import botocore
import botocore.auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

AKID = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
TOKEN = "FwoGZXIvYXdzEXAMPLE//////////wEaDK+token/with=chars+and/slashes=="
NOW = datetime.datetime(2024, 3, 9, 23, 59, 30)  # naive UTC, as botocore uses


def enc(s, safe):
    return quote(s, safe=safe)


def url_for(scheme, host, path, query):
    # The URL carries the path and query already encoded the SigV4 way, which
    # botocore's S3 signers take as is (no normalization, no re-encoding).
    url = f"{scheme}://{host}{enc(path, '/~')}"
    if query:
        url += "?" + "&".join(f"{enc(n, '-_.~')}={enc(v, '-_.~')}" for n, v in query)
    return url


def sign(case):
    creds = Credentials(AKID, SECRET, case.get("token") or None)
    region = case.get("region", "us-east-1")
    body = case.get("body", b"")
    headers = list(case.get("headers", []))
    req = AWSRequest(method=case["method"], url=url_for(case.get("scheme", "https"), case["host"], case["path"],
                                                          case.get("query", [])), data=body,
                     headers=dict(headers))
    if case.get("unsigned_payload"):
        req.context["client_config"] = mock.Mock(s3={"payload_signing_enabled": False})
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=NOW):
        if case["kind"] == "presign":
            botocore.auth.S3SigV4QueryAuth(creds, "s3", region, expires=case["expires"]).add_auth(req)
        else:
            botocore.auth.S3SigV4Auth(creds, "s3", region).add_auth(req)
    return req, region, headers, body


def emit(out, case):
    req, region, headers, body = sign(case)
    f = lambda *parts: out.write("\t".join(str(p) for p in parts) + "\n")
    f("case", case["name"])
    f("kind", case["kind"])
    f("method", case["method"])
    f("host", case["host"])
    f("path", case["path"])
    for n, v in case.get("query", []):
        f("query", n, v)
    for n, v in headers:
        f("header", n, v)
    if case["kind"] == "presign":
        f("payload_hash", "UNSIGNED-PAYLOAD")
    else:
        f("payload_hash", req.headers["X-Amz-Content-SHA256"])
        if not case.get("unsigned_payload"):
            assert req.headers["X-Amz-Content-SHA256"] == hashlib.sha256(body).hexdigest()
    f("region", region)
    f("access_key", AKID)
    f("secret", SECRET)
    f("token", case.get("token", ""))
    f("time", int(NOW.replace(tzinfo=datetime.timezone.utc).timestamp()))
    if case["kind"] == "presign":
        f("expires", case["expires"])
        f("presigned_query", req.url.split("?", 1)[1])
    else:
        f("authorization", req.headers["Authorization"])
    f("end")


EMPTY = b""
CASES = [
    dict(name="get-path-style", kind="header", method="GET", host="s3.us-east-1.amazonaws.com",
         path="/reports-bucket/reports/2024/report.csv"),
    dict(name="get-virtual-hosted", kind="header", method="GET", host="reports-bucket.s3.amazonaws.com",
         path="/reports/2024/report.csv", headers=[("Range", "bytes=0-1023")]),
    dict(name="key-with-spaces", kind="header", method="GET", host="s3.amazonaws.com",
         path="/bucket/monthly reports/march  2024 .csv"),
    dict(name="key-unicode", kind="header", method="GET", host="s3.amazonaws.com",
         path="/bucket/reports/été/日本.json"),
    dict(name="key-special-chars", kind="header", method="GET", host="s3.amazonaws.com",
         path="/bucket/a+b=c~d%e f!'()*$&,;:@.txt"),
    dict(name="put-with-body", kind="header", method="PUT", host="s3.eu-west-1.amazonaws.com",
         region="eu-west-1", path="/bucket/reports/0f8fad5b-d9cb-469f-a165-70867728950e/report.csv",
         headers=[("Content-Type", "text/csv"), ("Content-MD5", "CY9rzUYh03PK3k6DJie09g=="),
                  ("x-amz-meta-report-id", "0f8fad5b-d9cb-469f-a165-70867728950e")],
         body=b"id,name\n1,caf\xc3\xa9\n" * 50),
    dict(name="put-empty-body", kind="header", method="PUT", host="s3.amazonaws.com", path="/bucket/empty.txt",
         headers=[("Content-Length", "0")]),
    dict(name="put-unsigned-payload", kind="header", method="PUT", host="s3.amazonaws.com",
         path="/bucket/big.bin", body=b"\x00\x01\x02" * 1000, unsigned_payload=True),
    dict(name="create-multipart-upload", kind="header", method="POST", host="s3.amazonaws.com",
         path="/bucket/reports/big.csv", query=[("uploads", "")]),
    dict(name="upload-part", kind="header", method="PUT", host="s3.amazonaws.com", path="/bucket/reports/big.csv",
         query=[("partNumber", "3"), ("uploadId", "VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA+/=")],
         body=b"part-data" * 100),
    dict(name="complete-multipart-upload", kind="header", method="POST", host="s3.amazonaws.com",
         path="/bucket/reports/big.csv", query=[("uploadId", "abc+def/ghi=")],
         headers=[("Content-Type", "application/xml")],
         body=b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>\"x\"</ETag></Part>"
              b"</CompleteMultipartUpload>"),
    dict(name="list-objects-v2", kind="header", method="GET", host="s3.amazonaws.com", path="/bucket",
         query=[("list-type", "2"), ("prefix", "reports/2024 été/"), ("max-keys", "1000"),
                ("continuation-token", "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=")]),
    dict(name="get-version", kind="header", method="GET", host="s3.amazonaws.com", path="/bucket/key.json",
         query=[("versionId", "3/L4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY+MTRCxf3vjVBH40Nr8X8gdRQBpUMLUo")]),
    dict(name="delete-object", kind="header", method="DELETE", host="s3.amazonaws.com",
         path="/bucket/reports/x.csv"),
    dict(name="head-with-session-token", kind="header", method="HEAD", host="s3.amazonaws.com",
         path="/bucket/reports/x.csv", token=TOKEN),
    dict(name="minio-port-http", kind="header", method="PUT", scheme="http", host="127.0.0.1:9000",
         path="/reports/reports/a b.csv", body=b"hello", headers=[("Content-Type", "text/plain")]),
    dict(name="minio-port-https", kind="header", method="GET", host="minio.example.com:9443",
         path="/reports/x.csv", query=[("response-content-disposition", "attachment; filename=\"x.csv\"")]),
    dict(name="header-value-whitespace", kind="header", method="GET", host="s3.amazonaws.com", path="/bucket/k",
         headers=[("x-amz-meta-note", "  lots   of    space  "), ("X-Amz-Meta-Upper", "Value")]),
    dict(name="presign-get", kind="presign", method="GET", host="s3.amazonaws.com",
         path="/bucket/reports/été/日本.json", expires=3600),
    dict(name="presign-get-virtual-hosted-region", kind="presign", method="GET",
         host="reports-bucket.s3.ap-southeast-2.amazonaws.com", region="ap-southeast-2",
         path="/reports/a+b=c d.csv", expires=604800),
    dict(name="presign-get-session-token", kind="presign", method="GET", host="s3.amazonaws.com",
         path="/bucket/reports/x.csv", token=TOKEN, expires=900),
    dict(name="presign-get-response-params", kind="presign", method="GET", host="minio.example.com:9000",
         path="/bucket/reports/x.csv", expires=60,
         query=[("response-content-type", "text/csv; charset=utf-8"),
                ("response-content-disposition", "attachment; filename=\"report 1.csv\"")]),
    dict(name="presign-put", kind="presign", method="PUT", host="s3.eu-central-1.amazonaws.com",
         region="eu-central-1", path="/bucket/uploads/file.bin", expires=1),
]


def main():
    out = sys.stdout
    out.write(f"# Generated by test/unit/gen_botocore_vectors.py with botocore {botocore.__version__}.\n")
    out.write("# Do not edit; regenerate instead.\n")
    for case in CASES:
        emit(out, case)


if __name__ == "__main__":
    main()
