"""Large reports go up as concurrent multipart uploads: parts checked, the
final object verified, and a failed upload aborted (nothing half-done in the
store, the report unchanged)."""
import pytest

from conftest import (fetch_text, front_requests, jsonb_text, new_report, object_path, offload, query_error,
                      report_json, report_state)

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
