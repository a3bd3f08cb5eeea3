"""Lifecycle and consistency, end to end against the S3 stack: verify(),
orphans(), the delete queue with delete_delay, new content winning over an
offloaded object, recall, presigned URLs, versioned buckets, pg_dump/restore,
and compression / storage class / encryption / bucket lifecycle.

sql/lifecycle.sql covers the SQL side of the same features (the trigger, the
queue rows, error codes); these tests check what actually happens to the
objects in the backend (boto3 straight to the backend is the oracle).
"""
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid

import psycopg2
import pytest

from conftest import (as_postgres, connect, dict_row, env, error_text, fetch_text, jsonb_text, key_regex, new_report,
                      object_key, object_path, offload, query_error, report_json, report_state, rows,
                      s3_backend_client, value)
from conftest import front_log_lines

ASSESSMENT = "a0000000-0000-4000-8000-000000000001"


# helpers ---------------------------------------------------------------------

def fresh_report(conn, size=400, seed=0, fmt="json"):
    """Inserts a report; returns (report_id, report_data::text)."""
    data = report_json(size, seed)
    rid = new_report(conn, data, fmt)
    return rid, jsonb_text(conn, data)


def offloaded_report(conn, size=400, seed=0):
    rid, text = fresh_report(conn, size, seed)
    assert offload(conn, rid) == object_path(rid)
    return rid, text


def backend_body(rid, bucket=None, fmt="json"):
    return s3_backend_client().get_object(Bucket=bucket or env("S3_BUCKET"), Key=object_key(rid, fmt))["Body"].read()


def backend_has(key, bucket=None):
    client = s3_backend_client()
    try:
        client.head_object(Bucket=bucket or env("S3_BUCKET"), Key=key)
        return True
    except client.exceptions.ClientError as e:
        if e.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
            return False
        raise


def backend_keys(bucket):
    client = s3_backend_client()
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return sorted(keys)


def new_bucket(prefix, versioned=False):
    name = "%s-%s" % (prefix, uuid.uuid4().hex[:12])
    client = s3_backend_client()
    client.create_bucket(Bucket=name)
    if versioned:
        client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


def delete_and_forget(conn, ids):
    """Deletes reports and drops their queued deletions (cleanup of tests that
    leave objects broken on purpose)."""
    with conn.cursor() as cur:
        cur.execute("DELETE FROM reports WHERE report_id = ANY(%s::uuid[])", (list(ids),))
        cur.execute("DELETE FROM reportstore.delete_queue WHERE report_id = ANY(%s::uuid[])", (list(ids),))
        cur.execute("DELETE FROM reportstore.objects WHERE report_id = ANY(%s::uuid[])", (list(ids),))


def run_once(conn):
    return value(conn, "SELECT reportstore.run_once()")


def flip_one_byte(body):
    """Same length, different bytes, still valid JSON text: change one digit."""
    m = re.search(rb"[0-9]", body)
    assert m, "no digit to change"
    i = m.start()
    return body[:i] + (b"1" if body[i:i + 1] != b"1" else b"2") + body[i + 1:]


# 1. verify() -------------------------------------------------------------------

def test_verify_quick_and_full(db):
    client = s3_backend_client()
    bucket = env("S3_BUCKET")
    missing, same_meta, other_meta, other_size, untouched = ids = [offloaded_report(db, 600, i)[0] for i in range(5)]
    try:
        client.delete_object(Bucket=bucket, Key=object_key(missing))

        # (a) different bytes, same length, same metadata (the recorded sha256):
        # a HEAD cannot tell, only a full GET can.
        head = client.head_object(Bucket=bucket, Key=object_key(same_meta))
        body = backend_body(same_meta)
        client.put_object(Bucket=bucket, Key=object_key(same_meta), Body=flip_one_byte(body),
                          ContentType="application/json", Metadata=head["Metadata"])
        assert client.head_object(Bucket=bucket, Key=object_key(same_meta))["Metadata"] == head["Metadata"]
        assert head["Metadata"].get("sha256") == hashlib.sha256(body).hexdigest()

        # (b) different bytes with their own x-amz-meta-sha256: same length, then another length
        tampered = flip_one_byte(backend_body(other_meta))
        client.put_object(Bucket=bucket, Key=object_key(other_meta), Body=tampered, ContentType="application/json",
                          Metadata={"sha256": hashlib.sha256(tampered).hexdigest()})
        longer = backend_body(other_size)[:-1] + b', "extra": 1}'
        client.put_object(Bucket=bucket, Key=object_key(other_size), Body=longer, ContentType="application/json",
                          Metadata={"sha256": hashlib.sha256(longer).hexdigest()})

        def problems(full):
            found = rows(db, "SELECT report_id::text, minio_path, problem, detail FROM reportstore.verify(%s) "
                             "WHERE report_id = ANY(%s::uuid[])", (full, ids))
            for rid, path, _, detail in found:
                assert path == object_path(rid)
                assert detail, "a problem row without detail"
            got = {rid: problem for rid, _, problem, _ in found}
            assert len(got) == len(found), "several rows for one report: %r" % found
            return got

        assert problems(False) == {missing: "missing", other_meta: "checksum mismatch",
                                   other_size: "size mismatch"}
        assert problems(True) == {missing: "missing", same_meta: "corrupt", other_meta: "corrupt",
                                  other_size: "corrupt"}
        # verify() only reports: nothing was changed, and the untouched report still fetches
        assert report_state(db, untouched)[1] == object_path(untouched)
        assert report_state(db, same_meta)[1] == object_path(same_meta)
    finally:
        delete_and_forget(db, ids)


# 2. orphans() ----------------------------------------------------------------------

def test_orphans_paginated_kept_would_delete_deleted(dbname, s3):
    bucket = new_bucket("orphans-test")
    client = s3_backend_client()
    conn = connect(dbname)
    try:
        with conn.cursor() as cur:
            cur.execute("SET reportstore.bucket = %s", (bucket,))
        real = [fresh_report(conn, 300, 100 + i) for i in range(3)]
        for rid, _ in real:
            assert offload(conn, rid) == "s3://%s/%s" % (bucket, object_key(rid))
        orphan_keys = sorted("reports/%s/report.json" % uuid.uuid4() for _ in range(7))
        for key in orphan_keys:
            client.put_object(Bucket=bucket, Key=key, Body=b'{"orphan": true}', ContentType="application/json")
        assert len(backend_keys(bucket)) == 10

        def orphans(**kw):
            args = ", ".join("%s => %%(%s)s" % (k, k) for k in kw)
            return sorted(rows(conn, "SELECT key, size, last_modified, action FROM reportstore.orphans(%s)" % args, kw))

        lists_before = len(front_log_lines(r" GET /%s\?\S*list-type=2\S* -> 200$" % re.escape(bucket)))
        found = orphans(page_size=2)
        # 10 objects, 2 a page: 5 list requests, and every orphan of every page found
        assert [r[0] for r in found] == orphan_keys
        assert {r[3] for r in found} == {"kept: younger than min_age"}
        assert all(r[1] == len(b'{"orphan": true}') and r[2] for r in found)
        lists = len(front_log_lines(r" GET /%s\?\S*list-type=2\S* -> 200$" % re.escape(bucket))) - lists_before
        assert lists >= 5, "orphans(page_size => 2) made %d list requests for 10 objects" % lists

        found = orphans(delete=False, min_age="0", page_size=2)
        assert [(r[0], r[3]) for r in found] == [(k, "would delete") for k in orphan_keys]
        assert len(backend_keys(bucket)) == 10, "delete => false deleted objects"

        # a deleted report's object waits in the delete queue: not an orphan to delete
        scheduled_rid = real[2][0]
        with conn.cursor() as cur:
            cur.execute("DELETE FROM reports WHERE report_id = %s", (scheduled_rid,))
        scheduled_key = object_key(scheduled_rid)

        found = orphans(delete=True, min_age="0", page_size=2)
        assert [(r[0], r[3]) for r in found] == sorted([(k, "deleted") for k in orphan_keys] +
                                                       [(scheduled_key, "scheduled for deletion")])
        assert backend_keys(bucket) == sorted([object_key(real[0][0]), object_key(real[1][0]), scheduled_key])
        for rid, text in real[:2]:
            assert fetch_text(conn, rid) == text
        assert [(r[0], r[3]) for r in orphans(page_size=2)] == [(scheduled_key, "scheduled for deletion")]
    finally:
        with conn.cursor() as cur:
            cur.execute("RESET reportstore.bucket")
        delete_and_forget(conn, [r[0] for r in real])
        conn.close()


# 3. deletion after delete_delay ---------------------------------------------------

def test_deleted_report_object_removed_after_delay_not_on_rollback(db):
    with db.cursor() as cur:
        cur.execute("SET reportstore.delete_delay = '2s'")
    deleted, _ = offloaded_report(db, 300, 200)
    kept, kept_text = offloaded_report(db, 300, 201)

    db.autocommit = False
    with db.cursor() as cur:
        cur.execute("DELETE FROM reports WHERE report_id = %s", (kept,))
    db.rollback()
    db.autocommit = True
    with db.cursor() as cur:
        cur.execute("DELETE FROM reports WHERE report_id = %s", (deleted,))

    run_once(db)
    assert backend_has(object_key(deleted)), "the object was deleted before delete_delay"
    time.sleep(2.5)
    run_once(db)
    assert not backend_has(object_key(deleted)), "the object of a deleted report outlived delete_delay"
    assert value(db, "SELECT count(*) FROM reportstore.delete_queue WHERE report_id = %s", (deleted,)) == 0
    assert value(db, "SELECT count(*) FROM reportstore.objects WHERE report_id = %s", (deleted,)) == 0
    # the rolled-back DELETE left everything in place
    assert backend_has(object_key(kept))
    assert report_state(db, kept) == (None, object_path(kept))
    assert fetch_text(db, kept) == kept_text


def test_cascade_delete_removes_objects_after_delay(db):
    assessment = str(uuid.uuid4())
    with db.cursor() as cur:
        cur.execute("SET reportstore.delete_delay = '2s'")
        cur.execute("INSERT INTO assessments VALUES (%s, 'cascade')", (assessment,))
        cur.execute("INSERT INTO reports (report_id, assessment_id, report_type, title, format, report_data, status, "
                    "generated_at) SELECT gen_random_uuid(), %s, 'compliance', 'cascade', 'json', "
                    "jsonb_build_object('g', g, 'pad', repeat('x', 500)), 'completed', now() "
                    "FROM generate_series(1, 3) g RETURNING report_id::text", (assessment,))
        ids = [r[0] for r in cur.fetchall()]
    for rid in ids:
        assert offload(db, rid) == object_path(rid)
    bystander, _ = offloaded_report(db, 300, 210)
    with db.cursor() as cur:
        cur.execute("DELETE FROM assessments WHERE assessment_id = %s", (assessment,))
    run_once(db)
    assert all(backend_has(object_key(rid)) for rid in ids), "objects deleted before delete_delay"
    time.sleep(2.5)
    run_once(db)
    assert [rid for rid in ids if backend_has(object_key(rid))] == [], "cascade-deleted reports' objects remain"
    assert backend_has(object_key(bystander))


# 4. new content wins over the offloaded object ---------------------------------------

def test_update_after_offload_reoffloads_new_content(db):
    rid, old_text = offloaded_report(db, 800, 300)
    new_data = report_json(900, 301)
    db.autocommit = False
    with db.cursor() as cur:
        cur.execute("UPDATE reports SET report_data = %s::jsonb WHERE report_id = %s "
                    "RETURNING report_data::text, minio_path", (new_data, rid))
        new_text, path = cur.fetchone()
    assert path is None, "minio_path still set in the updating transaction"
    db.commit()
    db.autocommit = True
    assert new_text != old_text
    assert report_state(db, rid) == (new_text, None)
    assert fetch_text(db, rid) == new_text

    assert run_once(db) >= 1
    assert report_state(db, rid) == (None, object_path(rid))
    body = backend_body(rid)
    assert body == new_text.encode(), "the object does not hold the new content"
    assert value(db, "SELECT sha256 FROM reportstore.objects WHERE report_id = %s", (rid,)) == \
        hashlib.sha256(body).hexdigest()
    assert fetch_text(db, rid) == new_text


# 5. recall ------------------------------------------------------------------------

def test_recall_many_brings_back_and_deletes_objects(db):
    with db.cursor() as cur:
        cur.execute("SET reportstore.delete_delay = '1s'")
    originals = dict(offloaded_report(db, 700, 400 + i) for i in range(5))
    ids = list(originals)
    bystander, bystander_text = offloaded_report(db, 300, 410)

    assert value(db, "SELECT reportstore.recall_many(%s::uuid[], true)", (ids,)) == 5
    for rid, text in originals.items():
        assert report_state(db, rid) == (text, None)
    assert sorted(rows(db, "SELECT report_id::text, path FROM reportstore.delete_queue "
                           "WHERE report_id = ANY(%s::uuid[]) OR report_id = %s", (ids, bystander))) == \
        sorted((rid, object_path(rid)) for rid in ids)
    # recalled reports are pinned: a pass does not offload them again
    run_once(db)
    assert all(report_state(db, rid)[1] is None for rid in ids)

    time.sleep(1.5)
    run_once(db)
    assert [rid for rid in ids if backend_has(object_key(rid))] == [], "recalled objects were not deleted"
    assert backend_body(bystander) == bystander_text.encode()
    assert fetch_text(db, bystander) == bystander_text
    for rid, text in originals.items():
        assert report_state(db, rid) == (text, None)
        assert fetch_text(db, rid) == text

    # and they can be offloaded again
    for rid, text in originals.items():
        assert offload(db, rid) == object_path(rid)
        assert backend_body(rid) == text.encode()
        assert fetch_text(db, rid) == text
    assert value(db, "SELECT count(*) FROM reportstore.offload_state WHERE report_id = ANY(%s::uuid[])", (ids,)) == 0


# 6. presigned URLs -------------------------------------------------------------------

def test_report_url_fetches_exact_bytes(db):
    rid, text = offloaded_report(db, 5000, 500)
    url = value(db, "SELECT report_url(%s, '5 minutes')", (rid,))
    assert url.startswith(env("S3_ENDPOINT") + "/"), url
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200
        assert resp.read() == text.encode()


def test_report_url_needs_select_privilege(db):
    rid, _ = offloaded_report(db, 300, 510)
    role = "lt_nopriv_%s" % uuid.uuid4().hex[:8]
    with db.cursor() as cur:
        cur.execute("CREATE ROLE %s" % role)
    try:
        with db.cursor() as cur:
            cur.execute("SET ROLE %s" % role)
        e = query_error(db, "SELECT report_url(%s, '5 minutes')", (rid,))
        assert e.pgcode == "42501", (e.pgcode, str(e))
    finally:
        with db.cursor() as cur:
            cur.execute("RESET ROLE")
            cur.execute("DROP ROLE %s" % role)


def test_report_url_expires(db, s3):
    rid, _ = offloaded_report(db, 300, 520)
    url = value(db, "SELECT report_url(%s, '1 second')", (rid,))
    time.sleep(2.5)
    s3.call("POST", "/clear_failures")
    with s3.expecting_failures():
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(url, timeout=10)
    assert e.value.code == 403
    body = e.value.read().decode("utf-8", errors="replace")
    assert "<Code>AccessDenied</Code>" in body and "expired" in body, body
    # Refused because it expired, not for another reason (a bad signature is a 403 too): the
    # front says why, and it checks the signature after the expiry.
    refused = [f for f in s3.stats()["expected_failures"] if object_key(rid) in f.get("path", "")]
    assert [(f["code"], "expired" in f.get("reason", "")) for f in refused] == [("AccessDenied", True)], refused


# 7. versioned bucket ---------------------------------------------------------------------

def test_versioned_bucket_fetch_reads_recorded_version(dbname):
    bucket = new_bucket("versioned-test", versioned=True)
    client = s3_backend_client()
    conn = connect(dbname)
    try:
        with conn.cursor() as cur:
            cur.execute("SET reportstore.bucket = %s", (bucket,))
        rid, text = fresh_report(conn, 2000, 600)
        path = offload(conn, rid)
        assert path == "s3://%s/%s" % (bucket, object_key(rid))
        version = value(conn, "SELECT version_id FROM reportstore.objects WHERE report_id = %s", (rid,))
        assert version, "no version_id recorded in a versioned bucket"
        newer = b'{"overwritten": "outside reportstore"}'
        put = client.put_object(Bucket=bucket, Key=object_key(rid), Body=newer, ContentType="application/json")
        assert put["VersionId"] != version
        assert client.get_object(Bucket=bucket, Key=object_key(rid))["Body"].read() == newer
        assert fetch_text(conn, rid) == text
        # Another session whose reportstore.bucket is the default: the old
        # bucket must be listed in reportstore.allowed_buckets to be read.
        other = connect(dbname)
        assert "allowed_buckets" in error_text(query_error(other, "SELECT report_fetch(%s)", (rid,)))
        other.close()
        other = connect(dbname, options="-c reportstore.allowed_buckets=%s" % bucket)
        assert fetch_text(other, rid) == text
        other.close()
        assert rows(conn, "SELECT * FROM reportstore.verify(true) WHERE report_id = %s", (rid,)) == []
        # Leave no report behind in a bucket that later tests do not allow.
        with conn.cursor() as cur:
            cur.execute("DELETE FROM reports WHERE report_id = %s", (rid,))
            cur.execute("DELETE FROM reportstore.delete_queue WHERE report_id = %s", (rid,))
    finally:
        with conn.cursor() as cur:
            cur.execute("RESET reportstore.bucket")
        conn.close()


# 8. pg_dump / restore -------------------------------------------------------------------

def test_dump_restore_keeps_objects_and_checksums(dbname, db):
    originals = dict(offloaded_report(db, 1500, 700 + i) for i in range(3))
    in_db, in_db_text = fresh_report(db, 300, 710)
    source_objects = rows(db, "SELECT report_id::text, path, size, sha256, etag, version_id "
                              "FROM reportstore.objects ORDER BY report_id")

    base = os.path.dirname(os.path.abspath(env("PGHOST")))
    tmp = tempfile.mkdtemp(prefix="lt-dump.", dir=base if os.access(base, os.W_OK) else None)
    os.chmod(tmp, 0o777)
    dump = os.path.join(tmp, "dump.sql")
    target = dbname + "_restored"
    admin = connect()
    try:
        with admin.cursor() as cur:
            cur.execute("DROP DATABASE IF EXISTS %s WITH (FORCE)" % target)
            cur.execute("CREATE DATABASE %s" % target)
        r = as_postgres(["pg_dump", "-h", env("PGHOST"), "-p", env("PGPORT"), "-U", "postgres", "-d", dbname,
                         "-f", dump])
        assert r.returncode == 0, r.stderr
        r = as_postgres(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", env("PGHOST"), "-p", env("PGPORT"),
                         "-U", "postgres", "-d", target, "-f", dump])
        assert r.returncode == 0, r.stderr
        assert "ERROR" not in r.stderr, r.stderr

        restored = connect(target)
        try:
            assert rows(restored, "SELECT report_id::text, path, size, sha256, etag, version_id "
                                  "FROM reportstore.objects ORDER BY report_id") == source_objects
            for rid, text in originals.items():
                assert report_state(restored, rid) == (None, object_path(rid))
                assert fetch_text(restored, rid) == text
            assert report_state(restored, in_db) == (in_db_text, None)
            assert value(restored, "SELECT count(*) FROM pg_trigger WHERE tgname = 'reportstore_guard' "
                                   "AND tgrelid = 'reports'::regclass") == 1
            assert rows(restored, "SELECT * FROM reportstore.verify()") == []
            assert rows(restored, "SELECT * FROM reportstore.verify(true)") == []
        finally:
            restored.close()
    finally:
        with admin.cursor() as cur:
            cur.execute("DROP DATABASE IF EXISTS %s WITH (FORCE)" % target)
        admin.close()
        shutil.rmtree(tmp, ignore_errors=True)


# 9. compression, storage class, encryption, bucket lifecycle -------------------------

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def set_session(conn, **settings):
    with conn.cursor() as cur:
        for name, val in settings.items():
            cur.execute("SELECT set_config(%s, %s, false)", ("reportstore." + name, val))


def decoded(body, encoding):
    """The object's bytes decoded by an independent decoder (Python's gzip, the zstd CLI that
    scripts/install-deps.sh installs); a body that does not decode fails the test."""
    import gzip
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "zstd":
        assert body[:4] == ZSTD_MAGIC, "not a zstd frame: %r" % body[:8]
        try:
            import zstandard
        except ImportError:
            r = subprocess.run(["zstd", "-dc"], input=body, capture_output=True)
            assert r.returncode == 0, "zstd -dc failed on the object: %s" % r.stderr.decode(errors="replace")
            return r.stdout
        return zstandard.ZstdDecompressor().decompressobj().decompress(body)
    return body


@pytest.mark.parametrize("codec", ["gzip", "zstd"])
def test_compressed_objects(dbname, codec):
    client = s3_backend_client()
    conn = connect(dbname)
    try:
        set_session(conn, compression=codec)
        rid, text = fresh_report(conn, 330_000, 800 if codec == "gzip" else 801)
        assert len(text.encode()) > 290_000
        assert offload(conn, rid) == object_path(rid)
        obj = client.get_object(Bucket=env("S3_BUCKET"), Key=object_key(rid))
        body = obj["Body"].read()
        assert obj.get("ContentEncoding") == codec
        assert len(body) < len(text.encode()) // 2, "%s object of %d bytes for %d bytes of JSON" % (
            codec, len(body), len(text))
        assert decoded(body, codec) == text.encode()
        assert fetch_text(conn, rid) == text
    finally:
        conn.close()
    # another session, compression none: the object's Content-Encoding decides
    conn = connect(dbname)
    try:
        assert fetch_text(conn, rid) == text
        assert rows(conn, "SELECT * FROM reportstore.verify(false) WHERE report_id = %s", (rid,)) == []
        assert rows(conn, "SELECT * FROM reportstore.verify(true) WHERE report_id = %s", (rid,)) == []
    finally:
        conn.close()


def test_mixed_codecs_coexist(dbname):
    client = s3_backend_client()
    conn = connect(dbname)
    made = {}
    try:
        for i, codec in enumerate(["none", "gzip", "zstd", "none"]):
            set_session(conn, compression=codec)
            rid, text = fresh_report(conn, 20_000, 820 + i)
            assert offload(conn, rid) == object_path(rid)
            made[rid] = (codec, text)
        set_session(conn, compression="zstd")
        for rid, (codec, text) in made.items():
            head = client.head_object(Bucket=env("S3_BUCKET"), Key=object_key(rid))
            assert head.get("ContentEncoding", "none") in ((codec,) if codec != "none" else ("none", "identity"))
            assert fetch_text(conn, rid) == text
        assert rows(conn, "SELECT * FROM reportstore.verify(true) WHERE report_id = ANY(%s::uuid[])",
                    (list(made),)) == []
        # recall decodes too
        ids = list(made)
        assert value(conn, "SELECT reportstore.recall_many(%s::uuid[])", (ids,)) == len(ids)
        for rid, (_, text) in made.items():
            assert report_state(conn, rid) == (text, None)
            assert offload(conn, rid) == object_path(rid)
    finally:
        conn.close()
    assert backend_body(ids[0])[:4] == ZSTD_MAGIC  # offloaded again with this session's codec


def rgw_backend():
    return os.environ.get("S3_BACKEND") == "rgw"


def test_storage_class(dbname):
    """STANDARD_IA: test/harness/rgw.sh adds it to RGW's default placement, as AWS has it."""
    client = s3_backend_client()
    conn = connect(dbname)
    try:
        set_session(conn, storage_class="STANDARD_IA")
        rid, text = fresh_report(conn, 500, 830)
        offload(conn, rid)
        head = client.head_object(Bucket=env("S3_BUCKET"), Key=object_key(rid))
        assert head.get("StorageClass") == "STANDARD_IA"
        assert fetch_text(conn, rid) == text
    finally:
        conn.close()


def test_unknown_storage_class_is_named_in_the_error(dbname):
    """A class the server's placement lacks: RGW answers 400 InvalidArgument without a
    message; the error must still tell the DBA which setting and class it is about."""
    if not rgw_backend():
        pytest.skip("moto accepts any storage class")
    conn = connect(dbname)
    try:
        set_session(conn, storage_class="GLACIER")
        rid, text = fresh_report(conn, 500, 832)
        e = query_error(conn, "SELECT report_offload(%s)", (rid,))
        msg = "\n".join(x for x in (e.diag.message_primary, e.diag.message_detail, e.diag.message_hint) if x)
        assert "GLACIER" in msg and "reportstore.storage_class" in msg, msg
        assert report_state(conn, rid) == (text, None)
    finally:
        conn.close()


def https_oracle():
    return s3_backend_client(endpoint=env("RGW_HTTPS_ENDPOINT"), verify=env("RGW_CA_FILE"))


def test_sse_kms_over_rgw_https(dbname):
    """SSE-KMS (RGW's 'testing' KMS backend) over radosgw's own https port: RGW refuses
    server-side encryption over plain http."""
    if not rgw_backend():
        pytest.skip("needs RGW's https port and KMS")
    conn = connect(dbname)
    try:
        set_session(conn, endpoint=env("RGW_HTTPS_ENDPOINT"), ca_file=env("RGW_CA_FILE"), sse="aws:kms",
                    sse_kms_key_id=env("RGW_KMS_KEY_ID"))
        rid, text = fresh_report(conn, 5000, 833)
        assert offload(conn, rid) == object_path(rid)
        head = https_oracle().head_object(Bucket=env("S3_BUCKET"), Key=object_key(rid))
        assert head.get("ServerSideEncryption") == "aws:kms", head
        assert head.get("SSEKMSKeyId") == env("RGW_KMS_KEY_ID"), head
        assert fetch_text(conn, rid) == text
        assert rows(conn, "SELECT * FROM reportstore.verify(true) WHERE report_id = %s", (rid,)) == []
        # multipart with SSE-KMS
        set_session(conn, multipart_threshold="5MB", multipart_part_size="5MB", compression="none")
        rid, text = fresh_report(conn, 11 * 1024 * 1024, 834)
        assert offload(conn, rid) == object_path(rid)
        head = https_oracle().head_object(Bucket=env("S3_BUCKET"), Key=object_key(rid))
        assert head.get("ServerSideEncryption") == "aws:kms", head
        assert fetch_text(conn, rid) == text

        # over plain http RGW refuses
        set_session(conn, endpoint=env("S3_ENDPOINT"), ca_file="", multipart_threshold="64MB")
        rid, text = fresh_report(conn, 500, 835)
        e = query_error(conn, "SELECT report_offload(%s)", (rid,))
        assert e.pgcode is not None and "InvalidRequest" in (e.diag.message_detail or ""), e
        assert report_state(conn, rid) == (text, None)
    finally:
        conn.close()


def test_sse_s3(dbname):
    """sse = AES256. moto encrypts and says so; Ceph RGW 16 accepts the header over
    https but stores the object unencrypted and says nothing: reportstore must not record
    such an upload as encrypted."""
    conn = connect(dbname)
    try:
        if rgw_backend():
            set_session(conn, endpoint=env("RGW_HTTPS_ENDPOINT"), ca_file=env("RGW_CA_FILE"), sse="AES256")
        else:
            set_session(conn, sse="AES256")
        rid, text = fresh_report(conn, 500, 831)
        with conn.cursor() as cur:
            try:
                cur.execute("SELECT report_offload(%s)", (rid,))
                error = None
            except psycopg2.Error as e:
                error = e
        client = https_oracle() if rgw_backend() else s3_backend_client()
        head = client.head_object(Bucket=env("S3_BUCKET"), Key=object_key(rid))
        if head.get("ServerSideEncryption") == "AES256":
            assert error is None, error
            assert head.get("StorageClass", "STANDARD") == "STANDARD"
            assert fetch_text(conn, rid) == text
        else:
            assert error is not None, "the server did not encrypt the object, and report_offload() took it"
            assert "AES256" in (error.diag.message_detail or "") + (error.diag.message_hint or ""), error
            assert report_state(conn, rid) == (text, None)
    finally:
        conn.close()


def test_virtual_hosted_style(dbname):
    """url_style = virtual: the bucket in the host name (reports.localhost, which libcurl
    resolves to 127.0.0.1 itself; RGW is configured with rgw dns name = localhost)."""
    if not rgw_backend():
        pytest.skip("needs RGW's rgw dns name")
    port = env("S3_ENDPOINT").rsplit(":", 1)[1]
    conn = connect(dbname)
    try:
        set_session(conn, endpoint="http://localhost:%s" % port, url_style="virtual")
        rid, text = fresh_report(conn, 3000, 836)
        assert offload(conn, rid) == object_path(rid)
        assert fetch_text(conn, rid) == text
        url = value(conn, "SELECT report_url(%s)", (rid,))
        assert url.startswith("http://%s.localhost:%s/" % (env("S3_BUCKET"), port)), url
        assert s3_backend_client().get_object(Bucket=env("S3_BUCKET"), Key=object_key(rid))["Body"].read() == \
            text.encode()
        log = open(os.path.join(env("S3_STACK_DIR"), "s3front.log"), encoding="utf-8").read()
        assert "PUT /%s/report.json" % object_key(rid).rsplit("/", 1)[0] in log, \
            "the PUT did not use a virtual-hosted path"
    finally:
        conn.close()


def test_set_lifecycle_needs_confirm(dbname):
    bucket = new_bucket("lifecycle-test")
    conn = connect(dbname)
    try:
        set_session(conn, bucket=bucket)
        e = query_error(conn, "SELECT * FROM reportstore.set_lifecycle(30)")
        assert e.diag.message_hint and "confirm" in e.diag.message_hint, e.diag.message_hint
        client = s3_backend_client()
        with pytest.raises(client.exceptions.ClientError):  # NoSuchLifecycleConfiguration: nothing was set
            client.get_bucket_lifecycle_configuration(Bucket=bucket)
        assert rows(conn, "SELECT * FROM reportstore.lifecycle()") == []

        got = rows(conn, "SELECT rule_id, prefix, status, expiration_days FROM reportstore.set_lifecycle(30, true)")
        assert [(r[1], r[2], r[3]) for r in got] == [("reports/", "Enabled", 30)]
        assert rows(conn, "SELECT rule_id, prefix, status, expiration_days FROM reportstore.lifecycle()") == got
        rules = s3_backend_client().get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
        assert len(rules) == 1 and rules[0]["Expiration"]["Days"] == 30 and rules[0]["Status"] == "Enabled"
    finally:
        conn.close()


# 10. safety nets: refusals and problem rows that nothing else exercises ------------------

def sha256_hex(body):
    return hashlib.sha256(body).hexdigest()


def replace_object(rid, body, metadata=None, record=False, conn=None):
    """Puts other bytes at the report's key, straight into the backend; record=True also
    records them in reportstore.objects as if reportstore had uploaded them."""
    put = s3_backend_client().put_object(Bucket=env("S3_BUCKET"), Key=object_key(rid), Body=body,
                                         ContentType="application/json", Metadata=metadata or {})
    if record:
        rows(conn, "UPDATE reportstore.objects SET size = %s, sha256 = %s, etag = %s, version_id = NULL "
                   "WHERE report_id = %s", (len(body), sha256_hex(body), put["ETag"].strip('"'), rid))


def test_release_kept_data_refuses_an_object_that_differs(db):
    """The object checks out against what reportstore.objects recorded (same SHA-256 and size),
    but holds other content than report_data: release_kept_data() must not clear anything."""
    with db.cursor() as cur:
        cur.execute("SET reportstore.keep_report_data = on")
    good, good_text = fresh_report(db, 500, 1100)
    bad, bad_text = fresh_report(db, 500, 1101)
    try:
        for rid, text in ((good, good_text), (bad, bad_text)):
            assert offload(db, rid) == object_path(rid)
            assert report_state(db, rid) == (text, object_path(rid)), "keep_report_data did not keep the data"
        other = jsonb_text(db, report_json(500, 1102)).encode()
        replace_object(bad, other, {"sha256": sha256_hex(other)}, record=True, conn=db)

        e = query_error(db, "SELECT reportstore.release_kept_data()")
        assert e.pgcode == "XX001" and "does not match its report_data" in e.diag.message_primary, error_text(e)
        assert bad in e.diag.message_primary and object_path(bad) in (e.diag.message_detail or ""), error_text(e)
        # one transaction: nothing was released, not even the report whose object is right
        assert report_state(db, bad) == (bad_text, object_path(bad))
        assert report_state(db, good) == (good_text, object_path(good))

        # the refusal is about the content: with the right object back, both are released
        body = bad_text.encode()
        replace_object(bad, body, {"sha256": sha256_hex(body)}, record=True, conn=db)
        assert value(db, "SELECT reportstore.release_kept_data()") >= 2
        for rid, text in ((good, good_text), (bad, bad_text)):
            assert report_state(db, rid) == (None, object_path(rid))
            assert fetch_text(db, rid) == text
    finally:
        with db.cursor() as cur:
            cur.execute("RESET reportstore.keep_report_data")
        delete_and_forget(db, [good, bad])


def test_object_without_any_checksum_cannot_be_verified(db):
    """An object with no SHA-256 in its metadata and no row in reportstore.objects (put there by
    another tool): report_fetch() refuses it, verify() reports it as unverifiable."""
    rid, text = fresh_report(db, 500, 1110)
    try:
        body = text.encode()
        replace_object(rid, body)  # no metadata
        with db.cursor() as cur:
            cur.execute("UPDATE reports SET minio_path = %s, report_data = NULL WHERE report_id = %s",
                        (object_path(rid), rid))
        assert value(db, "SELECT count(*) FROM reportstore.objects WHERE report_id = %s", (rid,)) == 0

        e = query_error(db, "SELECT report_fetch(%s)", (rid,))
        assert e.pgcode == "XX001" and "cannot be verified" in e.diag.message_primary, error_text(e)
        assert object_path(rid) in e.diag.message_primary, error_text(e)
        for full in (False, True):
            found = rows(db, "SELECT problem, detail FROM reportstore.verify(%s) WHERE report_id = %s", (full, rid))
            assert [p for p, _ in found] == ["unverifiable"], (full, found)
            assert "no checksum" in found[0][1], found

        # the same bytes with their SHA-256 in the metadata verify and fetch
        replace_object(rid, body, {"sha256": sha256_hex(body)})
        assert fetch_text(db, rid) == text
        assert rows(db, "SELECT * FROM reportstore.verify(true) WHERE report_id = %s", (rid,)) == []
    finally:
        delete_and_forget(db, [rid])


def test_verify_reports_errors_per_object(db, s3):
    """A request for one object fails (403 from the server): verify() reports an 'error' row for
    it, in both modes, and goes on with the others."""
    rid, _ = offloaded_report(db, 500, 1120)
    fine, _ = offloaded_report(db, 500, 1121)
    try:
        s3.faults({"method": ["HEAD", "GET"], "path_regex": key_regex(rid), "action": "status", "status": 403,
                   "code": "AccessDenied", "count": -1})
        for full in (False, True):
            found = rows(db, "SELECT report_id::text, problem, detail FROM reportstore.verify(%s) "
                             "WHERE report_id = ANY(%s::uuid[])", (full, [rid, fine]))
            assert [(r[0], r[1]) for r in found] == [(rid, "error")], (full, found)
            assert "403" in found[0][2] or "AccessDenied" in found[0][2], found
        s3.clear_faults()
        assert rows(db, "SELECT * FROM reportstore.verify(true) WHERE report_id = ANY(%s::uuid[])",
                    ([rid, fine],)) == []
    finally:
        s3.clear_faults()
        delete_and_forget(db, [rid, fine])


def test_stats_reset(db):
    """reportstore.stats_reset() zeroes this database's counters and records when."""
    rid, text = offloaded_report(db, 400, 1130)
    assert fetch_text(db, rid) == text
    before = dict_row(db, "SELECT * FROM reportstore.stats()")
    assert before["uploads"] >= 1 and before["fetches"] >= 1, before
    rows(db, "SELECT reportstore.stats_reset()")
    after = dict_row(db, "SELECT * FROM reportstore.stats()")
    assert {k: v for k, v in after.items() if k != "stats_reset"} == {k: 0 for k in after if k != "stats_reset"}, after
    assert after["stats_reset"] > before["stats_reset"], (before["stats_reset"], after["stats_reset"])
    # counting goes on from zero
    other, other_text = offloaded_report(db, 400, 1131)
    assert fetch_text(db, other) == other_text
    counted = dict_row(db, "SELECT * FROM reportstore.stats()")
    assert (counted["uploads"], counted["upload_bytes"], counted["fetches"], counted["fetch_bytes"]) == \
        (1, len(other_text.encode()), 1, len(other_text.encode())), counted
    delete_and_forget(db, [rid, other])
