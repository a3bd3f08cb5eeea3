"""Large reports go up as concurrent multipart uploads: parts checked, the
final object verified, and a failed upload aborted (nothing half-done in the
store, the report unchanged)."""
import hashlib
import uuid

import pytest

from conftest import (env, fetch_text, front_requests, jsonb_text, new_report, object_key, object_path, offload,
                      query_error, report_json, report_state, s3_backend_client)

pytestmark = pytest.mark.usefixtures("s3")


@pytest.fixture
def multipart_db(db):
    with db.cursor() as cur:
        cur.execute("SET reportstore.multipart_threshold = '5MB'")
        cur.execute("SET reportstore.multipart_part_size = '5MB'")
        cur.execute("SET reportstore.compression = 'none'")
    return db


def test_large_report_goes_up_in_parts(multipart_db):
    db = multipart_db
    data = report_json(12 * 1024 * 1024, seed=41)
    rid = new_report(db, data)
    original = jsonb_text(db, data)
    assert offload(db, rid) == object_path(rid)
    with db.cursor() as cur:
        cur.execute("SELECT etag, size FROM reportstore.objects WHERE report_id = %s", (rid,))
        etag, size = cur.fetchone()
    parts = (size + 5 * 1024 * 1024 - 1) // (5 * 1024 * 1024)
    assert parts >= 3
    assert etag.endswith("-%d" % parts), "not a multipart ETag: %s" % etag
    assert len([l for l in front_requests("PUT", rid) if "partNumber=" in l]) == parts
    assert any("?uploads" in l for l in front_requests("POST", rid))
    assert fetch_text(db, rid) == original


def test_failed_part_aborts_the_upload(multipart_db, s3):
    db = multipart_db
    data = report_json(11 * 1024 * 1024, seed=42)
    rid = new_report(db, data)
    before = report_state(db, rid)
    s3.faults({"method": "PUT", "path_regex": r"%s.*partNumber=2" % rid, "action": "status", "status": 500,
               "code": "InternalError", "count": -1})
    e = query_error(db, "SELECT report_offload(%s)", (rid,))
    assert e.pgcode == "58030", e.pgcode
    assert report_state(db, rid) == before, "the report changed although its upload failed"
    aborts = [l for l in front_requests("DELETE", rid) if "uploadId=" in l]
    assert aborts, "no AbortMultipartUpload after the failed part"
    s3.clear_faults()
    assert offload(db, rid) == object_path(rid)
    assert fetch_text(db, rid) == jsonb_text(db, data)


def test_100mb_report_round_trip(db, s3):
    """A 100 MB report with the default settings (multipart above 64MB, 16MB parts):
    uploaded in parts straight to the S3 server (Ceph RGW in the suite, which checks every
    signature and part itself; the Python front would take most of a minute to relay
    200 MB), the assembled object holds exactly report_data::text, and report_fetch()
    gives it back byte for byte."""
    rid = str(uuid.uuid4())
    with db.cursor() as cur:
        cur.execute("SHOW reportstore.multipart_threshold")
        assert cur.fetchone()[0] == "64MB"
        cur.execute("SET reportstore.compression = 'none'")
        cur.execute("SET reportstore.endpoint = %s", (env("S3_BACKEND_ENDPOINT"),))
        # about 100 MB of JSON, made by the server (a Python-side document would cost minutes)
        cur.execute("INSERT INTO reports (report_id, assessment_id, report_type, title, format, report_data, status, "
                    "generated_at) SELECT %s, 'a0000000-0000-4000-8000-000000000001', 'compliance', 'big', 'json', "
                    "jsonb_build_object('findings', jsonb_agg(jsonb_build_object('i', g, 'text', "
                    "repeat(md5(g::text), 24) || ' é\"\\\\ ' || g))), 'completed', now() "
                    "FROM generate_series(1, 130000) g", (rid,))
        cur.execute("SELECT report_data::text FROM reports WHERE report_id = %s", (rid,))
        original = cur.fetchone()[0].encode()
    assert 100_000_000 < len(original) < 115 * 1024 * 1024, len(original)
    assert offload(db, rid) == object_path(rid)
    assert report_state(db, rid) == (None, object_path(rid))
    with db.cursor() as cur:
        cur.execute("SELECT size, sha256, etag FROM reportstore.objects WHERE report_id = %s", (rid,))
        size, sha256, etag = cur.fetchone()
    parts = (len(original) + 16 * 1024 * 1024 - 1) // (16 * 1024 * 1024)
    assert size == len(original) and sha256 == hashlib.sha256(original).hexdigest()
    assert etag.endswith("-%d" % parts), "not a %d-part multipart ETag: %s" % (parts, etag)
    stored = s3_backend_client().get_object(Bucket=env("S3_BUCKET"), Key=object_key(rid))["Body"].read()
    assert stored == original, "the object's bytes differ from report_data::text"
    del stored
    assert fetch_text(db, rid).encode() == original, "report_fetch() did not give the report back byte for byte"
    with db.cursor() as cur:
        cur.execute("SELECT count(*) FROM reportstore.verify(true) WHERE report_id = %s", (rid,))
        assert cur.fetchone()[0] == 0
        cur.execute("DELETE FROM reports WHERE report_id = %s", (rid,))  # the object goes after delete_delay
        cur.execute("RESET reportstore.endpoint")
