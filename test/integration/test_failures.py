"""S3 failures during report_offload / report_fetch.

Every failure is one clear ERROR (SQLSTATE + the object path in the message),
the report row stays exactly as it was, and once the fault is gone the same
report offloads and fetches back identical.
"""
import pytest

from conftest import (error_text, fetch_text, jsonb_text, key_regex, new_report, object_key, object_path, offload,
                      query_error, report_json, report_state, s3_backend_client, env)

pytestmark = pytest.mark.usefixtures("s3")


def assert_unchanged(db, rid, original):
    data, path = report_state(db, rid)
    assert path is None, "minio_path was set although the upload failed"
    assert data == original, "report_data changed although the upload failed"


def assert_offload_fails(db, rid, sqlstates):
    e = query_error(db, "SELECT report_offload(%s)", (rid,))
    assert e.pgcode in sqlstates, "SQLSTATE %s (%s), expected one of %s" % (e.pgcode, error_text(e), sqlstates)
    assert object_path(rid) in e.diag.message_primary, e.diag.message_primary
    assert e.diag.severity == "ERROR"
    return e


def assert_recovers(db, rid, original):
    """After the fault is gone: offload (if still needed) and fetch back identical."""
    data, path = report_state(db, rid)
    if path is None:
        assert offload(db, rid) == object_path(rid)
        data, path = report_state(db, rid)
        assert path == object_path(rid) and data is None
    assert fetch_text(db, rid) == original


@pytest.fixture
def report(db):
    def make(size=300):
        data = report_json(size)
        rid = new_report(db, data)
        return rid, jsonb_text(db, data)
    return make


# ---------------------------------------------------------------- uploads

def test_upload_reset_half_way(db, s3, report):
    rid, original = report(300_000)
    s3.faults({"method": "PUT", "path_regex": key_regex(rid), "action": "reset", "after_bytes": 100_000,
               "count": -1})
    assert_offload_fails(db, rid, ("58030", "08006"))
    assert s3.stats()["faults_injected"].get("reset", 0) >= 1, "the fault never hit: the test proves nothing"
    assert_unchanged(db, rid, original)
    s3.clear_faults()
    assert_recovers(db, rid, original)


@pytest.mark.parametrize("status,code", [(500, "InternalError"), (503, "SlowDown")])
def test_upload_server_error(db, s3, report, status, code):
    rid, original = report()
    s3.faults({"method": "PUT", "path_regex": key_regex(rid), "action": "status", "status": status, "code": code,
               "count": -1})
    assert_offload_fails(db, rid, ("58030",))
    assert_unchanged(db, rid, original)
    s3.clear_faults()
    assert_recovers(db, rid, original)


def test_upload_wrong_etag(db, s3, report):
    rid, original = report()
    s3.faults({"method": "PUT", "path_regex": key_regex(rid), "action": "wrong_etag", "count": -1})
    assert_offload_fails(db, rid, ("XX001",))
    assert_unchanged(db, rid, original)
    s3.clear_faults()
    assert_recovers(db, rid, original)


# ---------------------------------------------------------------- fetches

@pytest.fixture
def offloaded(db, report):
    def make(size=2000):
        rid, original = report(size)
        assert offload(db, rid) == object_path(rid)
        assert report_state(db, rid) == (None, object_path(rid))
        return rid, original
    return make


def assert_fetch_fails(db, rid, sqlstates):
    e = query_error(db, "SELECT report_fetch(%s)", (rid,))
    assert sqlstates is None or e.pgcode in sqlstates, \
        "SQLSTATE %s (%s), expected one of %s" % (e.pgcode, error_text(e), sqlstates)
    assert e.diag.severity == "ERROR"
    # the error names the object (message) and the report (message or context)
    assert object_path(rid) in e.diag.message_primary, error_text(e)
    assert rid in error_text(e)
    # the row is untouched by a failed fetch
    assert report_state(db, rid) == (None, object_path(rid))
    return e


def test_fetch_corrupt_body(db, s3, offloaded):
    rid, original = offloaded()
    s3.faults({"method": "GET", "path_regex": key_regex(rid), "action": "corrupt_body", "bytes": 1, "count": -1})
    assert_fetch_fails(db, rid, ("XX001",))
    assert s3.stats()["faults_injected"].get("corrupt_body", 0) >= 1
    s3.clear_faults()
    assert_recovers(db, rid, original)


def test_fetch_truncated(db, s3, offloaded):
    rid, original = offloaded(50_000)
    s3.faults({"method": "GET", "path_regex": key_regex(rid), "action": "truncate", "fraction": 0.5, "count": -1})
    assert_fetch_fails(db, rid, ("58030", "08006", "XX001"))
    assert s3.stats()["faults_injected"].get("truncate", 0) >= 1
    s3.clear_faults()
    assert_recovers(db, rid, original)


def test_fetch_tampered_in_backend(db, s3, offloaded):
    rid, original = offloaded()
    backend = s3_backend_client()
    bucket, key = env("S3_BUCKET"), object_key(rid)
    head = backend.head_object(Bucket=bucket, Key=key)
    meta = head["Metadata"]
    assert "sha256" in meta, "the upload did not store x-amz-meta-sha256: %r" % meta
    good = backend.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert good.decode() == original
    evil = b'{"tampered": true, "findings": []}'
    backend.put_object(Bucket=bucket, Key=key, Body=evil, Metadata=meta, ContentType="application/json")
    assert backend.head_object(Bucket=bucket, Key=key)["Metadata"]["sha256"] == meta["sha256"]

    e = assert_fetch_fails(db, rid, ("XX001",))
    assert "tampered" not in error_text(e)
    # put the original bytes back: the report is readable again
    backend.put_object(Bucket=bucket, Key=key, Body=good, Metadata=meta, ContentType="application/json")
    assert_recovers(db, rid, original)


def test_fetch_deleted_in_backend(db, s3, offloaded):
    rid, original = offloaded()
    backend = s3_backend_client()
    bucket, key = env("S3_BUCKET"), object_key(rid)
    obj = backend.get_object(Bucket=bucket, Key=key)
    good, meta = obj["Body"].read(), obj["Metadata"]
    backend.delete_object(Bucket=bucket, Key=key)

    assert_fetch_fails(db, rid, ("58P01",))
    backend.put_object(Bucket=bucket, Key=key, Body=good, Metadata=meta, ContentType="application/json")
    assert_recovers(db, rid, original)
